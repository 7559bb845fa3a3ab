import platform

import pytest

from edge_agent import native_memory
from edge_agent.status import rss_mb


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_freed_memory_trims_the_glibc_heap():
    assert native_memory.release_freed_memory() is True


def test_release_freed_memory_is_a_no_op_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(native_memory, "_trim", None)  # as looked up on musl or macOS
    assert native_memory.release_freed_memory() is False


def test_release_freed_memory_frees_buffers_held_in_reference_cycles(monkeypatch):
    """A stopped pipeline holds its buffers in reference cycles: they must go at the teardown, not
    at a full collection many reloads later."""
    import gc
    import weakref

    import numpy as np

    class Stage:  # a stand-in for the pipeline's board, runners and batches, which refer to each other
        def __init__(self):
            self.buffer = np.zeros(1 << 16, np.uint8)
            self.me = self

    monkeypatch.setattr(native_memory, "_trim", None)  # the collection runs even where trimming cannot
    enabled = gc.isenabled()
    gc.disable()  # no automatic pass may free it first
    try:
        stage = Stage()
        stage_ref = weakref.ref(stage)
        del stage
        assert stage_ref() is not None  # refcounting alone cannot free a cycle
        native_memory.release_freed_memory()
        assert stage_ref() is None
    finally:
        if enabled:
            gc.enable()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_freed_memory_hands_back_pages_freed_inside_the_heap():
    """free() gives memory back only from the top of a heap; holes between live blocks (what a
    torn-down pipeline leaves among the live ones) stay resident until a trim."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    block = 64 * 1024  # under glibc's mmap threshold: carved from the heap, not mapped on its own
    blocks = [libc.malloc(block) for _ in range(600)]
    try:
        for address in blocks:
            ctypes.memset(address, 1, block)  # make every page resident
        for address in blocks[::2]:
            libc.free(address)  # holes between live blocks: nothing at the top to give back
        before = rss_mb()
        assert native_memory.release_freed_memory() is True
        after = rss_mb()
    finally:
        for address in blocks[1::2]:
            libc.free(address)
    holes_mb = 300 * block / 2**20  # 18.75 MB
    assert before - after > 0.5 * holes_mb, (before, after)
