"""Tiling: a high-resolution frame runs as several overlapping tiles in one batch, and the tiles'
outputs are stitched into one frame-wide output before regions are found. So a defect across a
tile border is one region, not two; a defect inside an overlap is reported once; boxes are in
frame pixels. A 2 mm scratch that a single 1920x1080 -> 256x256 pass shrinks below a pixel keeps
its size when each tile is close to the model's input size.

Layout, per axis: n = ceil((frame - overlap) / (tile - overlap)) tiles spread evenly, the first
at 0 and the last ending at the frame's edge, so neighbours share at least `overlap` pixels.
Each tile is resized to the model input like a whole frame (`model.input.resize` applies to the
tile). Stitching: each pixel of the stitched output comes from exactly one tile, the one whose
own part it lies in (an overlap is split in its middle), so every tile contributes only where it
saw context on both sides.
"""

import math
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import Annotated

TileSide = Annotated[int, Field(ge=8, le=16384)]


class TilingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    tile: Tuple[TileSide, TileSide] = Field(..., description=(
        "Tile width and height in frame pixels, e.g. [320, 240]; near the size the model was trained on keeps "
        "small defects their size. A frame smaller than a tile is one tile."))
    overlap: int = Field(32, ge=0, le=4096, description=(
        "Pixels that neighbouring tiles share, at least; make it larger than the defects you look for so each "
        "lies whole inside one tile."))

    @model_validator(mode="after")
    def _overlap_fits(self) -> "TilingConfig":
        if self.overlap >= min(self.tile):
            raise ValueError("overlap {} must be smaller than the tile {}x{}".format(self.overlap, *self.tile))
        return self

    def tiles_for(self, width: int, height: int) -> int:
        """How many tiles a width x height frame becomes."""
        return len(tile_origins(width, self.tile[0], self.overlap)) * len(tile_origins(height, self.tile[1],
                                                                                      self.overlap))


def tile_origins(length: int, tile: int, overlap: int) -> List[int]:
    """Start of each tile along one axis of `length` pixels."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _owned(origins: List[int], tile: int, length: int) -> List[Tuple[int, int]]:
    """The part of each tile that is its own: overlaps split in the middle."""
    spans = []
    for i, start in enumerate(origins):
        own_start = 0 if i == 0 else (origins[i - 1] + tile + start) // 2
        own_end = length if i == len(origins) - 1 else (start + tile + origins[i + 1]) // 2
        spans.append((own_start, own_end))
    return spans


class TilePlan(NamedTuple):
    windows: List[Tuple[int, int, int, int]]  # x, y, width, height of each tile in frame pixels
    copies: List[Tuple[slice, slice, slice, slice]]  # per tile: output rows, cols -> stitched rows, cols
    stitched_shape: Tuple[int, int]  # height, width of the stitched output
    scale_x: float  # stitched output pixels per frame pixel
    scale_y: float


def plan_tiles(tiling: TilingConfig, width: int, height: int, output_hw: Tuple[int, int]) -> TilePlan:
    """Where the tiles of a width x height frame lie, and how their outputs (output_hw each) stitch."""
    tile_w, tile_h = min(tiling.tile[0], width), min(tiling.tile[1], height)
    out_h, out_w = output_hw
    scale_x, scale_y = out_w / tile_w, out_h / tile_h
    xs, ys = tile_origins(width, tile_w, tiling.overlap), tile_origins(height, tile_h, tiling.overlap)
    own_x, own_y = _owned(xs, tile_w, width), _owned(ys, tile_h, height)
    windows, copies = [], []
    for y, (oy0, oy1) in zip(ys, own_y):
        for x, (ox0, ox1) in zip(xs, own_x):
            windows.append((x, y, tile_w, tile_h))
            dst_x0, dst_x1 = round(ox0 * scale_x), round(ox1 * scale_x)
            dst_y0, dst_y1 = round(oy0 * scale_y), round(oy1 * scale_y)
            src_x0, src_y0 = dst_x0 - round(x * scale_x), dst_y0 - round(y * scale_y)
            copies.append((slice(src_y0, src_y0 + dst_y1 - dst_y0), slice(src_x0, src_x0 + dst_x1 - dst_x0),
                           slice(dst_y0, dst_y1), slice(dst_x0, dst_x1)))
    return TilePlan(windows, copies, (round(height * scale_y), round(width * scale_x)), scale_x, scale_y)


class Stitcher:
    """Stitches the tiles' outputs of one frame into a frame-wide output, one buffer per frame size."""

    def __init__(self, tiling: TilingConfig, output_shape: Tuple[int, ...], layout: str) -> None:
        self.tiling = tiling
        self.channels_first = layout == "NCHW"
        self._channels = output_shape[0] if self.channels_first else output_shape[-1]
        self._output_hw = tuple(output_shape[1:]) if self.channels_first else tuple(output_shape[:2])
        self._dtype = np.float32
        self._plans: Dict[Tuple[int, int], TilePlan] = {}
        self._buffers: Dict[Tuple[int, int], np.ndarray] = {}

    def plan(self, width: int, height: int) -> TilePlan:
        plan = self._plans.get((width, height))
        if plan is None:
            plan = self._plans[(width, height)] = plan_tiles(self.tiling, width, height, self._output_hw)
        return plan

    def stitch(self, outputs: np.ndarray, plan: TilePlan, width: int, height: int) -> np.ndarray:
        """`outputs`: the frame's tiles' outputs in plan order; returns the stitched output (reused)."""
        stitched = self._buffers.get((width, height))
        if stitched is None:
            rows, cols = plan.stitched_shape
            shape = (self._channels, rows, cols) if self.channels_first else (rows, cols, self._channels)
            stitched = self._buffers[(width, height)] = np.empty(shape, outputs.dtype)
        for output, (src_rows, src_cols, dst_rows, dst_cols) in zip(outputs, plan.copies):
            if self.channels_first:
                stitched[:, dst_rows, dst_cols] = output[:, src_rows, src_cols]
            else:
                stitched[dst_rows, dst_cols] = output[src_rows, src_cols]
        return stitched


def expected_tiles(config: Any) -> Optional[int]:
    """Tiles per frame for an AgentConfig: 1 without tiling; with tiling, the most any source's
    frame makes when every source states its frame size (synthetic, camera width/height); else None."""
    tiling = config.model.input.tiling
    if tiling is None:
        return 1
    sizes = [(getattr(s, "width", None), getattr(s, "height", None)) for s in config.sources]
    if any(w is None or h is None for w, h in sizes):
        return None
    return max(tiling.tiles_for(w, h) for w, h in sizes)


def typical_batch(config: Any) -> int:
    """The batch the pipeline mostly runs under load: one frame (all its tiles) from each source,
    as many as pipeline.max_batch holds; max_batch itself when the frame size is unknown."""
    max_batch = config.pipeline.max_batch
    tiles = expected_tiles(config)
    if tiles is None or tiles > max_batch:
        return max_batch
    return min(max_batch // tiles, len(config.sources)) * tiles
