"""The health checks the telemetry thread runs about once a second; each reports to the agent's
`Health` under its own key and clears it when the condition is over (edge_agent/health.py)."""

import time
from typing import Optional

from edge_agent.health import Health
from edge_agent.metrics import Registry
from edge_agent.telemetry.outbox import Outbox

CHECK_INTERVAL_S = 1.0
STALL_S = 10.0  # frames captured but none processed for this long: the frame loop is stuck
OUTBOX_FILLING = 0.5  # share of mqtt.outbox_max_mb
BACKLOG_FILLING = 0.5  # share of mqtt.event_queue_size


class TelemetryChecks:
    def __init__(self, registry: Registry, health: Health, event_queue_size: int) -> None:
        self.registry = registry
        self.health = health
        self.event_queue_size = event_queue_size
        self._processed = -1
        self._captured_at_progress = 0
        self._progress_at = time.monotonic()
        self._next = 0.0

    def run(self, outbox: Outbox, backlog: int, link_up: bool, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        if now < self._next:
            return
        self._next = now + CHECK_INTERVAL_S
        self._pipeline(now)
        # Reasons change only when the situation does (a step, not every count): each change
        # republishes the retained status.
        fill = _step(outbox.size_bytes / outbox.max_bytes if outbox.max_bytes else 0.0, OUTBOX_FILLING)
        self.health.report("outbox", None if fill is None else "over {:.0f} % full, messages unsent{}".format(
            fill * 100, "" if link_up else " (broker unreachable)"))
        full = _step(backlog / self.event_queue_size, BACKLOG_FILLING)
        self.health.report("telemetry", None if full is None else
                           "backlog: over {:.0f} % of mqtt.event_queue_size frames wait for the outbox".format(
                               full * 100))

    def _pipeline(self, now: float) -> None:
        processed = self.registry.counter_total("frames_processed")
        captured = self.registry.counter_total("frames_captured")
        if processed != self._processed:
            self._processed, self._captured_at_progress, self._progress_at = processed, captured, now
        stalled = captured > self._captured_at_progress and now - self._progress_at >= STALL_S
        self.health.report("pipeline", None if not stalled else
                           "stalled: frames are captured but none processed for {:.0f} s or more".format(STALL_S))


def _step(share: float, first: float) -> Optional[float]:
    """The highest of first, 0.75, 0.9 that `share` reaches, or None below `first`."""
    reached = [step for step in (first, 0.75, 0.9) if share >= step]
    return reached[-1] if reached else None
