"""Trial inference (edge_agent.trial): `check` runs the model on a few sample images and each
pixel-level mistake (NaN output, logits read as probabilities, a scale/mean/std mistake, a
normalization that disagrees with the one the model records) is one line naming the key, the value
and the fix, exit non-zero, no traceback; the same line at start. The demo config passes."""

import json
import subprocess
import sys
import time

import cv2
import onnx
import pytest

from edge_agent.backends import create_backend
from edge_agent.backends.base import PreparedModel
from edge_agent.cli import main
from edge_agent.config import DEMO_MODEL
from edge_agent.config_loader import load_config
from edge_agent.modelcheck import check_model
from edge_agent.trial import check_findings, run_trial, sample_images

from conftest import REPO, assert_one_line_from_check_and_at_start, dark_square_image
from onnx_models import dark_spot_model

TWO_CLASSES = {"classes": ["background", "dark"]}


def bright_model(path):
    """Fires where the normalized first channel exceeds 2: never with pixels scaled to 0-1 (scale
    1/255), everywhere but the black square with raw 0-255 pixels (`scale: 1.0`)."""
    return dark_spot_model(path, threshold=2.0, gain=-20.0)


def _images(folder, count=3, **kwargs):
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / "{}.png".format(i)), dark_square_image(**kwargs))
    return folder


def _config(tmp_path, write_config, model_path, model=None, folder=True):
    entry = dict({"path": str(model_path), "input": {"width": 64, "height": 64}, "output": TWO_CLASSES},
                 **(model or {}))
    content = {"model": entry}
    if folder:
        _images(tmp_path / "images")
        content["sources"] = [{"type": "folder", "path": "images"}]
    return write_config(content)


def with_recorded_normalization(path, scale, mean, std):
    """The model with its training normalization in metadata_props, as scripts/train_demo_model.py writes it."""
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "input", json.dumps({"scale": scale, "mean": mean, "std": std})
    onnx.save(proto, str(path))
    return path


# (id, model builder, model config overrides, expected key, words in the line)
MISTAKES = [
    ("nan-output", lambda p: dark_spot_model(p, nan=True), {}, "model.path",
     ["NaN or Inf on 3 of 3 sample image(s)", "first frames of source(s) cam0 (folder", "re-export the model"]),
    ("scale-1-instead-of-1/255", bright_model, {"input": {"width": 64, "height": 64, "scale": 1.0}},
     "model.input.scale", ["1 (mean [0, 0, 0], std [1, 1, 1])", "cover 50% or more of the frame on 3 of 3",
                           "leave scale out, it defaults to 1/255"]),
    ("mean-std-against-the-recorded-ones",
     lambda p: with_recorded_normalization(dark_spot_model(p), 1 / 255, [0.5] * 3, [0.25] * 3),
     {"input": {"width": 64, "height": 64, "mean": [0, 0, 0], "std": [1, 1, 1]}}, "model.input.mean",
     ["[0, 0, 0] but the model was trained with scale 1/255, mean [0.5, 0.5, 0.5], std [0.25, 0.25, 0.25]",
      "ONNX metadata 'input'", "set mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]"]),
]


