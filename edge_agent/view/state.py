"""The numbers the live view shows: fps and latency over the last seconds, totals, and health with
its reasons (the caller's, e.g. the daemon's phase and source states, plus the sanity watch)."""

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from edge_agent.metrics import Registry

WINDOW_S = 2.0  # fps and latency percentiles cover at least this long, so the numbers do not flicker

Health = Callable[[], Tuple[bool, str, List[str]]]  # (healthy, one word or phrase, reasons)


class ViewState:
    def __init__(self, registry: Registry, device: str, health: Optional[Health] = None) -> None:
        self.registry = registry
        self.device = device
        self.health = health or (lambda: (True, "running", []))
        self._lock = threading.Lock()
        self._at = time.monotonic()
        self._frames = registry.counter_total("frames_processed")
        self._cursor = 0
        self._shown: Dict[str, Any] = {"fps": None, "latency_ms_p50": None, "latency_ms_p99": None}

    def __call__(self) -> Dict[str, Any]:
        with self._lock:  # several browser tabs poll at once
            now = time.monotonic()
            frames = self.registry.counter_total("frames_processed")
            if now - self._at >= WINDOW_S or self._shown["fps"] is None:
                stats, self._cursor = self.registry.histogram("latency_ms").stats_since(self._cursor)
                elapsed = max(now - self._at, 1e-6)
                self._shown = {"fps": round((frames - self._frames) / elapsed, 2),
                               "latency_ms_p50": round(stats.p50, 2) if stats.count else None,
                               "latency_ms_p99": round(stats.p99, 2) if stats.count else None}
                self._at, self._frames = now, frames
            healthy, text, reasons = self.health()
            return dict(self._shown, device=self.device, frames=frames,
                        defects=self.registry.counter_total("defects"), healthy=healthy, health=text,
                        reasons=list(reasons))


def pipeline_health(pipeline: Any, phase: str) -> Tuple[bool, str, List[str]]:
    """Health from the agent's registry (edge_agent.health: sources, the sanity watch, telemetry's
    checks); `phase` is the caller's word for its state (running, loading, ...)."""
    if pipeline is None:
        return True, phase if phase != "running" else "starting", []
    snapshot = pipeline.registry.health.snapshot()
    if snapshot.reasons:
        return True, "{}, {}".format(phase, snapshot.state), list(snapshot.reasons)
    return True, phase, []
