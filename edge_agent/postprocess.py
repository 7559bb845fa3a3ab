"""Model output -> defect regions (class, area, bounding box, scores) in frame coordinates.

A pixel belongs to the class whose channel wins there, if that class's probability reaches the
class's score threshold. Work arrays are allocated once at the model's output size; per frame
only OpenCV's connected components allocate (its label image), at model resolution.
"""

from typing import List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from edge_agent.config import ModelConfig
from edge_agent.errors import ModelError
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
        """`output_shape` is one sample's output shape (C, H, W) or (H, W, C) as the model gives it, or
        (H, W) / one channel for a class-index map. An output smaller than the input (a model that
        predicts at 1/2 resolution) is mapped back to the input's pixels, then to the frame's."""
        out = model.output
        self.layout = out.layout
        self.class_index = out.kind == "class_index"
        if self.class_index and len(output_shape) == 2:
            output_shape = (1,) + tuple(output_shape) if out.layout == "NCHW" else tuple(output_shape) + (1,)
        channels = output_shape[0] if out.layout == "NCHW" else output_shape[-1]
        expected = 1 if self.class_index else len(out.classes)
        if channels != expected:
            raise ModelError(
                "model.output.classes: the model outputs {} channel(s) but the config expects {} ({} class(es): "
                "{}); list one class name per output channel".format(
                    channels, expected, len(out.classes), ", ".join(out.classes)))
        height, width = output_shape[1:] if out.layout == "NCHW" else output_shape[:2]
        # output pixel -> model-input pixel: 1.0 when the output has the input's resolution
        self.ratio = (width / model.input.width, height / model.input.height)
        self.activation = out.activation
        self.classes = [(index, name) + model.thresholds.for_class(name)
                        for index, name in enumerate(out.classes) if name != out.background]
        self.background = out.classes.index(out.background) if out.background is not None else None
        self._nhwc = np.empty((channels, height, width), dtype=np.float32) if out.layout == "NHWC" else None
        self._best = np.empty((height, width), dtype=np.float32)  # the winning channel's raw value
        self._score = np.empty((height, width), dtype=np.float32)  # the winning class's probability
        self._work = np.empty((height, width), dtype=np.float32)
        self._is_class = np.empty((height, width), dtype=bool)
        self._confident = np.empty((height, width), dtype=bool)
        self.defect_mask = np.zeros((height, width), dtype=np.uint8)  # 1 where a reported defect lies

    def __call__(self, output: np.ndarray, geometry: Geometry) -> List[DefectRegion]:
        geometry = self.output_geometry(geometry)
        self.defect_mask[...] = 0
        regions: List[DefectRegion] = []
        if self.class_index:
            planes = output.reshape(self._score.shape)
            window = self._index_scores(planes)
        else:
            planes = self._planes(output)
            window = self._winning_scores(planes)
        if window is None:
            return regions
        # every per-class step works inside the candidates' window: defects are small
        top, left = window[0].start, window[1].start
        score, confident, is_class = self._score[window], self._confident[window], self._is_class[window]
        area_scale = 1.0 / (geometry.scale_x * geometry.scale_y)
        for index, name, threshold, min_area in self.classes:
            np.greater_equal(score, threshold, out=confident)
            if self.class_index:
                np.equal(planes[window], index, out=is_class)
                np.logical_and(is_class, confident, out=confident)
            elif len(planes) > 1:
                np.equal(planes[index][window], self._best[window], out=is_class)
                np.logical_and(is_class, confident, out=confident)
            if not confident.any():
                continue
            count, labels, stats, _ = cv2.connectedComponentsWithStats(confident.view(np.uint8), connectivity=8)
            # filter on area first, vectorized: a speckled output can hold thousands of tiny components
            frame_areas = np.rint(stats[1:count, cv2.CC_STAT_AREA] * area_scale)
            for label in np.flatnonzero(frame_areas >= min_area) + 1:
                x, y, w, h, _ = (int(v) for v in stats[label])
                component = labels[y:y + h, x:x + w] == label
                scores = score[y:y + h, x:x + w][component]
                self.defect_mask[top + y:top + y + h, left + x:left + x + w][component] = 1
                regions.append(DefectRegion(name, int(frame_areas[label - 1]),
                                            _to_frame(left + x, top + y, w, h, geometry),
                                            float(scores.max()), float(scores.mean())))
        return regions

    def output_geometry(self, geometry: Geometry) -> Geometry:
        """`geometry` (frame <-> model input) for the output's pixels, when its resolution differs."""
        rx, ry = self.ratio
        if rx == 1.0 and ry == 1.0:
            return geometry
        return geometry._replace(scale_x=geometry.scale_x * rx, scale_y=geometry.scale_y * ry,
                                 pad_x=geometry.pad_x * rx, pad_y=geometry.pad_y * ry)

    def _index_scores(self, indices: np.ndarray) -> Optional[Tuple[slice, slice]]:
        """A class-index map: every pixel's class is certain (score 1); the window holds the non-background."""
        height, width = self._score.shape
        self._score[...] = 1.0
        if self.background is None:
            return (slice(0, height), slice(0, width))
        np.not_equal(indices, self.background, out=self._is_class)
        rows = np.flatnonzero(self._is_class.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(self._is_class.any(axis=0))
        return (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))

    def _planes(self, output: np.ndarray) -> np.ndarray:
        """The output as (C, H, W), copied only when the model gives it channels-last."""
        if self._nhwc is None:
            return output
        np.copyto(self._nhwc, output.transpose(2, 0, 1), casting="same_kind")
        return self._nhwc

    def _winning_scores(self, planes: np.ndarray) -> Optional[Tuple[slice, slice]]:
        """Fill _best (the top channel's raw value) and _score (that class's probability) per pixel
        inside the window that holds every defect candidate; returns that window, or None when
        background wins everywhere. Only the winning class's probability matters, so softmax needs
        one sum of exponentials, not C planes of probabilities (np.argmax over channels is 10x slower
        than these plane-wise operations)."""
        height, width = self._score.shape
        window = (slice(0, height), slice(0, width))
        if len(planes) == 1:
            if self.activation == "sigmoid":
                np.negative(planes[0], out=self._score)
                np.exp(self._score, out=self._score)
                self._score += 1.0
                np.reciprocal(self._score, out=self._score)
            else:
                np.copyto(self._score, planes[0], casting="same_kind")
            return window
        np.max(planes, axis=0, out=self._best)
        if self.background is not None:
            np.less(planes[self.background], self._best, out=self._is_class)
            rows = np.flatnonzero(self._is_class.any(axis=1))
            if rows.size == 0:
                return None
            cols = np.flatnonzero(self._is_class.any(axis=0))
            window = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        best, score, work = self._best[window], self._score[window], self._work[window]
        if self.activation == "softmax":
            score[...] = 0.0
            for plane in planes:
                np.subtract(plane[window], best, out=work)
                np.exp(work, out=work)
                score += work
            np.reciprocal(score, out=score)
        else:
            np.copyto(score, best)
        return window

    def frame_mask(self, geometry: Geometry) -> np.ndarray:
        """The reported-defect mask mapped back to the frame's size (uint8, 1 = defect)."""
        return mask_in_frame(self.defect_mask, self.output_geometry(geometry))


def mask_in_frame(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A mask at the output's resolution mapped to the frame's size; `geometry` maps frame <-> mask pixels."""
    matrix = np.array([
        [geometry.scale_x, 0, geometry.pad_x - geometry.crop_x * geometry.scale_x + 0.5 * geometry.scale_x - 0.5],
        [0, geometry.scale_y, geometry.pad_y - geometry.crop_y * geometry.scale_y + 0.5 * geometry.scale_y - 0.5],
    ])
    return cv2.warpAffine(mask, matrix, (geometry.frame_width, geometry.frame_height),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)


def _to_frame(x: int, y: int, w: int, h: int, g: Geometry) -> Tuple[int, int, int, int]:
    left = max(0, int(np.floor((x - g.pad_x) / g.scale_x + g.crop_x)))
    top = max(0, int(np.floor((y - g.pad_y) / g.scale_y + g.crop_y)))
    right = min(g.frame_width, int(np.ceil((x + w - g.pad_x) / g.scale_x + g.crop_x)))
    bottom = min(g.frame_height, int(np.ceil((y + h - g.pad_y) / g.scale_y + g.crop_y)))
    return left, top, max(0, right - left), max(0, bottom - top)
