"""Free what a torn-down pipeline held and hand the memory back to the operating system.

A stopped pipeline (its source runners, frame board, batches, preprocessor, threads' conditions)
sits in reference cycles, so its frame buffers are freed only by Python's cyclic collector, whose
full pass can be many reloads away; meanwhile the next pipeline's buffers land beside them and the
heap grows. In the soak's agent (`scripts/soak.py`) heaptrack showed the live C heap growing by
about 90 kB per fault cycle (numpy buffers) and dropping at a full collection, and
`gc.DEBUG_SAVEALL` found the old Pipeline, its SourceRunner, FrameBoard and Preprocessor among the
collected cycles. So a teardown runs `gc.collect()` first (10-20 ms here).

Then glibc keeps the freed pages in its heap, where the next session's allocations only partly
fill the holes; `malloc_trim(0)` returns the free pages: in 60 in-process reloads it kept RSS
4-5 MB lower (docs/benchmarks.md, "Soak with faults").

Between reloads the holes come back: glibc returns free memory to the OS only from the top of a
heap, and the frame loop, sources and telemetry threads free buffers in the middle of theirs. In
the soak's agent `mallinfo2()` showed the in-use heap flat while free space inside the arenas grew
from 1.3 to 2.8 MB in 16 minutes. So the daemon also trims every TRIM_EVERY_S while it serves
(`PeriodicTrim`); a trim took 0.03-0.07 ms there.
"""

import ctypes
import gc
import time
from typing import Any, Callable, Optional

TRIM_EVERY_S = 10.0

_UNSET: Any = object()
_trim: Any = _UNSET


def _malloc_trim() -> Optional[Any]:
    global _trim
    if _trim is _UNSET:
        _trim = None
        try:
            libc = ctypes.CDLL(None)  # the C library the interpreter itself runs on
        except OSError:
            libc = None
        # glibc only: musl (Alpine) and macOS have no malloc_trim and need none of this
        if libc is not None and hasattr(libc, "malloc_trim"):
            _trim = libc.malloc_trim
            _trim.argtypes = [ctypes.c_size_t]
            _trim.restype = ctypes.c_int
    return _trim


def trim_heap() -> bool:
    """Return the C heap's free pages to the OS; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def release_freed_memory() -> bool:
    """Collect the cyclic garbage a teardown left, then return the C heap's free pages to the OS;
    False where the C library cannot trim (not glibc: the collection still runs)."""
    gc.collect()
    return trim_heap()


class PeriodicTrim:
    """`due()` trims the heap when `every_s` has passed since the last trim; called from a loop
    that wakes often (the daemon's supervise loop wakes at least once a second)."""

    def __init__(self, every_s: float = TRIM_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.trims = 0
        self._clock = clock
        self._next = clock() + every_s

    def due(self) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self.every_s
        if trim_heap():
            self.trims += 1
