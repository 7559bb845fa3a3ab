import json
import sys
from pathlib import Path

import pytest
from engine_fixtures import engine_config_fixture, image_sets_fixture  # noqa: F401 -- fixtures

from edge_agent.cli import main
from edge_agent.engine.cache import EngineCache
from edge_agent.engine.isolation import run_isolated
from edge_agent.errors import EngineError

sys.path.insert(0, str(Path(__file__).resolve().parent))  # isolation_targets for the spawned child


def test_oom_kill_is_reported_and_leaves_no_partial_file(tmp_path):
    cache = EngineCache(tmp_path, keep_last=2)

    def produce(temp):
        run_isolated("isolation_targets:killed_mid_write", {"target": str(temp)}, "TensorRT FP16 build",
                     lambda text, fraction: None)

    with pytest.raises(EngineError, match="SIGKILL.*out-of-memory"):
        cache.store("model", "fp16", "0" * 64, ".plan", produce, {})
    assert [p.name for p in (tmp_path / "engines" / "model").iterdir()] == []


def test_caller_gets_heartbeats_during_a_long_step():
    beats = []
    result = run_isolated("isolation_targets:slow", {"seconds": 1.5}, "calibration",
                          lambda text, fraction: beats.append(text), heartbeat=0.4)
    assert result == {"slept": 1.5} and len(beats) >= 3


def test_an_exception_in_the_child_is_named():
    with pytest.raises(EngineError, match="RuntimeError: TensorRT internal error: boom"):
        run_isolated("isolation_targets:raises", {}, "TensorRT build", lambda text, fraction: None)


def test_cli_build_json(engine_config, tmp_path, write_config, capsys):
    config = engine_config()
    path = write_config({"model": {"path": str(config.model.path), "input": {"width": 32, "height": 32}},
                         "paths": {"cache_dir": str(tmp_path / "cache")},
                         "engine": config.engine.model_dump(mode="json")})
    assert main(["build", "--config", str(path), "--precision", "int8", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["cache"] == "built" and first["precision_served"] == "int8" and first["backend"] == "onnxruntime"
    assert first["gate"]["passed"] is True and first["gate"]["iou_agreement"] >= 0.5
    assert Path(first["artifact"]).exists() and first["seconds"] > 0
    assert main(["build", "--config", str(path), "--precision", "int8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"] == "hit"


def test_cli_build_bad_calibration_exits_non_zero(engine_config, tmp_path, write_config, capsys):
    config = engine_config()
    path = write_config({"model": {"path": str(config.model.path), "input": {"width": 32, "height": 32}},
                         "paths": {"cache_dir": str(tmp_path / "cache")},
                         "engine": {"calibration": {"folder": str(tmp_path / "missing")}}})
    assert main(["build", "--config", str(path), "--precision", "int8"]) != 0
