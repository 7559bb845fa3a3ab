import subprocess
import sys

import pytest

from edge_agent.config import AgentConfig
from edge_agent.config_loader import dump_config, load_config
from edge_agent.errors import ConfigError

from conftest import REPO


def test_defaults_are_the_demo():
    config = AgentConfig()
    assert config.backend.type == "onnxruntime"
    assert config.sources[0].type == "synthetic"
    assert config.model.output.defect_classes == ["scratch", "spot", "crack", "pit"]


def test_example_demo_config_is_valid():
    config = load_config(REPO / "examples" / "demo.yaml")
    assert config.device.id == "demo-bench"


def test_example_factory_config_is_valid_apart_from_its_model(dark_model):
    config = load_config(REPO / "examples" / "factory.yaml", overrides={"model": {"path": str(dark_model)}})
    assert [s.type for s in config.sources] == ["camera", "rtsp"]
    assert config.model.thresholds.for_class("scratch") == (0.6, 20)
    assert config.model.thresholds.for_class("pit") == (0.5, 10)
    assert config.model.thresholds.for_class("spot") == (0.5, 40)


def test_relative_paths_resolve_against_the_config_file(tmp_path, write_config, dark_model):
    (tmp_path / "imgs").mkdir()
    path = write_config({"model": {"path": "dark.onnx"}, "sources": [{"type": "folder", "path": "imgs"}]})
    config = load_config(path)
    assert config.model.path == dark_model
    assert config.sources[0].path == tmp_path / "imgs"


def _error(write_config, content):
    with pytest.raises(ConfigError) as info:
        load_config(write_config(content))
    return str(info.value)


def test_yaml_syntax_error_names_line(write_config):
    text = _error(write_config, "device:\n  id: a\n sources: [\n")
    assert "YAML syntax error" in text and "line 3" in text


def test_wrong_type_names_key_line_and_value(write_config):
    text = _error(write_config, "device:\n  id: cam\npipeline:\n  max_batch: lots\n")
    assert "config.yaml:4: pipeline.max_batch" in text
    assert "'lots'" in text and "integer" in text


def test_unknown_key_suggests_the_nearest(write_config):
    text = _error(write_config, "pipeline:\n  max_bach: 2\n")
    assert "pipeline.max_bach unknown key" in text
    assert "Did you mean 'max_batch'?" in text
    assert "Allowed here: decode_nice, decode_threads, latency_target_ms, max_batch, max_wait_ms" in text


def test_unknown_key_inside_a_source_lists_that_source_type_keys(write_config):
    text = _error(write_config, "sources:\n  - type: synthetic\n    fsp: 10\n")
    assert "config.yaml:3: sources[0].fsp unknown key. Did you mean 'fps'?" in text


def test_missing_model_file(write_config, tmp_path):
    text = _error(write_config, {"model": {"path": "nowhere.onnx"}})
    assert "model.path" in text and str(tmp_path / "nowhere.onnx") in text and "does not exist" in text


@pytest.mark.parametrize("content, key, fragment", [
    ({"pipeline": {"max_batch": 0}}, "pipeline.max_batch", "greater than or equal to 1"),
    ({"model": {"thresholds": {"score": 1.5}}}, "model.thresholds.score", "less than or equal to 1"),
    ({"memory": {"limit_mb": -5}}, "memory.limit_mb", "greater than or equal to 16"),
    ({"device": {"id": "Press 3"}}, "device.id", "should match pattern"),
    ({"sources": [{"type": "webcam"}]}, "sources[0]", "does not match any of the expected tags"),
    ({"sources": [{"type": "rtsp", "url": "http://x"}]}, "sources[0].url", "rtsp://"),
    ({"sources": [{"type": "camera", "device": "video0"}]}, "sources[0].device", "/dev/video0"),
    ({"sources": [{"type": "gstreamer", "pipeline": "v4l2src ! fakesink"}]}, "sources[0].pipeline", "appsink"),
    ({"sources": []}, "sources", "at least 1 item"),
    ({"sources": [{"type": "synthetic", "name": "a"}, {"type": "synthetic", "name": "a"}]}, "sources",
     "repeated: a"),
    ({"sources": [{"name": "a"}]}, "sources[0]", "needs a 'type' key"),
    ({"model": {"input": {"mean": [0.5]}}}, "model.input", "mean has 1 values but color RGB has 3"),
    ({"model": {"output": {"activation": "sigmoid"}}}, "model.output", "exactly one class"),
    ({"model": {"thresholds": {"per_class": {"dent": {"score": 0.3}}}}}, "model", "['dent']"),
])
def test_out_of_range_and_invalid_values(write_config, content, key, fragment):
    text = _error(write_config, content)
    assert " {} ".format(key) in text, text
    assert fragment in text, text


def test_every_problem_is_reported_at_once(write_config):
    text = _error(write_config, {"pipeline": {"max_batch": 0, "max_wait_ms": -1}})
    assert text.startswith("invalid configuration (2 problems):")


def test_top_level_must_be_a_mapping(write_config):
    assert "top level must be a mapping" in _error(write_config, "- a\n- b\n")


def test_empty_file_means_defaults(write_config):
    assert load_config(write_config("")).device.id == "edge-agent-demo"


def test_secrets_are_masked_in_errors_and_dumps(write_config):
    text = _error(write_config, {"mqtt": {"password": "hunter2"}})
    assert "hunter2" not in text
    dumped = dump_config(AgentConfig())
    assert "device:" in dumped


def test_cli_exits_2_without_traceback(write_config):
    path = write_config({"pipeline": {"max_batch": "x"}})
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "check", "--config", str(path)],
                          capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "pipeline.max_batch" in proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(path)],
                          capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "pipeline.max_batch" in proc.stderr
