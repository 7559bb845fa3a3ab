"""The rollout thread: desired state in, a new model serving (or the old one kept) out.

    received -> downloading -> verifying -> preparing -> gating -> active | rejected
    active --(cmd/rollback, or within rollout.rollback_window_s a crash of the frame loop or a
              finding of the sanity watch on the new model's outputs)--> rolled-back

Requests come from the retained `…/desired/deployment` topic (through telemetry) or from the file
`edge-agent deploy` writes; commands from `…/cmd/rollback`. All work happens on this one thread,
the build in a low-priority child process; the frame loop only ever sees `Pipeline.swap_backend`.
Each state goes to `deployment.json` and, retained, to `…/deployment`. The thread is supervised
(edge_agent.supervisor): a failure outside a rollout's own steps (those end `rejected`) is logged,
counted and shown in the agent's health, and the thread restarted with its queue intact.
"""

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from edge_agent.agent import load_backend
from edge_agent.backends.base import PreparedModel
from edge_agent.config import AgentConfig
from edge_agent.engine.cache import file_sha256
from edge_agent.engine.isolation import run_isolated
from edge_agent.errors import EdgeAgentError
from edge_agent.pipeline import Pipeline
from edge_agent.rollout.admission import AdmissionRefused, admit
from edge_agent.rollout.download import fetch
from edge_agent.rollout.request import DeploymentRequest, RequestError, parse_request, request_id_of
from edge_agent.rollout.signature import verify_signature
from edge_agent.rollout.store import RolloutStore
from edge_agent.rollout.watch import BuildGovernor, RecentFrames, save_frames
from edge_agent.sanity import SanityWatch
from edge_agent.supervisor import SUPERVISOR, Task

log = logging.getLogger(__name__)

POLL_S = 1.0
REPORT_EVERY_S = 1.0
# The sanity watch's findings (edge_agent.sanity) that roll a model on probation back: NaN/Inf,
# scores outside [0, 1], defects over most of the frame. Not "quiet" (nothing found for a long
# while after some defects): a clean stretch of production says nothing against the model.
ROLLBACK_FINDINGS = ("nan", "score_range", "coverage")


