"""Hand memory that native libraries freed back to the operating system.

A reload opens the new model's ONNX Runtime (or TensorRT) session beside the running one, then
closes the old one. glibc keeps the freed pages in its heap, and the next session's allocations
only partly fill the holes, so RSS crept up for the first few dozen reloads before it levelled
off (+1.7 % in the 60-minute soak). `malloc_trim(0)` after each teardown returns the free pages;
with one malloc arena (`MALLOC_ARENA_MAX=1` in the unit) RSS stays flat from the first reload
(docs/benchmarks.md, "Soak with faults").
"""

import ctypes
import logging
from typing import Any, Optional

log = logging.getLogger(__name__)

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
    """Return the C heap's free pages to the OS; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
