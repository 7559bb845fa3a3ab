"""Metrics registry: counters, gauges and latency histograms, written by the frame loop.

Writers never allocate: a histogram is a preallocated ring of samples. Several readers (the live
status line, the MQTT publisher, the demo summary) each keep their own cursor, so one reader's
reporting window never resets another's.
"""

import bisect
import threading
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from edge_agent.health import Health

Labels = Tuple[Tuple[str, str], ...]


class Counter:
    __slots__ = ("value", "_lock")

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def inc(self, amount: int = 1) -> None:
        with self._lock:
            self.value += amount


class Gauge:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Optional[float] = None

    def set(self, value: float) -> None:
        self.value = value


class HistogramStats:
    __slots__ = ("count", "mean", "p50", "p95", "p99", "max")

    def __init__(self, samples: np.ndarray) -> None:
        self.count = int(samples.size)
        if self.count:
            p50, p95, p99 = np.percentile(samples, (50, 95, 99))
            self.mean, self.p50, self.p95, self.p99 = float(samples.mean()), float(p50), float(p95), float(p99)
            self.max = float(samples.max())
        else:
            self.mean = self.p50 = self.p95 = self.p99 = self.max = 0.0

    def as_dict(self) -> Dict[str, float]:
        return {k: getattr(self, k) for k in self.__slots__}


# Upper bounds of the cumulative buckets (in the histogram's unit, ms for times): what a Prometheus
# scrape reports as _bucket{le=...}, from inference in a few ms to a stalled multi-second stage.
BUCKET_BOUNDS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


class Histogram:
    """The last `capacity` samples (readers ask for the samples added since their cursor), plus
    cumulative bucket counts and the sum since start (for Prometheus, whose histograms never reset)."""

    def __init__(self, capacity: int = 65536) -> None:
        # written through now, not np.zeros: calloc'ed pages become resident only as the ring
        # fills, and RSS then crept up by 512 kB per histogram over the first hour (at 20 fps),
        # which the 60-minute soak measured as a 2 % growth
        self._samples = np.full(capacity, 0.0, dtype=np.float64)
        self._total = 0
        self._buckets = [0] * (len(BUCKET_BOUNDS) + 1)  # the last one: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._samples[self._total % self._samples.size] = value
            self._total += 1
            self._buckets[bisect.bisect_left(BUCKET_BOUNDS, value)] += 1
            self._sum += value

    def cumulative(self) -> Tuple[List[int], float, int]:
        """(count at or below each of BUCKET_BOUNDS then +Inf, sum, count), since start."""
        with self._lock:
            counts, total_sum, total = list(self._buckets), self._sum, self._total
        running = 0
        for index, count in enumerate(counts):
            running += count
            counts[index] = running
        return counts, total_sum, total

    @property
    def total(self) -> int:
        return self._total

    def stats_since(self, cursor: int = 0) -> Tuple[HistogramStats, int]:
        """Statistics over samples added after `cursor` (at most the ring's capacity) and the new cursor."""
        with self._lock:
            end = self._total
            count = min(end - cursor, self._samples.size)
            first = (end - count) % self._samples.size
            order = np.arange(first, first + count) % self._samples.size
            window = self._samples[order]
        return HistogramStats(window), end


class Registry:
    """Named metrics with labels; `get-or-create` so modules need not register up front.

    It also carries the agent's `health` (problems reported by components, edge_agent/health.py):
    every component that is handed the registry can report a problem without more plumbing."""

    def __init__(self) -> None:
        self.health = Health()
        self._counters: Dict[Tuple[str, Labels], Counter] = {}
        self._gauges: Dict[Tuple[str, Labels], Gauge] = {}
        self._histograms: Dict[Tuple[str, Labels], Histogram] = {}
        self._units: Dict[str, str] = {}
        self._lock = threading.Lock()

    def counter(self, name: str, unit: str = "count", **labels: str) -> Counter:
        return self._get(self._counters, Counter, name, unit, labels)

    def gauge(self, name: str, unit: str, **labels: str) -> Gauge:
        return self._get(self._gauges, Gauge, name, unit, labels)

    def histogram(self, name: str, unit: str = "ms", **labels: str) -> Histogram:
        return self._get(self._histograms, Histogram, name, unit, labels)

    def _get(self, table, factory, name, unit, labels):  # type: ignore[no-untyped-def]
        key = (name, tuple(sorted(labels.items())))
        metric = table.get(key)
        if metric is None:
            with self._lock:
                metric = table.setdefault(key, factory())
                self._units.setdefault(name, unit)
        return metric

    def unit(self, name: str) -> str:
        return self._units.get(name, "")

    def counters(self) -> Iterator[Tuple[str, Labels, int]]:
        for (name, labels), counter in list(self._counters.items()):
            yield name, labels, counter.value

    def gauges(self) -> Iterator[Tuple[str, Labels, Optional[float]]]:
        for (name, labels), gauge in list(self._gauges.items()):
            yield name, labels, gauge.value

    def histograms(self) -> Iterator[Tuple[str, Labels, Histogram]]:
        for (name, labels), histogram in list(self._histograms.items()):
            yield name, labels, histogram

    def counter_total(self, name: str) -> int:
        return sum(value for metric, _, value in self.counters() if metric == name)
