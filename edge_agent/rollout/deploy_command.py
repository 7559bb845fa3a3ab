"""`edge-agent deploy`: hand a model to this board's agent from a shell, and follow the rollout.

The request goes where the agent looks for local desired state (`state_dir/desired-deployment.json`,
written atomically), so the running service downloads, builds, gates and swaps exactly as for an
MQTT rollout; with no agent running, it is applied at the next start. The command then prints each
state the agent reports until the rollout is active (exit 0), rejected or rolled back (exit 1).
"""

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from edge_agent.config import AgentConfig
from edge_agent.engine.cache import file_sha256, write_json_atomic
from edge_agent.errors import EdgeAgentError
from edge_agent.json_stdout import print_document
from edge_agent.rollout.request import DeploymentRequest, RequestError
from edge_agent.rollout.store import TERMINAL, RolloutStore

NOT_PICKED_UP = 4  # exit status: no running agent took the request within the pickup timeout


def run_deploy(config: AgentConfig, model: str, sha256: Optional[str] = None, size: Optional[int] = None,
               rollout_id: Optional[str] = None, name: Optional[str] = None, precision: Optional[str] = None,
               signature: Optional[str] = None, wait: bool = True, timeout_s: float = 3600.0,
               pickup_s: float = 20.0, as_json: bool = False) -> int:
    request = _request(model, sha256, size, rollout_id, name, precision, signature)
    store = RolloutStore(config)
    store.desired_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(store.desired_path, request.model_dump(mode="json", exclude_none=True))
    print("rollout {} requested: {} (sha256 {}…) -> {}".format(request.rollout_id, request.url, request.sha256[:12],
                                                              store.desired_path))
    if not wait:
        return 0
    return _follow(store, request.rollout_id, timeout_s, pickup_s, as_json)


def _request(model: str, sha256: Optional[str], size: Optional[int], rollout_id: Optional[str],
             name: Optional[str], precision: Optional[str], signature: Optional[str]) -> DeploymentRequest:
    remote = model.startswith(("http://", "https://"))
    data: Dict[str, Any] = {"rollout_id": rollout_id or time.strftime("local-%Y%m%d-%H%M%S"),
                            "signature": signature, "config": {"precision": precision} if precision else {}}
    if remote:
        if not sha256 or not size:
            raise RequestError("--model {} is a URL: give --sha256 and --size too (the agent verifies both before "
                               "it uses a byte)".format(model))
        data.update(url=model, sha256=sha256.lower(), size=size, name=name or model.rsplit("/", 1)[-1])
    else:
        path = Path(model[len("file://"):] if model.startswith("file://") else model).resolve()
        if not path.is_file():
            raise EdgeAgentError("--model {}: no such file (give an ONNX file or an http(s):// URL)".format(model))
        actual = file_sha256(path)
        if sha256 and sha256.lower() != actual:
            raise RequestError("--sha256 {} does not match {} (its SHA-256 is {})".format(sha256, path, actual))
        data.update(url=str(path), sha256=actual, size=path.stat().st_size, name=name or path.name)
    try:
        return DeploymentRequest.model_validate({k: v for k, v in data.items() if v is not None})
    except ValueError as exc:
        raise RequestError("deploy: {}".format(exc)) from None


def _follow(store: RolloutStore, rollout_id: str, timeout_s: float, pickup_s: float, as_json: bool) -> int:
    """Print each new state for people; with --json, one document at the end (the last report and
    every state seen), since stdout then carries exactly one JSON document."""
    started = time.monotonic()
    seen: List[Dict[str, Any]] = []
    while time.monotonic() - started < timeout_s:
        store.refresh()  # the agent writes it
        current = store.report
        if current and current.get("rollout_id") == rollout_id and (not seen or current != seen[-1]):
            seen.append(current)
            print(describe(current), file=sys.stderr if as_json else sys.stdout, flush=True)
            if current["state"] in TERMINAL:
                return _outcome(rollout_id, seen, 0 if current["state"] == "active" else 1, None, as_json)
        if not seen and time.monotonic() - started > pickup_s:
            return _outcome(rollout_id, seen, NOT_PICKED_UP, (
                "no running agent picked the request up within {:.0f} s (is the service running, with this "
                "config?); it stays in {} and is applied at the agent's next start".format(
                    pickup_s, store.desired_path)), as_json)
        time.sleep(0.5)
    late = "rollout {} still {} after {:.0f} s; follow it with `edge-agent status`".format(
        rollout_id, seen[-1]["state"] if seen else "pending", timeout_s)
    return _outcome(rollout_id, seen, 1, late, as_json)


def _outcome(rollout_id: str, seen: List[Dict[str, Any]], status: int, message: Optional[str], as_json: bool) -> int:
    if as_json:
        print_document({"rollout_id": rollout_id, "exit_status": status,
                        "state": seen[-1]["state"] if seen else "pending", "message": message,
                        "report": seen[-1] if seen else None, "states": [r["state"] for r in seen]})
    elif message:
        print(message)
    return status


def describe(report: Dict[str, Any]) -> str:
    """One line per report, for people."""
    parts = ["{}: {}".format(report.get("rollout_id"), report.get("state"))]
    if report.get("progress_pct") is not None:
        parts.append("{:.0f} %".format(report["progress_pct"]))
    if report.get("detail"):
        parts.append(str(report["detail"]))
    gate = report.get("gate")
    if isinstance(gate, dict):
        agreement = gate.get("agreement") or {}
        if agreement.get("iou_agreement") is not None:
            parts.append("agreement with the serving model {} (floor {})".format(
                agreement["iou_agreement"], agreement.get("floor")))
        if gate.get("precision_served"):
            parts.append("precision {}".format(gate["precision_served"]))
    build = report.get("build")
    if isinstance(build, dict) and build.get("fps_before") is not None:
        parts.append("fps {} before, {} during the build".format(build["fps_before"], build.get("fps_during_build")))
    if report.get("reason"):
        parts.append("reason: {}".format(report["reason"]))
    if report.get("state") == "active":
        parts.append("serving {}".format(report.get("model_sha256")))
    return " | ".join(parts)
