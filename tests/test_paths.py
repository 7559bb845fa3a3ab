"""State and cache directories: the config, systemd's, the service's when run by hand as its user or root."""

import json
import os
import subprocess
import sys

import pytest

from edge_agent import paths
from edge_agent.config import AgentConfig


@pytest.fixture
def service_dirs(tmp_path, monkeypatch):
    state, cache = tmp_path / "var-lib-edge-agent", tmp_path / "var-cache-edge-agent"
    state.mkdir()
    cache.mkdir()
    monkeypatch.setattr(paths, "SERVICE_STATE_DIR", state)
    monkeypatch.setattr(paths, "SERVICE_CACHE_DIR", cache)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return state, cache


def test_the_service_user_and_root_get_the_services_directories(service_dirs, monkeypatch):
    monkeypatch.setattr(paths, "_is_service_account", lambda: True)
    assert (paths.state_dir(AgentConfig()), paths.cache_dir(AgentConfig())) == service_dirs


def test_other_users_get_their_home(service_dirs, monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "_is_service_account", lambda: False)
    assert paths.state_dir(AgentConfig()) == tmp_path / "home/.local/state/edge-agent"
    assert paths.cache_dir(AgentConfig()) == tmp_path / "home/.cache/edge-agent"


def test_systemd_and_the_config_come_first(service_dirs, monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "_is_service_account", lambda: True)
    monkeypatch.setenv("STATE_DIRECTORY", "/run/x:/run/y")
    assert paths.state_dir(AgentConfig()) == paths.Path("/run/x")
    config = AgentConfig.model_validate({"paths": {"cache_dir": str(tmp_path / "mine")}})
    assert paths.cache_dir(config) == tmp_path / "mine"


def test_no_service_installed_means_home(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SERVICE_STATE_DIR", tmp_path / "absent")
    monkeypatch.setattr(paths, "_is_service_account", lambda: True)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.state_dir(AgentConfig()) == tmp_path / "home/.local/state/edge-agent"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the check runs as root against the service's directories")
def test_check_as_root_inspects_the_services_directories(tmp_path):
    """`sudo edge-agent check` on an installed board reports the folders the service uses."""
    state, cache = tmp_path / "state", tmp_path / "cache"
    state.mkdir()
    cache.mkdir()
    code = ("import sys; from pathlib import Path; from edge_agent import paths; "
            "paths.SERVICE_STATE_DIR = Path(sys.argv[1]); paths.SERVICE_CACHE_DIR = Path(sys.argv[2]); "
            "from edge_agent.cli import main; sys.exit(main(['check', '--json']))")
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "CACHE_DIRECTORY")}
    proc = subprocess.run([sys.executable, "-c", code, str(state), str(cache)], capture_output=True, text=True,
                          env=dict(env, HOME=str(tmp_path / "home")), timeout=120, cwd="/")
    report = {c["name"]: c["detail"] for c in json.loads(proc.stdout)["checks"]}
    assert report["state-dir"].startswith(str(state)) and report["cache-dir"].startswith(str(cache)), report