class Rollout:
    def __init__(self, base_config: AgentConfig, serving_config: AgentConfig, pipeline: Pipeline,
                 telemetry: Any = None) -> None:
        self.base = base_config  # the file's config: every request's patch applies to it
        self.serving = serving_config
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.settings = base_config.rollout
        self.store = RolloutStore(base_config)
        self.recent = RecentFrames()
        self._queue: Any = queue.Queue(maxsize=16)  # of (kind, item) tuples
        self._stop = threading.Event()
        self._task: Optional[Task] = None
        self._desired_mtime = 0.0
        self._watch: Optional[SanityWatch] = None  # the sanity watch of the model on probation
        self._watch_until = 0.0
        self._last_report = 0.0
        self._governor: Optional[BuildGovernor] = None
        self._serving_sha = file_sha256(serving_config.model.path)

    # ---- lifecycle (the daemon's thread) ----------------------------------------------------
    def start(self) -> "Rollout":
        self.pipeline.sinks.append(self.recent)
        if self.telemetry is not None:
            self.telemetry.set_desired_handler("deployment", lambda payload: self._enqueue("deploy", payload))
            self.telemetry.command_handlers["rollback"] = self._on_rollback_command
            if self.store.report is not None:  # the board's last known state, retained again
                self.telemetry.publish_retained("deployment", self.store.report)
        self._task = SUPERVISOR.spawn("rollout", self._run)
        return self

    def close(self) -> None:
        self._stop.set()
        governor = self._governor
        if governor is not None:  # a build is running: end it, the desired state is retried at the next start
            governor.terminate()
        if self._task is not None:
            self._task.stop()
            self._task.join(30)
        if self.telemetry is not None:
            self.telemetry.set_desired_handler("deployment", None)
            self.telemetry.command_handlers.pop("rollback", None)
        if self.recent in self.pipeline.sinks:
            self.pipeline.sinks.remove(self.recent)

    def within_probation(self) -> bool:
        return time.monotonic() < self._watch_until

    def roll_back_after_crash(self, error: BaseException) -> bool:
        """The frame loop died: within probation the previous model is made active on disk (the daemon
        then restarts its pipeline, which serves it). True when it did so."""
        if not self.within_probation() or not self.store.kept:
            return False
        self._record_rollback("the frame loop crashed with the new model: {}".format(error), live=False)
        return True

    # ---- inputs (any thread: only enqueue) ------------------------------------------------------
    def _enqueue(self, kind: str, item: Any) -> bool:
        try:
            self._queue.put_nowait((kind, item))
            return True
        except queue.Full:
            log.warning("rollout: request queue full; %s ignored", kind)
            return False

    def _on_rollback_command(self, request: Dict[str, Any]) -> Tuple[bool, str]:
        if not self.store.kept:
            return False, "nothing to roll back to: no previous model is kept"
        reason = request.get("reason") if isinstance(request.get("reason"), str) else "requested over MQTT"
        if not self._enqueue("rollback", reason[:200]):
            return False, "rollout busy; try again"
        return True, "rolling back to {}".format(self.store.kept[0].get("sha256", "?")[:12])

    # ---- the rollout thread -----------------------------------------------------------------
    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                kind, item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                kind, item = "", None
            if kind == "deploy":
                self._deploy(item, "mqtt")
            elif kind == "rollback":
                self._rollback(item)
            self._poll_desired_file()
            self._check_probation()

    def _poll_desired_file(self) -> None:
        path = self.store.desired_path
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if mtime != self._desired_mtime:
            self._desired_mtime = mtime
            self._deploy(path.read_bytes(), "local")

    def _check_probation(self) -> None:
        if not self._watch_until:
            return
        if not self.within_probation():
            self._watch, self._watch_until = None, 0.0
            log.info("rollout: probation over; the new model stays")
            return
        watch = self._watch
        findings = [w for w in watch.warnings() if w.kind in ROLLBACK_FINDINGS] if watch is not None else []
        if findings:
            self._rollback("automatic: sanity {}: {}".format(findings[0].kind, findings[0].text))

    # ---- deploy -------------------------------------------------------------------------------
    def _deploy(self, payload: bytes, origin: str) -> None:
        try:
            request = parse_request(payload)
        except RequestError as exc:
            rollout_id = request_id_of(payload)
            if rollout_id is None or not self.store.handled(rollout_id):
                self._report(rollout_id or "invalid", "rejected", reason=str(exc), origin=origin)
            return
        if self.store.handled(request.rollout_id):
            log.debug("rollout %s already handled; ignoring the replayed desired state", request.rollout_id)
            return
        if not self.settings.enabled:
            self._report(request.rollout_id, "rejected", request, reason="rollouts are off on this board "
                         "(rollout.enabled: false)", origin=origin)
            return
        log.info("rollout %s: %s (%s) from %s", request.rollout_id, request.name or request.sha256[:12],
                 request.url, origin)
        self._report(request.rollout_id, "received", request, origin=origin)
        try:
            self._carry_out(request, origin)
        except EdgeAgentError as exc:
            if self._stop.is_set():
                log.warning("rollout %s interrupted by the shutdown (%s); it resumes at the next start",
                            request.rollout_id, exc)
                return
            log.warning("rollout %s rejected: %s", request.rollout_id, exc)
            figures = getattr(exc, "figures", None)
            self._report(request.rollout_id, "rejected", request, reason=str(exc), origin=origin, **(figures or {}))
        except Exception as exc:  # a model that breaks a library in the parent: still a clear report
            log.exception("rollout %s failed", request.rollout_id)
            self._report(request.rollout_id, "rejected", request, origin=origin,
                         reason="{}: {}".format(type(exc).__name__, exc))

    def _carry_out(self, request: DeploymentRequest, origin: str) -> None:
        rid = request.rollout_id

        def downloaded(done: int, total: int) -> None:
            self._report(rid, "downloading", request, throttle=done < total, origin=origin,
                         progress_pct=round(100.0 * done / max(total, 1), 1), bytes_done=done)

        path = fetch(request.url, request.sha256, request.size, self.store.models_dir, self.settings.download,
                     downloaded, self._stop.is_set)
        self._report(rid, "verifying", request, origin=origin)
        verify_signature(path, request.signature, self.settings.public_key_file)
        candidate = request.candidate_config(self.base, path)
        admitted = self._admit(candidate)
        frames = self.recent.collect(self.settings.gate.recent_frames, self.settings.gate.frames_timeout_s)
        frames_path = None
        if frames:
            self.store.work_dir.mkdir(parents=True, exist_ok=True)
            frames_path = self.store.work_dir / "recent-frames.npz"
            save_frames(frames, frames_path)
        governor = BuildGovernor(self.pipeline, self.settings.max_fps_drop)
        governor.measure_baseline(2.0)

        def building(text: str, fraction: Optional[float]) -> None:
            self._report(rid, "preparing", request, throttle=True, origin=origin, detail=text,
                         progress_pct=None if fraction is None else round(100.0 * fraction, 1))

        kwargs = {"config": candidate.model_dump(mode="json"), "serving": self.serving.model_dump(mode="json"),
                  "frames": str(frames_path) if frames_path else None, "nice": self.settings.build_nice,
                  "threads": self.settings.build_threads, "agreement_floor": self.settings.gate.agreement_floor}
        self._governor = governor
        try:
            result = run_isolated("edge_agent.rollout.candidate:build_and_gate", kwargs, "candidate " + rid,
                                  building, heartbeat=2.0, on_start=governor.attach, nested=True)
        finally:
            self._governor = None
            governor.close()
        self.store.note_build_peak(result.get("peak_rss_bytes"))
        admitted["build_peak_mb"] = round(result["peak_rss_bytes"] / 2**20, 1) if result.get("peak_rss_bytes") else None
        figures = {"gate": _gate_figures(result), "build": governor.figures(), "memory": admitted}
        self._report(rid, "gating", request, origin=origin, **figures)
        if not result["passed"]:
            raise _Rejected("gate failed: " + result["reason"], figures)
        built = result["build"]
        prepared = PreparedModel(Path(built["artifact"]), built["precision_served"], path, built["fingerprint"])
        previous = self._serving_entry()
        self._swap_in(candidate, prepared)
        entry = {"rollout_id": rid, "sha256": request.sha256, "path": str(path), "name": request.name,
                 "request": request.model_dump(mode="json")}
        self.store.activate(entry, previous)
        self._start_probation()
        self._report(rid, "active", request, origin=origin, precision=prepared.precision,
                     swapped_at_frame=self.pipeline.swapped_at_frame, **figures)

    def _admit(self, candidate: AgentConfig) -> Dict[str, Any]:
        """The build child's peak and the candidate's plan against what the serving model leaves."""
        try:
            return admit(self.pipeline.backend.budget, candidate, self.serving, self.store.data.get("build_peak_bytes"))
        except AdmissionRefused as exc:
            raise _Rejected(str(exc), exc.figures) from None

    # ---- swap and rollback ----------------------------------------------------------------------
    def _swap_in(self, config: AgentConfig, prepared: Optional[PreparedModel]) -> None:
        """Open the model for `config` beside the serving one and swap it in between two batches."""
        backend = load_backend(config, prepared=prepared)
        try:
            old = self.pipeline.swap_backend(backend, config)
        except (TimeoutError, RuntimeError) as exc:
            backend.close()
            raise _Rejected("swap failed, the serving model stays: {}".format(exc), {}) from None
        except BaseException:
            backend.close()
            raise
        if old is not None:
            old.close()
        self.serving = config
        self._serving_sha = file_sha256(config.model.path)
        if self.telemetry is not None:
            from edge_agent.telemetry import pipeline_facts

            self.telemetry.update_facts(dict(pipeline_facts(config, self.pipeline), model_sha256=self._serving_sha))

    def _serving_entry(self) -> Dict[str, Any]:
        active = self.store.active
        if active is not None:
            return dict(active)
        path = self.serving.model.path
        return {"configured": True, "sha256": self._serving_sha, "path": str(path), "name": path.name}

    def _start_probation(self) -> None:
        """Watch the model just swapped in: the pipeline made a fresh sanity watch for it (None
        when sanity.enabled is false: then only a crash of the frame loop rolls back)."""
        if self.settings.rollback_window_s <= 0:
            return
        self._watch = self.pipeline.sanity
        self._watch_until = time.monotonic() + self.settings.rollback_window_s

    def _rollback(self, reason: str) -> None:
        target = self._record_rollback(reason, live=True)
        if target is None:
            log.warning("rollout: rollback requested (%s) but no previous model is kept", reason)

    def _record_rollback(self, reason: str, live: bool) -> Optional[Dict[str, Any]]:
        current = self.store.active or {}
        kept = self.store.kept
        if not kept:
            return None
        target = kept[0]
        config = self._config_of(target)
        if live:
            self._watch, self._watch_until = None, 0.0
            try:
                self._swap_in(config, None)
            except EdgeAgentError as exc:
                log.error("rollout: rollback to %s failed, the current model keeps serving: %s",
                          target.get("sha256"), exc)
                return None
        self.store.roll_back()
        log.warning("rollout %s rolled back to %s: %s", current.get("rollout_id"), target.get("sha256", "?")[:12],
                    reason)
        self._report(current.get("rollout_id") or "rollback", "rolled-back", reason=reason,
                     model_sha256=current.get("sha256"), rolled_back_to=target.get("sha256"))
        return target

    def _config_of(self, entry: Dict[str, Any]) -> AgentConfig:
        if entry.get("configured") or not entry.get("request"):
            return self.base
        request = DeploymentRequest.model_validate(entry["request"])
        return request.candidate_config(self.base, Path(entry["path"]))

    # ---- reports --------------------------------------------------------------------------------
    def _report(self, rollout_id: str, state: str, request: Optional[DeploymentRequest] = None,
                throttle: bool = False, **fields: Any) -> None:
        now = time.monotonic()
        if throttle and now - self._last_report < REPORT_EVERY_S:
            return
        self._last_report = now
        report: Dict[str, Any] = {"rollout_id": rollout_id, "state": state, "device": self.base.device.id,
                                  "ts": int(time.time() * 1000)}
        if request is not None:
            report.update(model_sha256=request.sha256, model_name=request.name, model_size=request.size)
        report.update({k: v for k, v in fields.items() if v is not None})
        report["serving_sha256"] = self._serving_sha
        report = {k: v for k, v in report.items() if v is not None}
        self.store.record_report(report)
        if self.telemetry is not None:
            self.telemetry.publish_retained("deployment", report)


class _Rejected(EdgeAgentError):
    def __init__(self, text: str, figures: Dict[str, Any]) -> None:
        super().__init__(text)
        self.figures = figures


def _gate_figures(result: Dict[str, Any]) -> Dict[str, Any]:
    build = result.get("build", {})
    return {"passed": result.get("passed"), "reason": result.get("reason"),
            "precision_served": build.get("precision_served"), "reference": build.get("gate"),
            "fallbacks": build.get("fallbacks"), "sanity": result.get("sanity"),
            "agreement": result.get("agreement")}
