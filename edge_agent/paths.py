"""Where the agent keeps its state (outbox) and caches (engines): the config, else systemd's directories."""

import os
from pathlib import Path

from edge_agent.config import AgentConfig


def state_dir(config: AgentConfig) -> Path:
    if config.paths.state_dir is not None:
        return config.paths.state_dir
    return _systemd_dir("STATE_DIRECTORY", Path.home() / ".local" / "state" / "edge-agent")


def cache_dir(config: AgentConfig) -> Path:
    if config.paths.cache_dir is not None:
        return config.paths.cache_dir
    return _systemd_dir("CACHE_DIRECTORY", Path.home() / ".cache" / "edge-agent")


def _systemd_dir(variable: str, fallback: Path) -> Path:
    value = os.environ.get(variable)
    # systemd may pass several colon-separated directories; the first is ours.
    return Path(value.split(":")[0]) if value else fallback
