"""The TensorRT optimization profile follows the batching: opt at the typical batch (every source's
frame with all its tiles, within pipeline.max_batch), max at pipeline.max_batch; the build report
shows it."""

from types import SimpleNamespace

from edge_agent.config import DEMO_MODEL
from edge_agent.config_loader import load_config
from edge_agent.engine.trt_target import TensorRTTarget


def _batch_profile(**data):
    data.setdefault("backend", {"type": "tensorrt"})
    config = load_config(None, data)
    target = TensorRTTarget.__new__(TensorRTTarget)  # only the profile: no TensorRT probe, no GPU
    target.prep, target.config, target.backend = SimpleNamespace(source=DEMO_MODEL), config, config.backend
    (shapes,) = target._profile().values()
    return [shape[0] for shape in shapes]


def _cameras(count, width=1920, height=1080):
    return [{"type": "synthetic", "name": "cam{}".format(i), "width": width, "height": height} for i in range(count)]


def test_opt_is_the_typical_batch_and_max_is_max_batch():
    assert _batch_profile(pipeline={"max_batch": 8}, sources=_cameras(10)) == [1, 8, 8]
    assert _batch_profile(pipeline={"max_batch": 8}, sources=_cameras(2)) == [1, 2, 8]
    tiled = {"input": {"tiling": {"tile": [320, 240], "overlap": 0}}}
    assert _batch_profile(model=tiled, pipeline={"max_batch": 16}, sources=_cameras(3, 640, 480)) == [1, 12, 16]


def test_an_explicit_profile_is_kept():
    assert _batch_profile(pipeline={"max_batch": 4}, sources=_cameras(4),
                          backend={"type": "tensorrt", "profile": {"batch": [2, 3, 6]}}) == [2, 3, 6]
