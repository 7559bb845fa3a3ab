"""`edge-agent status`: which model this board serves and where its last rollout stands."""

from typing import Any, Dict

from edge_agent.config import AgentConfig
from edge_agent.engine.cache import file_sha256
from edge_agent.json_stdout import print_document
from edge_agent.rollout.deploy_command import describe
from edge_agent.rollout.store import RolloutStore


def show_status(config: AgentConfig, as_json: bool = False) -> int:
    store = RolloutStore(config)
    active = store.active
    configured = config.model.path
    status: Dict[str, Any] = {
        "device": config.device.id,
        "serving": ({"source": "rollout", "rollout_id": active.get("rollout_id"), "sha256": active.get("sha256"),
                     "path": active.get("path"), "name": active.get("name")} if active else
                    {"source": "config", "sha256": file_sha256(configured) if configured.is_file() else None,
                     "path": str(configured), "name": configured.name}),
        "last_report": store.report,
        "kept": [{k: e.get(k) for k in ("rollout_id", "sha256", "name", "path", "configured") if e.get(k)}
                 for e in store.kept],
        "desired_file": str(store.desired_path) if store.desired_path.exists() else None,
        "state_file": str(store.state_path),
    }
    if as_json:
        print_document(status)
        return 0
    serving = status["serving"]
    origin = "rolled out as {}".format(serving.get("rollout_id")) if active else "from the config"
    print("device {}: serving {} ({}, sha256 {})".format(status["device"], serving["name"], origin, serving["sha256"]))
    print("last rollout: {}".format(describe(store.report) if store.report else "none"))
    for entry in status["kept"]:
        print("kept for rollback: {} (sha256 {})".format(entry.get("name"), entry.get("sha256")))
    return 0
