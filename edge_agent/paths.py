"""Where the agent keeps its state (outbox) and caches (engines): the config, else the service's.

The service gets its directories from systemd ($STATE_DIRECTORY, $CACHE_DIRECTORY). Run by hand as
the service user or root (`sudo -u edge-agent edge-agent check`, `sudo edge-agent build`), the agent
finds the same ones systemd gives the installed service (StateDirectory=edge-agent ->
/var/lib/edge-agent), so check inspects and build fills what the service uses. Anyone else, on a
machine without the service, gets folders in their home.
"""

import os
from pathlib import Path

from edge_agent.config import AgentConfig

SERVICE_USER = "edge-agent"
SERVICE_STATE_DIR = Path("/var/lib/edge-agent")
SERVICE_CACHE_DIR = Path("/var/cache/edge-agent")


def state_dir(config: AgentConfig) -> Path:
    if config.paths.state_dir is not None:
        return config.paths.state_dir
    return _service_dir("STATE_DIRECTORY", SERVICE_STATE_DIR, Path.home() / ".local" / "state" / "edge-agent")


def cache_dir(config: AgentConfig) -> Path:
    if config.paths.cache_dir is not None:
        return config.paths.cache_dir
    return _service_dir("CACHE_DIRECTORY", SERVICE_CACHE_DIR, Path.home() / ".cache" / "edge-agent")


def _service_dir(variable: str, service: Path, personal: Path) -> Path:
    value = os.environ.get(variable)
    if value:  # systemd may pass several colon-separated directories; the first is ours.
        return Path(value.split(":")[0])
    if service.is_dir() and _is_service_account():
        return service
    return personal


def _is_service_account() -> bool:
    import pwd

    uid = os.geteuid()
    if uid == 0:
        return True
    try:
        return pwd.getpwuid(uid).pw_name == SERVICE_USER
    except KeyError:
        return False
