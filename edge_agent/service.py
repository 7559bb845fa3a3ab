"""Daemon lifecycle for `edge-agent run` (what systemd starts).

One ordered sequence with its mirror-image teardown:

    telemetry start (never waits for the broker) -> prepare model (engine build: STATUS and
    EXTEND_TIMEOUT_USEC) -> open backend + warm-up -> sources -> frame loop thread -> READY=1
    ... serve: SIGHUP reloads, SIGTERM/SIGINT stop ...
    STOPPING=1 -> frame loop drains its batch -> sources stop -> backend closes
    -> telemetry publishes "stopped" and flushes its outbox within a bound -> exit 0

The frame loop runs in its own thread so the main thread stays free for signals and a stuck
loop can still be reported and stopped. A separate watchdog thread sends WATCHDOG=1 only while
work progresses (see `Watchdog`). Exit codes: 0 after a requested stop or when every source has
finished; 1 when the frame loop crashed or would not stop, so `Restart=on-failure` restarts it.
"""

import contextlib
import faulthandler
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

from edge_agent.agent import running_pipeline
from edge_agent.backends.base import Backend
from edge_agent.config import AgentConfig
from edge_agent.config_loader import load_config
from edge_agent.errors import EdgeAgentError, StopRequested
from edge_agent.local_sinks import open_local_sinks
from edge_agent.metrics import Registry
from edge_agent.native_memory import release_freed_memory
from edge_agent.pipeline import Pipeline
from edge_agent.rollout.controller import Rollout
from edge_agent.rollout.session import effective_config, rollout_session
from edge_agent.sdnotify import Notifier
from edge_agent.service_reload import ModelStamp, check_telemetry_settings, dry_run, model_stamp, same_backend
from edge_agent.service_watchdog import Watchdog
from edge_agent.signal_event import SignalSafeEvent
from edge_agent.supervisor import SUPERVISOR, TaskStatus
from edge_agent.telemetry import open_telemetry, pipeline_facts
from edge_agent.telemetry.prometheus import open_prometheus
from edge_agent.view.state import ViewState, pipeline_health

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 10.0  # the frame loop finishes its in-flight batch within this on stop/reload
FLUSH_TIMEOUT_S = 10.0  # the telemetry outbox gets this long to drain on stop (TimeoutStopSec is 30)
BUILD_EXTEND_S = 120.0  # each engine-build progress report buys this much more start time