@pytest.mark.parametrize("case", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_pixel_mistake_is_one_line_from_check_and_at_start(case, tmp_path, write_config, capsys, caplog):
    _, build, model, key, words = case
    path = _config(tmp_path, write_config, build(tmp_path / "model.onnx"), model)
    config = load_config(path)
    findings = [f for f in check_model(config.model) + check_findings(config) if f.status == "fail"]
    (failure,) = findings
    assert failure.key == key
    line = failure.line()
    assert all(word in line for word in words), line

    assert_one_line_from_check_and_at_start(path, failure, lambda row: row.startswith("FAIL"), capsys, caplog)


def test_the_real_cli_fails_check_and_run_with_one_line_and_no_traceback(tmp_path, write_config):
    path = _config(tmp_path, write_config, dark_spot_model(tmp_path / "nan.onnx", nan=True))
    for command in ("check", "run"):
        done = subprocess.run([sys.executable, "-m", "edge_agent.cli", command, "--config", str(path)], cwd=str(REPO),
                              capture_output=True, text=True, timeout=120)
        both = done.stdout + done.stderr
        assert done.returncode == 1, both
        assert "Traceback" not in both
        lines = [row for row in both.splitlines() if "NaN or Inf on 3 of 3 sample image(s)" in row]
        assert len(lines) == 1, both
        if command == "check":
            assert lines[0].startswith("FAIL  trial            model.path: nan.onnx: the output holds NaN"), both
        else:
            assert "ERROR" in lines[0] and "fix: re-export the model" in lines[0], both


def test_logits_read_as_probabilities_fail_the_trial(tmp_path, write_config):
    """The graph check says this first (output from Conv); the trial sees it in the scores too, for a
    graph that hides it (here: the trial alone, on the softmax-logits model with activation none)."""
    path = _config(tmp_path, write_config, dark_spot_model(tmp_path / "m.onnx"),
                   {"output": dict(TWO_CLASSES, activation="none")})
    config = load_config(path)
    (finding,) = _trial(config)
    assert finding.status == "fail" and finding.key == "model.output.activation"
    assert "none, but the scores range" in finding.message and "outside 0-1" in finding.message
    assert finding.fix == "set model.output.activation: softmax"
    # from `check` this mistake stays one line: the graph check's, and the trial does not repeat it
    assert [f.key for f in check_model(config.model) if f.status == "fail"] == ["model.output.activation"]


def test_nothing_found_on_any_sample_is_a_warning_naming_the_normalization(tmp_path, write_config, capsys):
    path = _config(tmp_path, write_config, bright_model(tmp_path / "m.onnx"))
    (finding,) = check_findings(load_config(path))
    assert finding.status == "warn" and finding.key == "model.input"
    assert "no defect found on any of the 3 sample image(s)" in finding.message
    assert "scale 0.00392157, mean [0, 0, 0], std [1, 1, 1]" in finding.message
    assert main(["check", "--config", str(path)]) == 0
    assert "WARN  trial            model.input: no defect found" in capsys.readouterr().out


def test_synthetic_stand_ins_only_warn_for_a_users_model(tmp_path, write_config):
    path = _config(tmp_path, write_config, bright_model(tmp_path / "m.onnx"),
                   {"input": {"width": 64, "height": 64, "scale": 1.0}}, folder=False)
    (finding,) = check_findings(load_config(path))
    assert finding.status == "warn" and finding.key == "model.input.scale"
    assert "synthetic frames (source cam0, seed 1000)" in finding.message
    assert "set engine.calibration.folder" in finding.message


def test_with_the_sanity_watch_off_full_frame_defects_only_warn(tmp_path, write_config):
    """The way out for a model whose defects do cover most of a frame: NaN and logits still fail."""
    path = _config(tmp_path, write_config, bright_model(tmp_path / "m.onnx"),
                   {"input": {"width": 64, "height": 64, "scale": 1.0}})
    content = load_config(path).model_dump(mode="json")
    content["sanity"] = {"enabled": False}
    (finding,) = check_findings(load_config(write_config(content, "off.yaml")))
    assert finding.status == "warn" and "a warning only: sanity.enabled is false" in finding.message


def test_samples_come_from_sources_then_calibration_then_the_generator(tmp_path, write_config):
    model = dark_spot_model(tmp_path / "m.onnx")
    calibration = _images(tmp_path / "calibration", count=8)
    base = {"path": str(model), "input": {"width": 64, "height": 64}, "output": TWO_CLASSES}
    config = load_config(write_config({"model": base, "engine": {"calibration": {"folder": str(calibration)}},
                                       "sources": [{"type": "camera", "device": 0}]}))
    samples = sample_images(config)
    assert samples.description.startswith("images of {}".format(calibration)) and not samples.synthetic
    assert "held out from calibration" in samples.description and len(samples.images) == 4  # every 2nd of 8
    config = load_config(write_config({"model": base}))
    samples = sample_images(config)
    assert samples.synthetic and samples.description == "synthetic frames (source cam0, seed 1000)"


def test_the_demo_config_passes_quickly(capsys):
    config = load_config(None)
    started = time.monotonic()
    (finding,) = check_findings(config)
    seconds = time.monotonic() - started
    assert finding.status == "info", finding.line()
    assert "outputs finite" in finding.message and "synthetic frames (source cam0, seed 1000)" in finding.message
    assert seconds < 2.0, seconds
    assert config.model.path == DEMO_MODEL
    main(["check"])
    assert "PASS  trial            trial inference on 6 sample image(s)" in capsys.readouterr().out


def _trial(config):
    path = config.model.path
    with create_backend(PreparedModel(path, "fp32", path), config) as backend:
        return run_trial(config, backend)
