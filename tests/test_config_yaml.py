"""Pathological YAML is refused quickly with one clear message (issue 14)."""

import subprocess
import sys
import time

import pytest

from edge_agent.config_loader import load_config
from edge_agent.errors import ConfigError

from conftest import REPO

ALIAS_BOMB = "".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]\n"]
    + ["a{0}: &a{0} [*a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}]\n".format(i, i - 1)
       for i in range(1, 9)]
    + ["device: {id: *a8}\n"])


def _error(write_config, content):
    with pytest.raises(ConfigError) as info:
        load_config(write_config(content))
    return str(info.value)


def test_alias_bomb_is_refused_at_once(write_config):
    started = time.monotonic()
    text = _error(write_config, ALIAS_BOMB)
    assert time.monotonic() - started < 2.0
    assert "expands to more than 100000 values" in text and "config.yaml:" in text


def test_alias_bomb_through_the_cli_exits_2_quickly(write_config):
    path = write_config(ALIAS_BOMB)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(path)],
                          capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - started < 30
    assert "Traceback" not in proc.stderr and "aliases" in proc.stderr


def test_a_few_aliases_still_work(write_config):
    config = load_config(write_config(
        "sources:\n  - &cam {type: synthetic, name: a, fps: 5}\n  - {<<: *cam, name: b}\n"))
    assert [s.name for s in config.sources] == ["a", "b"]
    assert config.sources[1].fps == 5


def test_a_key_written_twice_is_an_error_naming_both_lines(write_config):
    text = _error(write_config, "memory:\n  limit_mb: 512\npipeline:\n  max_batch: 2\nmemory:\n  limit_mb: 20\n")
    assert "config.yaml:5: key 'memory' appears twice" in text
    assert "lines 1 and 5" in text


def test_a_nested_key_written_twice_is_an_error(write_config):
    text = _error(write_config, "memory:\n  limit_mb: 512\n  limit_mb: 20\n")
    assert "key 'memory.limit_mb' appears twice" in text


@pytest.mark.parametrize("text", ["x: " + "[" * 200000, "x: " + "[" * 100 + "]" * 100])
def test_deep_nesting_is_refused(write_config, text):
    assert "nested" in _error(write_config, text)


def test_a_huge_file_is_refused(write_config):
    assert "the limit is 1024 kB" in _error(write_config, "# " + "x" * (2 << 20) + "\n")


def test_a_device_id_longer_than_a_topic_level_allows_is_refused(write_config):
    text = _error(write_config, {"device": {"id": "a" * 70000}})
    assert "device.id" in text and "at most 64 characters" in text
    assert len(text) < 2000  # the value is shortened in the message


def test_a_missing_folder_is_not_a_config_error(write_config, tmp_path):
    config = load_config(write_config({"sources": [{"type": "folder", "path": "later"},
                                                   {"type": "video", "name": "v", "path": "later.mp4"}]}))
    assert config.sources[0].path == tmp_path / "later"
    assert config.sources[1].path == tmp_path / "later.mp4"