class FrameLoop:
    """Runs `pipeline.run` in a named thread; remembers how it ended."""

    def __init__(self, pipeline: Pipeline, wake: SignalSafeEvent) -> None:
        self.pipeline = pipeline
        self.stop = threading.Event()
        self.error: Optional[BaseException] = None
        self._wake = wake
        self._thread = threading.Thread(target=self._run, name="frame-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.pipeline.run(self.stop)
        except Exception as exc:  # reported by the main thread, which exits non-zero
            log.exception("frame loop crashed")
            self.error = exc
        finally:
            self._wake.set()

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def drain(self, timeout_s: float) -> bool:
        """Let the in-flight batch finish, then stop; False when the loop did not stop in time."""
        self.stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class Daemon:
    def __init__(self, config: AgentConfig, config_path: Optional[Union[str, Path]] = None,
                 notifier: Optional[Notifier] = None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier if notifier is not None else Notifier.from_environment()
        self.registry = Registry()
        self.supervisor = SUPERVISOR
        self.telemetry: Any = None
        self.exporter: Any = None  # Prometheus /metrics, when prometheus.listen is set
        # set by signal handlers, so not threading.Events (edge_agent/signal_event.py says why)
        self.stop_requested = SignalSafeEvent()
        self.reload_requested = SignalSafeEvent()
        self.wake = SignalSafeEvent()
        self.watchdog = Watchdog(self)
        self.pipeline: Optional[Pipeline] = None
        self.rollout: Optional[Rollout] = None
        self.phase = "starting"
        self.phase_text = "starting"
        self.progress_at = time.monotonic()
        self._ready_sent = False
        self.reload_refusals = 0
        self.last_reload_error = ""
        self._next_backend: Optional[Backend] = None  # opened by a reload's dry run for the next _serve
        self._serving: Optional[AgentConfig] = None  # what the running pipeline's backend was loaded for
        self._serving_stamp: Optional[ModelStamp] = None  # its model file as it was then
        self._keep_backend = False  # a reload that leaves the model alone: the next _serve reuses it
        self._kept: Optional[Backend] = None  # the backend kept for that

    # ---- signals (handlers only set flags; the main thread acts) ----
    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.stop_requested.set()
        self.wake.set()

    def _on_reload_signal(self, _signum: int, _frame: Any) -> None:
        log.info("received SIGHUP, reloading the config")
        self.reload_requested.set()
        self.wake.set()

    def run(self) -> int:
        handlers = {signal.SIGINT: self._on_stop_signal, signal.SIGTERM: self._on_stop_signal,
                    signal.SIGHUP: self._on_reload_signal}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps every thread's stack
        self.watchdog.start()
        self.supervisor.add_listener(self._on_task_change)
        code = 1
        try:
            self.exporter = open_prometheus(self.config, self.registry)
            self.telemetry = open_telemetry(self.config, self.registry)
            while True:
                outcome = self._serve(self.config)
                release_freed_memory()  # the old pipeline's backend is closed: give its pages back
                if outcome != "reload":
                    code = 0 if outcome in ("stopped", "finished") else 1
                    break
            return code
        except StopRequested as exc:
            log.info("%s", exc)
            code = exc.exit_code
            return code
        except EdgeAgentError as exc:  # logged here so that the exit line below tells the real status
            log.error("%s", exc)
            code = exc.exit_code
            return code
        finally:
            self.set_phase("stopping", "stopping")
            self.notifier.stopping("stopping: flushing telemetry")
            if self.telemetry is not None:
                self.telemetry.close(FLUSH_TIMEOUT_S)
                self.telemetry = None
            if self.exporter is not None:
                self.exporter.close()
            self.watchdog.stop()
            self.supervisor.remove_listener(self._on_task_change)
            faulthandler.unregister(signal.SIGUSR1)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("exiting with status %d", code)
            self.notifier.close()

    def _serve(self, config: AgentConfig) -> str:
        """Start the pipeline for `config`, run until stop / reload / end; returns which happened."""
        serving = effective_config(config)  # a model rolled out earlier keeps serving after a restart
        self.set_phase("loading", "loading model {}".format(serving.model.path.name))
        backend, self._next_backend = self._next_backend, None
        with contextlib.ExitStack() as stack:
            # evidence, jsonl and the live view: closed after the pipeline stopped (the ExitStack's order)
            local = stack.enter_context(contextlib.closing(open_local_sinks(serving, self.registry, ViewState(
                self.registry, serving.device.id, lambda: pipeline_health(self.pipeline, self.phase)))))
            sinks = local.ordered(self.telemetry)
            reused, self._kept = backend is not None and backend is self._kept, None
            stamp = self._serving_stamp if reused else model_stamp(serving)  # the file the backend came from
            pipeline = stack.enter_context(running_pipeline(serving, self.registry, sinks, self._on_build_progress,
                                                            backend=backend, release=self._release_backend))
            self._serving, self._serving_stamp = serving, stamp
            if self.stop_requested.is_set():
                return "stopped"
            self.pipeline = pipeline
            if self.telemetry is not None:
                self.telemetry.update_facts(pipeline_facts(serving, pipeline))
            loop = FrameLoop(pipeline, self.wake)
            self.rollout = stack.enter_context(rollout_session(config, serving, pipeline, self.telemetry))
            loop.start()
            self.set_phase("running", "running")
            text = "running: {} source(s), {} {}".format(len(pipeline.runners), pipeline.backend.name,
                                                          pipeline.backend.model.precision)
            log.info("%s", text)
            if self._ready_sent:
                self.notifier.send(READY=1, STATUS=text)
            else:
                self.notifier.ready(text)
                self._ready_sent = True
            outcome = self._supervise(loop)
            if outcome == "stopped":
                self.notifier.stopping("stopping: draining in-flight frames")
            elif outcome == "reload":
                self.notifier.reloading("reloading: draining in-flight frames")
            if not loop.drain(DRAIN_TIMEOUT_S):
                log.error("the frame loop did not stop within %.0f s (stuck in a stage); leaving without "
                          "closing the backend it still uses", DRAIN_TIMEOUT_S)
                stack.pop_all()  # abandon the teardown: the process exits and the OS reclaims all
                return "stuck"
            self.pipeline = None
            log.info("frame loop stopped after %d frames", pipeline.frames)
        self.rollout = None
        return outcome

    def _supervise(self, loop: FrameLoop) -> str:
        while True:
            self.wake.wait(1.0)
            self.wake.clear()
            if self.stop_requested.is_set():
                return "stopped"
            if loop.finished:
                if loop.error is not None:
                    if self.rollout is not None and self.rollout.roll_back_after_crash(loop.error):
                        log.warning("the new model crashed the frame loop within its probation: restarting the "
                                    "pipeline with the previous model")
                        return "reload"
                    return "crashed"
                log.info("every source has finished; nothing left to inspect")
                return "finished"
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                if self._apply_reload():
                    return "reload"

    def _apply_reload(self) -> bool:
        """Load the config file again and try it out in full (service_reload.dry_run) while the
        running pipeline goes on; True when the new config is ready to replace the old one."""
        if self.config_path is None:
            log.warning("reload ignored: the agent was started without a config file")
            return False
        try:
            new = load_config(self.config_path)
        except EdgeAgentError as exc:
            self._refuse_reload("config invalid", exc)
            return False
        if new == self.config:
            log.info("reload: %s is unchanged; nothing to do", self.config_path)
            return False
        serving = effective_config(new)
        pipeline = self.pipeline
        if (self._serving is not None and pipeline is not None and pipeline.swapped_at_frame < 0 and
                same_backend(self._serving, self._serving_stamp, serving)):
            try:
                check_telemetry_settings(new)
            except EdgeAgentError as exc:
                self._refuse_reload("it cannot be used", exc)
                return False
            log.info("reload: the model and its backend settings are unchanged; the new pipeline keeps the loaded "
                     "model")
            self._keep_backend = True
            return self._switch_to(new, None)
        log.info("reload: trying out the new config from %s before stopping the running one", self.config_path)
        phase, text = self.phase, self.phase_text
        try:
            backend = dry_run(new, serving, self._on_build_progress)
        except StopRequested:
            return False  # the stop request is acted on by _supervise
        except EdgeAgentError as exc:
            self._refuse_reload("it cannot be used", exc)
            return False
        finally:
            self.set_phase(phase, text)
        return self._switch_to(new, backend)

    def _switch_to(self, new: AgentConfig, backend: Optional[Backend]) -> bool:
        """The reload's config is accepted: the next _serve runs it (on `backend`, if opened)."""
        old, self.config = self.config, new
        self._next_backend = backend
        self.registry.health.clear("reload")
        if self.telemetry is not None and (new.mqtt != old.mqtt or new.device != old.device or
                                           new.paths != old.paths):
            log.info("reload: the mqtt/device/paths settings changed; reconnecting telemetry")
            self.telemetry.close(FLUSH_TIMEOUT_S)
            self.telemetry = None
        if self.telemetry is None:
            self.telemetry = self._open_telemetry(new, old)
        log.info("reload: applying the new config from %s (the MQTT session is kept when its settings did "
                 "not change)", self.config_path)
        return True

    def _release_backend(self, backend: Backend) -> None:
        """A pipeline ended: close its backend, or keep it for the next one when a reload asked so
        and it is still open (a rollout that swapped models in between closed it)."""
        keep, self._keep_backend = self._keep_backend, False
        if keep and backend.input_buffer is not None:
            self._next_backend = self._kept = backend
            return
        backend.close()

    def _refuse_reload(self, why: str, exc: Exception) -> None:
        log.error("reload refused (%s), still running the previous config: %s", why, exc)
        self.notifier.status("reload refused ({}, see journal); running the previous config".format(why))
        self.reload_refusals += 1
        release_freed_memory()  # the refused config's backend, if the dry run opened one, is closed
        self.last_reload_error = "{}: {}".format(why, exc)
        # published in the retained status (degraded, with the reason) until a reload succeeds
        self.registry.health.report("reload", "refused, running the previous config: {}".format(
            str(exc).splitlines()[0][:300]))

    def _on_task_change(self, task: TaskStatus) -> None:
        """Supervised threads' failures go into the agent's health (the MQTT status says degraded
        with the reason) while they recover; the watchdog acts only when recovery failed."""
        problem = task.state in ("restarting", "failed", "stuck")
        self.registry.health.report("thread " + task.name, "{} ({} failures): {}".format(
            task.state, task.failures, task.reason) if problem else None)

    def _open_telemetry(self, new: AgentConfig, old: AgentConfig) -> Any:
        """The new telemetry; when it cannot open after all (the dry run checked its files), the
        old settings' telemetry again, so that a reload never leaves the agent without one."""
        try:
            return open_telemetry(new, self.registry)
        except EdgeAgentError as exc:
            log.error("reload: telemetry with the new settings failed (%s); keeping the previous broker settings",
                      exc)
            return open_telemetry(old, self.registry)

    def _on_build_progress(self, text: str, fraction: Optional[float]) -> None:
        """Engine preparation reports every few seconds: tell systemd it may take longer. A stop
        request ends the build here (its child process is terminated): SIGTERM is not held back
        for the minutes a TensorRT build takes on a board."""
        if self.stop_requested.is_set():
            raise StopRequested("stop requested during '{}': the build was interrupted".format(text))
        status = text if fraction is None else "{} {:.0f} %".format(text, fraction * 100)
        self.set_phase("building", status)
        self.notifier.extend_timeout(BUILD_EXTEND_S, status)

    def set_phase(self, phase: str, text: str) -> None:
        self.phase, self.phase_text = phase, text
        self.progress_at = time.monotonic()


def run_daemon(config: AgentConfig, config_path: Optional[Union[str, Path]] = None) -> int:
    return Daemon(config, config_path).run()
