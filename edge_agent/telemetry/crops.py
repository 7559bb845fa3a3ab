"""Small JPEG crops of defects: copied on the frame loop (bounded cost), encoded off it."""

import base64
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from edge_agent.telemetry.config import CropConfig

MIN_QUALITY = 20


def copy_crop(image: np.ndarray, bbox: Tuple[int, int, int, int],
              config: CropConfig) -> Tuple[np.ndarray, Tuple[int, int]]:
    """The defect's box plus margin, subsampled so the copy never exceeds ~2x the sent size."""
    x, y, w, h = bbox
    height, width = image.shape[:2]
    x0, y0 = max(0, x - config.margin_px), max(0, y - config.margin_px)
    x1, y1 = min(width, x + w + config.margin_px), min(height, y + h + config.margin_px)
    step = max(1, -(-max(x1 - x0, y1 - y0) // (2 * config.max_side_px)))
    return np.ascontiguousarray(image[y0:y1:step, x0:x1:step]), (x0, y0)


def encode_crop(crop: np.ndarray, origin: Tuple[int, int], config: CropConfig) -> Dict[str, object]:
    """Fields for the event: the JPEG as base64 and where it lies, or why it was left out."""
    if crop.size == 0:
        return {"crop_omitted": "empty"}
    side = max(crop.shape[:2])
    if side > config.max_side_px:
        scale = config.max_side_px / side
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    quality = config.jpeg_quality
    data: Optional[bytes] = None
    while quality >= MIN_QUALITY:
        ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and encoded.size <= config.max_bytes:
            data = encoded.tobytes()
            break
        quality -= 15
    if data is None:
        return {"crop_omitted": "too_large"}
    return {"crop_jpeg_b64": base64.b64encode(data).decode("ascii"), "crop_x_px": origin[0], "crop_y_px": origin[1],
            "crop_width_px": int(crop.shape[1]), "crop_height_px": int(crop.shape[0]), "crop_quality": quality}
