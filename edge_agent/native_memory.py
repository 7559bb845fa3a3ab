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
"""

import ctypes
import gc
from typing import Any, Optional

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


def release_freed_memory() -> bool:
    """Collect the cyclic garbage a teardown left, then return the C heap's free pages to the OS;
    False where the C library cannot trim (not glibc: the collection still runs)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
