"""Tiling: tiles of one frame in one batch, stitched so that regions across tile borders are one
region, none is reported twice, and boxes are in frame pixels."""

import threading

import cv2
import numpy as np
import pytest

from edge_agent.agent import running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.errors import ConfigError
from edge_agent.metrics import Registry
from edge_agent.pipeline import ResultSink
from edge_agent.tiling import TilingConfig, plan_tiles, tile_origins, typical_batch


class Collect(ResultSink):
    def __init__(self):
        self.results = []

    def on_result(self, result):
        self.results.append(result)


def _run(model, folder, tiling=None, max_batch=32, min_area=20):
    model_input = {"width": 64, "height": 64}
    if tiling:
        model_input["tiling"] = tiling
    config = load_config(None, {
        "model": {"path": str(model), "input": model_input, "output": {"classes": ["background", "dark"]},
                  "thresholds": {"min_area_px": min_area}},
        "pipeline": {"max_batch": max_batch},
        "sources": [{"type": "folder", "name": "hires", "path": str(folder)}]})
    sink = Collect()
    registry = Registry()
    with running_pipeline(config, registry, [sink]) as pipeline:
        pipeline.run(threading.Event())
    return sink.results, registry


@pytest.mark.parametrize("width,height,tile,overlap", [(1920, 1080, 320, 32), (256, 192, 64, 8), (100, 60, 64, 16),
                                                       (640, 480, 640, 32)])
def test_every_stitched_pixel_comes_from_exactly_one_tile(width, height, tile, overlap):
    tiling = TilingConfig(tile=(tile, tile), overlap=overlap)
    plan = plan_tiles(tiling, width, height, (64, 64))
    covered = np.zeros(plan.stitched_shape, np.int32)
    for src_rows, src_cols, dst_rows, dst_cols in plan.copies:
        assert 0 <= src_rows.start < src_rows.stop <= 64 and 0 <= src_cols.start < src_cols.stop <= 64
        covered[dst_rows, dst_cols] += 1
    assert covered.min() == covered.max() == 1
    for x, y, w, h in plan.windows:
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height
    xs = tile_origins(width, min(tile, width), overlap)
    assert all(a + min(tile, width) - b >= overlap for a, b in zip(xs, xs[1:]))  # at least the overlap
    assert xs[0] == 0 and xs[-1] + min(tile, width) == width


def test_overlap_must_be_smaller_than_the_tile():
    with pytest.raises(ValueError, match="overlap 64 must be smaller than the tile 64x48"):
        TilingConfig(tile=(64, 48), overlap=64)


def test_regions_across_tile_borders_are_merged_once_in_frame_pixels(tmp_path, dark_model):
    """256x192 frame, 64x64 tiles (the model's input: 1 tile pixel = 1 model pixel), 5x4 tiles.
    One bar crosses four tiles, one square sits in an overlap, one straddles a four-tile corner."""
    boxes = [(10, 20, 200, 12), (50, 100, 9, 9), (100, 40, 30, 30)]
    image = np.full((192, 256, 3), 200, np.uint8)
    for x, y, w, h in boxes:
        image[y:y + h, x:x + w] = 0
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), image)
    tiling = {"tile": [64, 64], "overlap": 8}
    results, registry = _run(dark_model, folder, tiling)
    (result,) = results
    found = sorted(r.bbox for r in result.regions)
    assert len(found) == 3, found  # no split bar, no duplicate square
    for got, want in zip(found, sorted(boxes)):
        assert all(abs(a - b) <= 1 for a, b in zip(got, want)), (got, want)
    assert registry.counter_total("inference_items") == 20  # the frame's 20 tiles ...
    assert registry.counter_total("inference_batches") == 1  # ... in one batch


def test_tiles_find_small_defects_that_one_downscaled_pass_misses(tmp_path, dark_model):
    """2x2 marks at 4x downscale fall between the pixels a resize samples; tiles keep them."""
    image = np.full((192, 256, 3), 200, np.uint8)
    marks = [(4 * i + 3, 4 * j + 3) for i, j in ((5, 5), (20, 9), (40, 30), (55, 40))]
    for x, y in marks:
        image[y:y + 2, x:x + 2] = 0
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), image)
    plain, _ = _run(dark_model, folder, None, max_batch=1, min_area=3)
    tiled, _ = _run(dark_model, folder, {"tile": [64, 64], "overlap": 8}, min_area=3)
    assert plain[0].regions == []
    assert sorted(r.bbox[:2] for r in tiled[0].regions) == sorted(marks)


def test_more_tiles_than_max_batch_is_a_clear_error(tmp_path, dark_model):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((192, 256, 3), 200, np.uint8))
    with pytest.raises(ConfigError, match="makes 20 tiles .* set pipeline.max_batch to at least 20"):
        _run(dark_model, folder, {"tile": [64, 64], "overlap": 8}, max_batch=8)


def test_typical_batch_counts_sources_and_tiles():
    config = load_config(None, {
        "model": {"input": {"tiling": {"tile": [320, 240], "overlap": 0}}},
        "pipeline": {"max_batch": 16},
        "sources": [{"type": "synthetic", "name": n, "width": 640, "height": 480} for n in ("a", "b", "c")]})
    assert typical_batch(config) == 12  # 3 sources x 4 tiles
    assert typical_batch(config.model_copy(update={"sources": config.sources[:1]})) == 4
