"""Live status for people: a one-line display refreshed in place on a terminal, periodic log
lines otherwise, and the final summary that `demo --json` prints."""

import logging
import sys
import threading
import time
from typing import IO, Any, Dict, Optional

import psutil

from edge_agent.metrics import Registry

log = logging.getLogger(__name__)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


class StatusLine:
    """Refreshes `fps | latency p50/p99 | RSS | defects` every `interval` seconds in its own thread."""

    def __init__(self, registry: Registry, stream: IO[str] = sys.stderr, interval: Optional[float] = None) -> None:
        self.registry = registry
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval if interval is not None else (0.5 if self.tty else 5.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-line", daemon=True)
        self._cursor = 0
        self._frames = 0
        self._last = time.monotonic()

    def __enter__(self) -> "StatusLine":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.render()

    def render(self) -> str:
        now = time.monotonic()
        frames = self.registry.counter_total("frames_processed")
        fps = (frames - self._frames) / max(now - self._last, 1e-9)
        stats, self._cursor = self.registry.histogram("latency_ms").stats_since(self._cursor)
        self._frames, self._last = frames, now
        line = "{:7.1f} fps | latency p50 {:6.1f} ms p99 {:6.1f} ms | RSS {:6.1f} MB | frames {} | defects {}".format(
            fps, stats.p50, stats.p99, rss_mb(), frames, self.registry.counter_total("defects"))
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
        else:
            log.info("%s", line)
        return line


def mask_iou(registry: Registry) -> Optional[float]:
    """Dataset-level IoU of reported defect pixels against ground truth, where frames carry it
    (the pipeline counts both when a frame has `truth`)."""
    union = registry.counter_total("truth_union_px")
    if union == 0:
        return None
    return registry.counter_total("truth_intersection_px") / union


def summary(registry: Registry, seconds: float, backend: str, precision: str) -> Dict[str, Any]:
    """The run's totals: the `demo --json` contract (README, `edge-agent demo --help`)."""
    latency, _ = registry.histogram("latency_ms").stats_since(0)
    frames = registry.counter_total("frames_processed")
    iou = mask_iou(registry)
    stages = {}
    for name, labels, histogram in registry.histograms():
        if name == "stage_ms":
            stats, _ = histogram.stats_since(0)
            stages[dict(labels)["stage"]] = round(stats.mean, 3)
    return {
        "frames": frames,
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 2) if seconds > 0 else 0.0,
        "latency_ms_p50": round(latency.p50, 3),
        "latency_ms_p95": round(latency.p95, 3),
        "latency_ms_p99": round(latency.p99, 3),
        "stage_ms_mean": stages,
        "defects": registry.counter_total("defects"),
        "frames_dropped": registry.counter_total("frames_dropped"),
        "mask_iou": round(iou, 4) if iou is not None else None,
        "rss_mb": round(rss_mb(), 1),
        "backend": backend,
        "precision": precision,
    }
