import platform

import pytest

from edge_agent import native_memory


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
