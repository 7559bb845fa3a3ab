"""The sanity watch: NaN/Inf outputs, scores outside 0-1, defects over most of the frame for many
frames, and nothing found any more on a line that found defects; logged once per interval, counted,
listed for status; `inspect` prints them at the end."""

import logging

import cv2
import numpy as np

from edge_agent.cli import main
from edge_agent.config import ModelConfig
from edge_agent.inspection_config import SanityConfig
from edge_agent.metrics import Registry
from edge_agent.postprocess import DefectRegion
from edge_agent.sanity import SanityWatch

from conftest import dark_square_image
from onnx_models import dark_spot_model

REGION = DefectRegion("dark", 100, (0, 0, 10, 10), 0.9, 0.8)


def _watch(registry=None, activation="softmax", **config):
    model = ModelConfig.model_validate({"path": "m.onnx", "output": {"classes": ["background", "dark"],
                                                                     "activation": activation}})
    return SanityWatch(SanityConfig(**config), model, registry or Registry())


def test_nan_output_is_warned_once_per_interval_and_counted(caplog):
    registry = Registry()
    watch = _watch(registry)
    good = np.zeros((2, 8, 8), np.float32)
    bad = good.copy()
    bad[1, 3, 3] = np.nan
    with caplog.at_level(logging.WARNING, logger="edge_agent.sanity"):
        watch.observe(good, [], 64)
        assert watch.active() == []
        for _ in range(5):
            watch.observe(bad, [], 64)
    (line,) = watch.active()
    assert "NaN or Inf (5 of 6 frames" in line
    assert len([r for r in caplog.records if "NaN" in r.getMessage()]) == 1
    assert registry.counter_total("sanity_warnings") == 1


def test_logits_read_as_probabilities_leave_0_1():
    watch = _watch(activation="none")
    output = np.full((2, 8, 8), 0.2, np.float32)
    watch.observe(output, [], 64)
    assert watch.active() == []
    output[1, 0, 0] = 3.69
    watch.observe(output, [], 64)
    (line,) = watch.active()
    assert "3.69" in line and "set activation: softmax" in line


def test_most_of_the_frame_for_many_frames_then_cleared():
    registry = Registry()
    watch = _watch(registry, coverage_frames=3)
    big = [DefectRegion("dark", 60, (0, 0, 8, 8), 0.9, 0.9)]
    output = np.zeros((2, 8, 8), np.float32)
    for _ in range(2):
        watch.observe(output, big, 64)
    assert watch.active() == []
    watch.observe(output, big, 64)
    assert "cover 50% or more of the frame in 3 frames in a row" in watch.active()[0]
    snapshot = registry.health.snapshot()  # what the MQTT status and the live view show
    assert snapshot.state == "degraded" and snapshot.reasons[0].startswith("sanity coverage: defects cover 50%")
    watch.observe(output, [], 64)
    assert watch.active() == []
    assert registry.health.snapshot().state == "online"


def test_nothing_found_any_more_on_a_line_that_found_defects():
    watch = _watch(quiet_frames=4)
    output = np.zeros((2, 8, 8), np.float32)
    for _ in range(10):  # a line that never found anything is not flagged while running
        watch.observe(output, [], 64)
    assert watch.active() == []
    watch.observe(output, [REGION], 64)
    for _ in range(4):
        watch.observe(output, [], 64)
    assert "no defect found in the last 4 frames" in watch.active()[0]
    watch.observe(output, [REGION], 64)
    assert watch.active() == []


def test_inspect_refuses_a_nan_model_at_start_with_the_trial_line(tmp_path, write_config, capsys, caplog):
    """NaN on every image is caught before the first image by the trial inference (edge_agent.trial),
    the same line `check` prints; the watch stays for what only shows later on the line."""
    dark_spot_model(tmp_path / "nan.onnx", nan=True)
    (tmp_path / "images").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "images" / "{}.png".format(i)), dark_square_image())
    config = write_config({"model": {"path": "nan.onnx", "input": {"width": 64, "height": 64},
                                     "output": {"classes": ["background", "dark"]}}})
    with caplog.at_level(logging.ERROR):
        assert main(["inspect", "--config", str(config), "--images", str(tmp_path / "images"),
                     "--out", str(tmp_path / "out")]) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.startswith("model.path: nan.onnx: the output holds NaN or Inf on 3 of 3 sample image(s)")


def test_inspect_prints_the_watch_summary_at_the_end(tmp_path, write_config, capsys):
    dark_spot_model(tmp_path / "dark.onnx")
    (tmp_path / "images").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "images" / "{}.png".format(i)), np.full((120, 160, 3), 200, np.uint8))
    config = write_config({"model": {"path": "dark.onnx", "input": {"width": 64, "height": 64},
                                     "output": {"classes": ["background", "dark"]}}})
    assert main(["inspect", "--config", str(config), "--images", str(tmp_path / "images"),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "WARN  no defect found in any of the 3 image(s)" in out
