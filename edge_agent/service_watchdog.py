"""The service's watchdog and STATUS= line: decides whether the agent is making progress.

WATCHDOG=1 is sent only when both hold:

- the frame loop iterated recently. The loop's heartbeat moves on every iteration, including idle
  ones where it waited up to 0.1 s for a frame: a camera that is down (its source thread retrying
  with backoff) leaves the loop idling, which is legitimate, so the service is not restarted in a
  loop while a cable is unplugged; a loop stuck inside a stage (inference, a sink) stops the
  heartbeat, pings stop, and systemd restarts the service after WatchdogSec. While the model is
  loading or an engine is building, progress reports and phase changes count instead.
- telemetry's publisher says it is healthy (`Telemetry.health()`); a broker that is merely
  unreachable is not a failure (the outbox keeps the messages), a dead publisher thread is.
- no supervised background thread (edge_agent/supervisor.py) has exhausted its in-process
  recovery: a thread that crashed is restarted with backoff and only reported while it recovers;
  pings stop when it keeps failing (or is stuck), so systemd restarts the whole service.

The STATUS= line (shown by `systemctl status edge-agent`) says the same in words.
"""

import logging
import threading
import time
from typing import Any, List, Tuple

import psutil

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0  # how often STATUS= is refreshed when no watchdog is configured
RUN_STALL_S = 15.0  # without a systemd watchdog, a loop quiet this long is reported stuck
LOAD_STALL_S = 300.0  # model loading without any progress report for this long counts as stuck


class Watchdog:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        notifier = daemon.notifier
        self.ping_interval_s = notifier.watchdog_interval_s
        self.tick_s = min(self.ping_interval_s, STATUS_INTERVAL_S) if self.ping_interval_s else STATUS_INTERVAL_S
        # the loop must have iterated within half the systemd watchdog period to count as alive
        self.run_stall_s = self.ping_interval_s if self.ping_interval_s else RUN_STALL_S
        self.pings = 0
        self.withheld_reason = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._frames = 0
        self._frames_at = time.monotonic()
        self._status_at = 0.0
        self._last_status = ""
        self._fps = 0.0
        self._over_budget = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:  # the watchdog thread must survive a bad read; no ping this round
                log.exception("watchdog check failed")

    def tick(self) -> None:
        alive, text = self.assess()
        notifier = self.daemon.notifier
        if alive:
            if self.ping_interval_s:
                notifier.watchdog()
                self.pings += 1
            if self.withheld_reason:
                log.warning("progress again after: %s", self.withheld_reason)
            self.withheld_reason = ""
        elif text != self.withheld_reason:
            log.error("%s", text)
            self.withheld_reason = text
        now = time.monotonic()
        if text != self._last_status or now - self._status_at >= STATUS_INTERVAL_S:
            notifier.status(text)
            self._last_status, self._status_at = text, now

    def assess(self) -> Tuple[bool, str]:
        """(progressing, a one-line status for people)."""
        daemon = self.daemon
        now = time.monotonic()
        pipeline = daemon.pipeline
        if daemon.phase == "running" and pipeline is not None:
            quiet = now - pipeline.heartbeat
            if quiet > self.run_stall_s:
                return False, ("frame loop stuck for {:.0f} s (no iteration); watchdog withheld so systemd "
                               "restarts the service".format(quiet))
            text = self._running_text(pipeline, now)
        else:
            quiet = now - daemon.progress_at
            if quiet > LOAD_STALL_S:
                return False, "{}: no progress for {:.0f} s".format(daemon.phase_text, quiet)
            text = daemon.phase_text
        text += self._memory_text(daemon.config.memory.limit_mb)
        for task in daemon.supervisor.problems():
            what = "{} {} ({} failures): {}".format(task.name, task.state, task.failures, task.reason)
            if task.recovery_failed:
                return False, "{}; {}; watchdog withheld so systemd restarts the service".format(text, what)
            text = "{}; {}".format(text, what)
        telemetry = daemon.telemetry
        if telemetry is not None:
            ok, telemetry_text = telemetry.health()
            if not ok:
                return False, "{}; telemetry stuck: {}".format(text, telemetry_text)
            text = "{}; {}".format(text, telemetry_text)
        return True, text

    def _memory_text(self, limit_mb: int) -> str:
        """The memory budget gates admission at load time; here the running process is compared with
        it: above it, STATUS says so and the log warns once per crossing (not a watchdog failure:
        systemd's MemoryMax is the hard stop)."""
        rss_mb = psutil.Process().memory_info().rss / 2**20
        over = rss_mb > limit_mb
        if over != self._over_budget:
            if over:
                log.warning("resident memory %.0f MB is above memory.limit_mb %d MB: the admitted plan did not "
                            "cover everything; raise memory.limit_mb or look for growth (metrics process_rss_mb)",
                            rss_mb, limit_mb)
            else:
                log.info("resident memory %.0f MB is within memory.limit_mb %d MB again", rss_mb, limit_mb)
            self._over_budget = over
        return "; RSS {:.0f} MB over memory.limit_mb {} MB".format(rss_mb, limit_mb) if over else ""

    def _running_text(self, pipeline: Any, now: float) -> str:
        frames = pipeline.registry.counter_total("frames_processed")
        if now - self._frames_at >= 1.0:
            self._fps = (frames - self._frames) / (now - self._frames_at) if frames >= self._frames else 0.0
            self._frames, self._frames_at = frames, now
        parts = ["running {:.1f} fps, {} frames, {} defects".format(
            self._fps, frames, pipeline.registry.counter_total("defects"))]
        waiting: List[str] = []
        for runner in pipeline.runners:
            if runner.state != "running":
                waiting.append("source {} {}{}".format(runner.name, runner.state,
                                                       ": " + runner.reason if runner.reason else ""))
        return "; ".join(parts + waiting)

