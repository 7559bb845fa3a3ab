"""Model checks: each config/model mismatch gives one line naming the key, the value and the fix,
from `edge-agent check` and, identically, at start (`demo`/`run`/`build`), with no traceback; the
uint8-input, class-index and half-resolution models are served, with boxes in image pixels."""

import threading

import cv2
import pytest

from edge_agent.agent import running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.metrics import Registry
from edge_agent.modelcheck import check_model
from edge_agent.pipeline import ResultSink

from conftest import assert_one_line_from_check_and_at_start, dark_square_image
from onnx_models import dark_spot_model, two_input_model

TWO_CLASSES = {"classes": ["background", "dark"]}

# (id, model builder kwargs or "two_inputs", model config overrides, expected key, words in the line)
MISTAKES = [
    ("classes-vs-channels", {}, {"output": {"classes": ["background", "dark", "spot"]}},
     "model.output.classes", ["3 class(es)", "2 channel(s)", "one class name per output channel"]),
    ("two-inputs", "two_inputs", {"output": TWO_CLASSES}, "model.path", ["2 inputs", "image, level", "single image"]),
    ("uint8-with-normalization", {"input_type": "uint8"}, {"input": {"scale": 0.0039}, "output": TWO_CLASSES},
     "model.input.scale", ["uint8", "remove model.input scale, mean and std"]),
    ("argmax-read-as-scores", {"head": "argmax"}, {"output": TWO_CLASSES}, "model.output.kind",
     ["int64", "class-index", "set model.output.kind: class_index"]),
    ("logits-with-activation-none", {}, {"output": dict(TWO_CLASSES, activation="none")},
     "model.output.activation", ["comes from Conv", "raw logits", "set model.output.activation: softmax"]),
    ("softmax-applied-twice", {"head": "softmax"}, {"output": TWO_CLASSES}, "model.output.activation",
     ["already comes from Softmax", "set model.output.activation: none"]),
    ("input-size", {}, {"input": {"width": 96}, "output": TWO_CLASSES}, "model.input.width",
     ["96", "width 64", "set model.input.width: 64"]),
    ("layout", {}, {"input": {"layout": "NHWC"}, "output": TWO_CLASSES}, "model.input.layout",
     ["NHWC", "set model.input.layout: NCHW"]),
]


def _model_config(tmp_path, builder, model_overrides):
    path = tmp_path / "model.onnx"
    if builder == "two_inputs":
        two_input_model(path)
    else:
        dark_spot_model(path, **builder)
    model = {"path": str(path), "input": {"width": 64, "height": 64}, "thresholds": {"min_area_px": 20}}
    for key, value in model_overrides.items():
        model[key] = dict(model.get(key, {}), **value)
    return model


@pytest.mark.parametrize("case", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_one_line_from_check_and_at_start(case, tmp_path, write_config, capsys, caplog):
    _, builder, overrides, key, words = case
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), dark_square_image())
    path = write_config({"model": _model_config(tmp_path, builder, overrides),
                         "sources": [{"type": "folder", "path": "images"}]})
    (failure,) = [f for f in check_model(load_config(path).model) if f.status == "fail"]
    assert failure.key == key
    line = failure.line()
    assert all(word in line for word in words), line

    assert_one_line_from_check_and_at_start(path, failure, lambda row: row.startswith("FAIL  model"), capsys,
                                            caplog)


def test_the_demo_model_passes_and_keeps_its_card_normalization():
    config = load_config(None)
    assert [f for f in check_model(config.model) if f.status == "fail"] == []
    assert config.model.input.normalization() == (1 / 255, [0.5] * 3, [0.25] * 3)


def test_a_users_model_gets_neutral_normalization(tmp_path):
    dark_spot_model(tmp_path / "m.onnx")
    config = load_config(None, {"model": {"path": str(tmp_path / "m.onnx"), "output": TWO_CLASSES}})
    assert config.model.input.normalization() == (1 / 255, [0.0] * 3, [1.0] * 3)
    assert config.model.input.normalization(raw_pixels=True) == (1.0, [0.0] * 3, [1.0] * 3)


class Collect(ResultSink):
    def __init__(self):
        self.regions = []

    def on_result(self, result):
        self.regions.append(result.regions)


@pytest.mark.parametrize("builder, output", [
    ({"input_type": "uint8"}, TWO_CLASSES),
    ({"head": "argmax"}, dict(TWO_CLASSES, kind="class_index")),
    ({"downsample": 2}, TWO_CLASSES),
    ({"head": "softmax"}, dict(TWO_CLASSES, activation="none")),
], ids=["uint8-input", "class-index-output", "half-resolution-output", "probabilities-output"])
def test_unusual_models_are_served_with_boxes_in_image_pixels(builder, output, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    boxes = [(40, 30, 40, 30), (100, 60, 36, 40)]
    for i, box in enumerate(boxes):
        cv2.imwrite(str(folder / "{}.png".format(i)), dark_square_image(box=box))
    model = _model_config(tmp_path, builder, {"output": output})
    config = load_config(None, {"model": model, "sources": [{"type": "folder", "path": str(folder)}]})
    assert [f for f in check_model(config.model) if f.status == "fail"] == []
    sink = Collect()
    with running_pipeline(config, Registry(), [sink]) as pipeline:
        pipeline.run(threading.Event())
    assert len(sink.regions) == 2
    for regions, box in zip(sink.regions, boxes):
        (region,) = regions
        assert region.cls == "dark"
        assert all(abs(a - b) <= 6 for a, b in zip(region.bbox, box)), (region.bbox, box)
        assert abs(region.area_px - box[2] * box[3]) <= 0.25 * box[2] * box[3], region.area_px
