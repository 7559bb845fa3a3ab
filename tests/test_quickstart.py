"""A config inferred from a model nobody described: what is read, what is assumed, what is refused."""

import json
import os
import subprocess
import sys

import onnx
import pytest

from edge_agent.errors import ConfigError
from edge_agent.quickstart import config_for_model

from conftest import REPO
from onnx_models import dark_spot_model, tiny_unet_model


def test_nchw_softmax_model(tmp_path):
    config, assumptions = config_for_model(tiny_unet_model(tmp_path / "m.onnx", size=(48, 40), classes=3))
    spec, out = config.model.input, config.model.output
    assert (spec.layout, spec.width, spec.height, spec.name) == ("NCHW", 40, 48, "image")
    assert out.activation == "softmax" and out.classes == ["background", "class1", "class2"]
    assert any("normalisation" in line for line in assumptions)


def test_nhwc_sigmoid_model(tmp_path):
    model = dark_spot_model(tmp_path / "m.onnx", layout="NHWC", activation="sigmoid")
    config, _ = config_for_model(model)
    assert config.model.input.layout == "NHWC" and config.model.output.activation == "sigmoid"
    assert config.model.output.background is None


def test_a_model_without_a_fixed_size_is_refused_with_the_fix(tmp_path):
    path = tiny_unet_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "size"
    onnx.save(model, str(path))
    with pytest.raises(ConfigError, match="no fixed height and width.*--config"):
        config_for_model(path)


def test_build_fp16_without_a_config_or_calibration_images(tmp_path):
    model = tiny_unet_model(tmp_path / "customer.onnx")
    env = dict(os.environ, CACHE_DIRECTORY=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "build", "--model", str(model), "--precision",
                           "fp16", "--json"], capture_output=True, text=True, cwd=str(REPO), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads(proc.stdout)
    assert document["precision_served"] == "fp16" and document["gate"]["passed"]
    assert "synthetic parts stand in" in document["gate"]["validation_set"]
    assert any("32x32" in line for line in document["assumptions"])
