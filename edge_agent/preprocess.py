"""Frame -> input tensor, written in place into a slot of a preallocated batch buffer.

The same code feeds inference, calibration and the accuracy gate, so a model sees identical
pixels everywhere. Working images are cached per frame size, so a steady stream allocates nothing.
"""

from typing import Any, Dict, NamedTuple, Tuple

import cv2
import numpy as np

from edge_agent.config import InputConfig

LETTERBOX_FILL = 114


class Geometry(NamedTuple):
    """Maps model-input pixels back to frame pixels: frame = (model - pad) / scale + crop."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    crop_x: int
    crop_y: int
    frame_width: int
    frame_height: int


class Preprocessor:
    def __init__(self, spec: InputConfig, dtype: Any = np.float32) -> None:
        """`dtype` is the model input's: float32/float16 get normalized values, uint8 the raw pixels
        (a uint8-input model normalizes inside itself; modelcheck refuses a configured scale/mean/std)."""
        self.spec = spec
        self.raw_pixels = np.dtype(dtype) == np.uint8
        scale, mean_values, std_values = spec.normalization(self.raw_pixels)
        mean = np.asarray(mean_values, dtype=np.float32)
        std = np.asarray(std_values, dtype=np.float32)
        # (pixel * scale - mean) / std == pixel * gain + offset
        self._gain = [float(g) for g in scale / std]
        self._offset = [float(o) for o in -mean / std]
        self._canvas = np.full((spec.height, spec.width, 3), LETTERBOX_FILL, dtype=np.uint8)
        self._gray = np.empty((spec.height, spec.width, 1), dtype=np.uint8)
        self._sources = {"RGB": (2, 1, 0), "BGR": (0, 1, 2), "GRAY": (0,)}[spec.color]
        self._last_size = (0, 0)
        self._plans: Dict[Tuple[int, int], Tuple[Geometry, Tuple[slice, slice], Tuple[slice, slice]]] = {}

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        s = self.spec
        return (s.channels, s.height, s.width) if s.layout == "NCHW" else (s.height, s.width, s.channels)

    def __call__(self, frame: np.ndarray, out: np.ndarray) -> Geometry:
        """Write `frame` (HxWx3 BGR uint8 or HxW gray) into `out` (one sample, float32, model layout)."""
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        height, width = frame.shape[:2]
        geometry, source_window, target_window = self._plan(width, height)
        target = self._canvas[target_window]
        cv2.resize(frame[source_window], (target.shape[1], target.shape[0]), dst=target,
                   interpolation=cv2.INTER_LINEAR)
        pixels = self._canvas
        if self.spec.color == "GRAY":
            cv2.cvtColor(self._canvas, cv2.COLOR_BGR2GRAY, dst=self._gray)
            pixels = self._gray
        # RGB needs no conversion pass: normalization reads the BGR canvas's channels in reverse
        for channel, source in enumerate(self._sources):
            plane = out[channel] if self.spec.layout == "NCHW" else out[:, :, channel]
            if self.raw_pixels:
                np.copyto(plane, pixels[:, :, source])
                continue
            np.multiply(pixels[:, :, source], self._gain[channel], out=plane, casting="unsafe")
            plane += self._offset[channel]
        return geometry

    def _plan(self, width: int, height: int) -> Tuple[Geometry, Tuple[slice, slice], Tuple[slice, slice]]:
        plan = self._plans.get((width, height))
        if plan is None:
            plan = self._plans[(width, height)] = self._make_plan(width, height)
        if (width, height) != self._last_size and self.spec.resize == "letterbox":
            self._canvas[...] = LETTERBOX_FILL  # the padding differs between frame sizes
        self._last_size = (width, height)
        return plan

    def _make_plan(self, width: int, height: int) -> Tuple[Geometry, Tuple[slice, slice], Tuple[slice, slice]]:
        out_w, out_h = self.spec.width, self.spec.height
        full = (slice(0, out_h), slice(0, out_w))
        if self.spec.resize == "stretch":
            geometry = Geometry(out_w / width, out_h / height, 0, 0, 0, 0, width, height)
            return geometry, (slice(0, height), slice(0, width)), full
        if self.spec.resize == "letterbox":
            scale = min(out_w / width, out_h / height)
            new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
            pad_x, pad_y = (out_w - new_w) // 2, (out_h - new_h) // 2
            geometry = Geometry(new_w / width, new_h / height, pad_x, pad_y, 0, 0, width, height)
            return geometry, (slice(0, height), slice(0, width)), (
                slice(pad_y, pad_y + new_h), slice(pad_x, pad_x + new_w))
        # center_crop: the largest centred window with the model's aspect ratio
        scale = max(out_w / width, out_h / height)
        crop_w, crop_h = min(width, round(out_w / scale)), min(height, round(out_h / scale))
        crop_x, crop_y = (width - crop_w) // 2, (height - crop_h) // 2
        geometry = Geometry(out_w / crop_w, out_h / crop_h, 0, 0, crop_x, crop_y, width, height)
        return geometry, (slice(crop_y, crop_y + crop_h), slice(crop_x, crop_x + crop_w)), full
