"""A TensorRT build that fails falls back INT8 -> FP16 -> FP32 and is remembered under its fingerprint.

The whole `edge-agent build` path runs: TensorRTTarget in this process, the build in a spawned
child (trt_builder.build_plan) against a fake TensorRT 10.3 generated from the recorded real
surface. The fake's builder returns None for an INT8 network when FAKE_TRT_FAIL_INT8 is set (what
the real builder does when calibration or every INT8 tactic fails) and logs each build it makes
to FAKE_TRT_BUILD_LOG, so the test sees which builds really ran.
"""

import json
import sys
from pathlib import Path

import pytest
from engine_fixtures import engine_config_fixture, image_sets_fixture  # noqa: F401 -- fixtures

from edge_agent.cli import main
from edge_agent.engine import trt_target

CALIBRATION_FAILURE = "Calibration failure occurred with no scaling factors detected."


@pytest.fixture
def failing_trt(tmp_path, monkeypatch):
    """The fake TensorRT importable by name in the spawned build child; INT8 builds fail."""
    folder = tmp_path / "fake_module"
    folder.mkdir()
    (folder / "fake_trt_10.py").write_text(
        "import sys\nfrom trt_fakes import make_fake\nsys.modules[__name__] = make_fake('10.3.0')\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))  # trt_fakes, for the child too
    monkeypatch.setattr(trt_target, "TENSORRT_MODULE", "fake_trt_10")
    monkeypatch.setenv("FAKE_TRT_FAIL_INT8", CALIBRATION_FAILURE)
    builds = tmp_path / "builds.log"
    monkeypatch.setenv("FAKE_TRT_BUILD_LOG", str(builds))
    monkeypatch.delitem(sys.modules, "fake_trt_10", raising=False)
    return lambda: builds.read_text().split() if builds.exists() else []


def _build(path, capsys, *extra):
    assert main(["build", "--config", str(path), "--precision", "int8", "--json"] + list(extra)) == 0
    return json.loads(capsys.readouterr().out)


def test_int8_build_failure_serves_fp16_and_is_remembered(engine_config, tmp_path, write_config, capsys,
                                                          failing_trt):
    config = engine_config(gate={"enabled": False})
    path = write_config({"model": {"path": str(config.model.path), "input": {"width": 32, "height": 32}},
                         "backend": {"type": "tensorrt", "precision": "int8"},
                         "paths": {"cache_dir": str(tmp_path / "cache")},
                         "engine": config.engine.model_dump(mode="json")})

    first = _build(path, capsys)
    assert first["precision_served"] == "fp16" and first["cache"] == "built"
    assert len(first["fallbacks"]) == 1 and first["fallbacks"][0]["precision"] == "int8"
    assert CALIBRATION_FAILURE in first["fallbacks"][0]["reason"]
    assert failing_trt() == ["int8", "fp16"]
    served = Path(first["artifact"])
    manifest = json.loads(served.with_name(served.name + ".json").read_text())
    assert manifest["fallbacks"] == first["fallbacks"]
    failed = [json.loads(p.read_text()) for p in served.parent.glob("int8-*.plan.json")]
    assert len(failed) == 1 and CALIBRATION_FAILURE in failed[0]["build_failure"]["reason"]

    second = _build(path, capsys)  # a restart: served at once, nothing rebuilt
    assert second["precision_served"] == "fp16" and second["cache"] == "hit"
    assert failing_trt() == ["int8", "fp16"]
    assert "remembered" in second["fallbacks"][0]["reason"] and CALIBRATION_FAILURE in second["fallbacks"][0]["reason"]

    third = _build(path, capsys, "--force")  # --force retries the failed precision
    assert failing_trt()[2] == "int8" and third["precision_served"] == "fp16"


def test_a_build_that_fails_at_every_precision_is_an_error(engine_config, tmp_path, write_config, caplog,
                                                          failing_trt, monkeypatch):
    monkeypatch.setenv("FAKE_TRT_FAIL_ALL", "1")
    config = engine_config(gate={"enabled": False})
    path = write_config({"model": {"path": str(config.model.path), "input": {"width": 32, "height": 32}},
                         "backend": {"type": "tensorrt", "precision": "fp16"},
                         "paths": {"cache_dir": str(tmp_path / "cache")},
                         "engine": config.engine.model_dump(mode="json")})
    assert main(["build", "--config", str(path), "--precision", "fp16"]) != 0
    assert failing_trt() == ["fp16", "fp32"]
    assert "FP32 preparation failed after FP16 did" in caplog.text and "could not be allocated" in caplog.text


def test_the_birth_names_the_precisions_passed_over(tmp_path):
    from types import SimpleNamespace

    from edge_agent.backends.base import MemoryUsage, PreparedModel
    from edge_agent.config_loader import load_config
    from edge_agent.telemetry import pipeline_facts

    engine = tmp_path / "m.plan"
    fallbacks = ({"precision": "int8", "reason": "build failed: " + CALIBRATION_FAILURE},)
    backend = SimpleNamespace(name="tensorrt", model=PreparedModel(engine, "fp16", engine, "key", fallbacks),
                              memory=lambda: MemoryUsage(1, 2))
    facts = pipeline_facts(load_config(None, {}), SimpleNamespace(backend=backend))
    assert facts["precision"] == "fp16" and facts["precision_fallbacks"] == [dict(fallbacks[0])]
