"""Hand memory that native libraries freed back to the operating system.

A reload opens the new model's ONNX Runtime (or TensorRT) session beside the running one, then
closes the old one. glibc keeps the freed pages in its heap, where the next session's allocations
only partly fill the holes. `malloc_trim(0)` after each teardown returns the free pages: in 60
in-process reloads it kept RSS 4-5 MB lower (docs/benchmarks.md, "Soak with faults").
"""

import ctypes
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
    """Return the C heap's free pages to the OS; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
