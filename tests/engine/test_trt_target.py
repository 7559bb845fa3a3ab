"""TensorRTTarget's choices before a build: DLA profile and precision, without building (the child is replaced)."""

import sys
from pathlib import Path

import pytest
from engine_fixtures import engine_config_fixture, image_sets_fixture  # noqa: F401 -- fixtures
from trt_fakes import _Builder, make_fake

from edge_agent.config_loader import load_config
from edge_agent.engine import trt_target
from edge_agent.engine.chain import Preparation
from edge_agent.errors import ConfigError


@pytest.fixture
def target_for(monkeypatch, tmp_path):
    """TensorRTTarget on a fake TensorRT 10.3 with two DLA cores; builds write a stub plan in-process."""
    module = make_fake("10.3.0")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(trt_target, "TENSORRT_MODULE", module.__name__)
    monkeypatch.setattr(_Builder, "dla_cores", 2)
    builds = []

    def fake_run_isolated(target, kwargs, what, progress, **_):
        builds.append(kwargs)
        Path(kwargs["output"]).write_bytes(b"PLAN")
        return {"dla_core": kwargs["dla_core"]}

    monkeypatch.setattr(trt_target, "run_isolated", fake_run_isolated)

    def make(config):
        return trt_target.TensorRTTarget(Preparation(config)), builds

    return make


def _config(engine_config, tmp_path, **backend):
    base = engine_config(gate={"enabled": False})
    return load_config(None, {"model": {"path": str(base.model.path), "input": {"width": 32, "height": 32}},
                              "backend": dict({"type": "tensorrt", "dla_core": 1}, **backend),
                              "pipeline": {"max_batch": 4}, "paths": {"cache_dir": str(tmp_path / "cache")},
                              "engine": base.engine.model_dump(mode="json")})


def test_dla_gets_a_static_profile_and_fp32_stays_on_the_gpu(engine_config, tmp_path, target_for):
    target, builds = target_for(_config(engine_config, tmp_path))
    assert list(target.profile.values()) == [[[4, 3, 32, 32]] * 3]  # min = opt = max = pipeline.max_batch
    target.attempt("fp16")
    target.attempt("fp32")
    assert [b["dla_core"] for b in builds] == [1, None]


def test_a_dynamic_profile_on_dla_is_a_clear_error(engine_config, tmp_path, target_for):
    with pytest.raises(ConfigError, match=r"dla_core 1 needs a static shape profile.*\[4, 4, 4\]"):
        target_for(_config(engine_config, tmp_path, profile={"batch": [1, 2, 4]}))


@pytest.mark.parametrize("int8_ms,fp16_ms,served", [(3.0, 2.0, "fp16"), (1.5, 2.0, "int8")])
def test_tensorrt_11_int8_is_timed_against_fp16_and_the_faster_serves(engine_config, tmp_path, monkeypatch,
                                                                     int8_ms, fp16_ms, served):
    from edge_agent.engine import speed
    from edge_agent.engine.chain import Preparation

    module = make_fake("11.4.0.106")  # strongly typed only: INT8 keeps unquantized ops in FP32
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(trt_target, "TENSORRT_MODULE", module.__name__)
    monkeypatch.setattr(trt_target, "run_isolated", lambda target, kwargs, what, progress, **_: (Path(
        kwargs["output"]).write_bytes(b"PLAN " + kwargs["precision"].encode()), {})[1])
    timed = []
    monkeypatch.setattr(speed, "time_engines", lambda config, a, b: timed.append((a.precision, b.precision)) or (
        int8_ms, fp16_ms))
    config = _config(engine_config, tmp_path, dla_core=None, precision="int8")
    report = Preparation(config).run("int8").as_dict()
    assert timed == [("int8", "fp16")]
    assert report["precision_served"] == served and report["speed"]["served"] == served
    assert report["speed"]["int8_ms"] == int8_ms and report["speed"]["fp16_ms"] == fp16_ms
    assert ("FP16 serves" in report["speed"]["why"]) == (served == "fp16")
    assert [f["precision"] for f in report["fallbacks"]] == (["int8"] if served == "fp16" else [])
    again = Preparation(config).run("int8").as_dict()  # a restart reuses the stored measurement
    assert timed == [("int8", "fp16")] and again["precision_served"] == served
