import platform

import pytest

from edge_agent import native_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_freed_memory_trims_the_glibc_heap():
    assert native_memory.release_freed_memory() is True


def test_release_freed_memory_is_a_no_op_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(native_memory, "_trim", None)  # as looked up on musl or macOS
    assert native_memory.release_freed_memory() is False
