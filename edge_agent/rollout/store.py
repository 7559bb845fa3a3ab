"""What a board remembers about rollouts, across restarts.

    state_dir/deployment.json          the last report, the active model, the kept models, handled ids
    state_dir/desired-deployment.json  a request written by `edge-agent deploy` (the local desired state)
    cache_dir/models/<sha256>.onnx     downloaded models; the last `rollout.keep_models` are kept

Files are replaced atomically (temp file, fsync, rename), so a kill mid-write leaves the previous
version. The daemon serves the active model after a restart or a reload: `effective_config`.
"""

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from edge_agent.config import AgentConfig
from edge_agent.engine.cache import write_json_atomic
from edge_agent.paths import cache_dir, state_dir

log = logging.getLogger(__name__)

HANDLED_KEPT = 100  # rollout ids remembered, so a retained desired state is not applied twice
TERMINAL = ("active", "rejected", "rolled-back")


class RolloutStore:
    def __init__(self, config: AgentConfig) -> None:
        self.keep = config.rollout.keep_models
        self.state_path = state_dir(config) / "deployment.json"
        self.desired_path = state_dir(config) / "desired-deployment.json"
        self.models_dir = cache_dir(config) / "models"
        self.work_dir = cache_dir(config) / "rollout"
        self.data = self._read()

    def refresh(self) -> None:
        self.data = self._read()

    def _read(self) -> Dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("rollout state %s is unreadable (%s); starting from the configured model", self.state_path,
                        exc)
        return {}

    def save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.state_path, self.data)

    # ---- reports -----------------------------------------------------------------------------
    @property
    def report(self) -> Optional[Dict[str, Any]]:
        return self.data.get("report")

    def record_report(self, report: Dict[str, Any]) -> None:
        self.data["report"] = report
        if report.get("state") in TERMINAL and report.get("rollout_id"):
            handled = self.data.setdefault("handled", {})
            handled[report["rollout_id"]] = report["state"]
            for key in list(handled)[:-HANDLED_KEPT]:
                del handled[key]
        self.save()

    def note_build_peak(self, peak_bytes: Optional[int]) -> None:
        """Keep the largest build child's peak RSS seen: the next rollout's admission starts from it."""
        if peak_bytes and peak_bytes > self.data.get("build_peak_bytes", 0):
            self.data["build_peak_bytes"] = int(peak_bytes)
            self.save()

    def handled(self, rollout_id: str) -> Optional[str]:
        return self.data.get("handled", {}).get(rollout_id)

    # ---- models ------------------------------------------------------------------------------
    @property
    def active(self) -> Optional[Dict[str, Any]]:
        return self.data.get("active")

    @property
    def kept(self) -> List[Dict[str, Any]]:
        """Earlier active models, newest first (rollback targets)."""
        return list(self.data.get("kept", []))

    def activate(self, entry: Dict[str, Any], previous: Dict[str, Any]) -> None:
        """`entry` now serves; `previous` (what served before) becomes the first rollback target."""
        kept = [previous] + [k for k in self.kept if k.get("sha256") not in (entry["sha256"], previous.get("sha256"))]
        self.data["active"] = dict(entry, activated_at_ms=int(time.time() * 1000))
        self.data["kept"] = kept[:self.keep - 1]
        self.save()
        self._prune()

    def roll_back(self) -> Optional[Dict[str, Any]]:
        """Make the newest kept model the active one; returns it (None: nothing to roll back to)."""
        kept = self.kept
        if not kept:
            return None
        target, rest = kept[0], kept[1:]
        current = self.active
        now_ms = int(time.time() * 1000)
        self.data["active"] = None if target.get("configured") else dict(target, activated_at_ms=now_ms)
        self.data["kept"] = (rest if current is None else [current] + rest)[:self.keep - 1]
        self.save()
        return target

    def _prune(self) -> None:
        keep = {e.get("sha256") for e in [self.active or {}] + self.kept}
        if not self.models_dir.exists():
            return
        for path in self.models_dir.glob("*.onnx"):
            if path.stem not in keep:
                try:
                    path.unlink()
                    log.info("pruned old model %s (rollout.keep_models = %d)", path.name, self.keep)
                except OSError as exc:
                    log.warning("could not prune %s: %s", path, exc)


def effective_config(config: AgentConfig) -> AgentConfig:
    """`config` with the active rollout's model and patch applied (unchanged when none is active or its
    file is gone): what the daemon serves after a restart or a reload."""
    from edge_agent.rollout.request import DeploymentRequest, RequestError

    store = RolloutStore(config)
    active = store.active
    if not config.rollout.enabled or not active:
        return config
    path = Path(active.get("path", ""))
    if not path.is_file():
        log.warning("the active rollout's model %s is missing; serving the configured model %s", path,
                    config.model.path)
        return config
    try:
        request = DeploymentRequest.model_validate(active["request"])
        return request.candidate_config(config, path)
    except (KeyError, ValueError, RequestError) as exc:
        log.warning("the active rollout cannot be applied to this config (%s); serving the configured model", exc)
        return config
