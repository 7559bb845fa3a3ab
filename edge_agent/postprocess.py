"""Model output -> defect regions (class, area, bounding box, scores) in frame coordinates.

Work arrays are allocated once at the model's output size; per frame only OpenCV's connected
components allocate (its label image), at model resolution, not frame resolution.
"""

from typing import List, NamedTuple, Tuple

import cv2
import numpy as np

from edge_agent.config import ModelConfig
from edge_agent.preprocess import Geometry


class DefectRegion(NamedTuple):
    cls: str
    area_px: int  # in frame pixels
    bbox: Tuple[int, int, int, int]  # x, y, width, height in frame pixels
    score_max: float
    score_mean: float

    def as_dict(self) -> dict:
        return {"class": self.cls, "area_px": self.area_px, "bbox": list(self.bbox),
                "score_max": round(self.score_max, 4), "score_mean": round(self.score_mean, 4)}


class Postprocessor:
    def __init__(self, model: ModelConfig, output_shape: Tuple[int, ...]) -> None:
        """`output_shape` is one sample's output shape (C, H, W) or (H, W, C) as the model gives it."""
        out = model.output
        self.layout = out.layout
        channels = output_shape[0] if out.layout == "NCHW" else output_shape[-1]
        if channels != len(out.classes):
            raise ValueError(
                "the model outputs {} channel(s) but model.output.classes lists {} ({}); list one name per "
                "channel".format(channels, len(out.classes), ", ".join(out.classes)))
        height, width = output_shape[1:] if out.layout == "NCHW" else output_shape[:2]
        self.activation = out.activation
        self.classes = [(index, name) + model.thresholds.for_class(name)
                        for index, name in enumerate(out.classes) if name != out.background]
        self._probs = np.empty((channels, height, width), dtype=np.float32)
        self._scratch = np.empty((height, width), dtype=np.float32)
        self._class_map = np.empty((height, width), dtype=np.intp)
        self._is_class = np.empty((height, width), dtype=bool)
        self._confident = np.empty((height, width), dtype=bool)
        self.defect_mask = np.zeros((height, width), dtype=np.uint8)  # 1 where a reported defect lies

    def __call__(self, output: np.ndarray, geometry: Geometry) -> List[DefectRegion]:
        probs = self._activate(output)
        multiclass = probs.shape[0] > 1
        if multiclass:
            np.argmax(probs, axis=0, out=self._class_map)
        self.defect_mask[...] = 0
        regions: List[DefectRegion] = []
        area_scale = 1.0 / (geometry.scale_x * geometry.scale_y)
        for index, name, score, min_area in self.classes:
            np.greater_equal(probs[index], score, out=self._confident)
            if multiclass:
                np.equal(self._class_map, index, out=self._is_class)
                np.logical_and(self._is_class, self._confident, out=self._confident)
            if not self._confident.any():
                continue
            mask = self._confident.view(np.uint8)
            count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for label in range(1, count):
                x, y, w, h, area = (int(v) for v in stats[label])
                frame_area = int(round(area * area_scale))
                if frame_area < min_area:
                    continue
                window = labels[y:y + h, x:x + w] == label
                scores = probs[index, y:y + h, x:x + w][window]
                self.defect_mask[y:y + h, x:x + w][window] = 1
                regions.append(DefectRegion(name, frame_area, _to_frame(x, y, w, h, geometry),
                                            float(scores.max()), float(scores.mean())))
        return regions

    def _activate(self, output: np.ndarray) -> np.ndarray:
        """Class probabilities as (C, H, W) float32 in the preallocated buffer."""
        probs = self._probs
        np.copyto(probs, output if self.layout == "NCHW" else output.transpose(2, 0, 1), casting="same_kind")
        if self.activation == "sigmoid":
            np.negative(probs, out=probs)
            np.exp(probs, out=probs)
            probs += 1.0
            np.reciprocal(probs, out=probs)
        elif self.activation == "softmax":
            np.max(probs, axis=0, out=self._scratch)
            probs -= self._scratch
            np.exp(probs, out=probs)
            np.sum(probs, axis=0, out=self._scratch)
            probs /= self._scratch
        return probs

    def frame_mask(self, geometry: Geometry) -> np.ndarray:
        """The reported-defect mask mapped back to the frame's size (uint8, 1 = defect)."""
        matrix = np.array([
            [geometry.scale_x, 0, geometry.pad_x - geometry.crop_x * geometry.scale_x + 0.5 * geometry.scale_x - 0.5],
            [0, geometry.scale_y, geometry.pad_y - geometry.crop_y * geometry.scale_y + 0.5 * geometry.scale_y - 0.5],
        ])
        return cv2.warpAffine(self.defect_mask, matrix, (geometry.frame_width, geometry.frame_height),
                              flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)


def _to_frame(x: int, y: int, w: int, h: int, g: Geometry) -> Tuple[int, int, int, int]:
    left = max(0, int(np.floor((x - g.pad_x) / g.scale_x + g.crop_x)))
    top = max(0, int(np.floor((y - g.pad_y) / g.scale_y + g.crop_y)))
    right = min(g.frame_width, int(np.ceil((x + w - g.pad_x) / g.scale_x + g.crop_x)))
    bottom = min(g.frame_height, int(np.ceil((y + h - g.pad_y) / g.scale_y + g.crop_y)))
    return left, top, max(0, right - left), max(0, bottom - top)
