"""A stand-in `pycuda` for tests without a GPU, at least as strict about contexts as the real one.

pycuda keeps one context stack per thread (and the driver one current context per thread). What a
real H200 (driver 580.159.04, pycuda 2026.1) answered a thread on which no context was pushed,
recorded by scripts/gpu_daemon_check.py (docs/benchmarks.md), and what this fake does:

| call on an unbound thread                 | real H200                                              | fake   |
|-------------------------------------------|--------------------------------------------------------|--------|
| Event(), Stream()                         | LogicError: explicit_context_dependent failed: invalid | same   |
|                                           | device context - no currently active context?          |        |
| mem_alloc, pagelocked_zeros               | LogicError: cuMemAlloc / cuMemHostAlloc failed: invalid | same   |
|                                           | device context                                         |        |
| mem_get_info                              | LogicError: cuMemGetInfo failed: invalid device context | same   |
| DeviceAllocation.free                     | no exception, but a UserWarning "could not be cleaned   | raises |
|                                           | up": the memory leaks                                  |        |
| copies, Event.record/synchronize,         | accepted (the handles carry their context; this driver | raises |
| Stream.synchronize                        | does not insist on a current one)                      |        |

The last two rows are stricter than that driver on purpose: CUDA's driver API is documented to
need a current context, another driver (a Jetson's) may insist, and a silent leak is worse than
an error. Also enforced: `Context.pop()` on an empty stack raises `LogicError: context::pop failed:
invalid device context - cannot pop non-current context`; a thread that ends with a context still
pushed makes real pycuda abort the process ("The context stack was not empty upon module cleanup",
src/cpp/cuda.hpp): `leaked_threads()` names such threads so a test can fail on them. One primary
context per device, shared by every Device object, as the driver has.

Memory is real host memory addressed by pointer, so the fake TensorRT reads and writes it exactly
where a GPU would; copies check that the device address lies in a live allocation.
"""

import ctypes
import sys
import threading
import types

import numpy as np
import pytest

NO_CONTEXT = "explicit_context_dependent failed: invalid device context - no currently active context?"


class Error(Exception):
    pass


class CudaError(Error):
    pass


class LogicError(CudaError):
    pass


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.stacks = {}  # thread ident -> [context, ...]
        self.threads = {}  # thread ident -> Thread, to find threads that ended with a pushed context
        self.initialized = False
        self.allocations = {}  # address -> nbytes of live device (and mapped) memory
        self.calls = []  # (function, thread name) of every context-dependent call, for assertions
        self.primary = {}  # device number -> its one primary context (every Device object shares it)

    def stack(self):
        ident = threading.get_ident()
        with self.lock:
            self.threads[ident] = threading.current_thread()
            return self.stacks.setdefault(ident, [])

    def current(self):
        stack = self.stack()
        return stack[-1] if stack else None

    def require(self, function):
        """The current context, or the LogicError the real driver gives on this thread."""
        if not self.initialized:
            raise LogicError("{} failed: initialization error".format(function or "cuInit"))
        context = self.current()
        if context is None:
            raise LogicError(NO_CONTEXT if function is None else "{} failed: invalid device context".format(function))
        self.calls.append((function or "create", threading.current_thread().name))
        return context

    def check_device_range(self, address, nbytes, function):
        for start, size in self.allocations.items():
            if start <= address and address + nbytes <= start + size:
                return
        raise LogicError("{} failed: invalid argument (address {:#x} + {} bytes is not device memory)".format(
            function, address, nbytes))


def make_fake_pycuda(integrated=False):
    """(pycuda package module, pycuda.driver module), fresh state."""
    state = _State()
    driver = types.ModuleType("pycuda.driver")
    driver.Error, driver.CudaError, driver.LogicError = Error, CudaError, LogicError
    driver._state = state

    class device_attribute:  # noqa: N801 -- pycuda's names
        INTEGRATED = "INTEGRATED"
        CAN_MAP_HOST_MEMORY = "CAN_MAP_HOST_MEMORY"

    class host_alloc_flags:  # noqa: N801
        PORTABLE = 1
        DEVICEMAP = 2

    class Context:
        def __init__(self, device):
            self.device = device

        def push(self):
            if not state.initialized:
                raise LogicError("cuCtxPushCurrent failed: initialization error")
            state.stack().append(self)

        @staticmethod
        def pop():
            stack = state.stack()
            if not stack:
                raise LogicError("context::pop failed: invalid device context - cannot pop non-current context")
            stack.pop()

        @staticmethod
        def get_current():
            return state.current()

        @staticmethod
        def synchronize():
            state.require("cuCtxSynchronize")

    class Device:
        def __init__(self, number):
            if not state.initialized:
                raise LogicError("cuDeviceGet failed: initialization error")
            self.number = number

        def name(self):
            return "Fake GPU (integrated)" if integrated else "Fake GPU"

        def get_attributes(self):
            return {device_attribute.INTEGRATED: int(integrated), device_attribute.CAN_MAP_HOST_MEMORY: 1}

        def retain_primary_context(self):
            return state.primary.setdefault(self.number, Context(self))

    class Stream:
        def __init__(self, flags=0):
            self.context = state.require(None)
            self.handle = id(self)

        def synchronize(self):
            state.require("cuStreamSynchronize")

    class Event:
        def __init__(self, flags=0):
            self.context = state.require(None)
            self.recorded = False

        def record(self, stream=None):
            context = state.require("cuEventRecord")
            if stream is not None and stream.context is not context:
                raise LogicError("cuEventRecord failed: invalid resource handle (stream of another context)")
            self.recorded = True
            return self

        def synchronize(self):
            state.require("cuEventSynchronize")
            return self

    class DeviceAllocation:
        def __init__(self, nbytes):
            self.context = state.require("cuMemAlloc")
            self._block = np.zeros(nbytes, dtype=np.uint8)
            self.address = int(self._block.ctypes.data)
            state.allocations[self.address] = nbytes

        def __int__(self):
            return self.address

        def free(self):
            state.require("cuMemFree")
            if state.allocations.pop(self.address, None) is None:
                raise LogicError("device_allocation::free failed: invalid resource handle")

    class HostAllocation:
        """pagelocked memory; numpy arrays made from it have it as their `.base`, as in pycuda."""

        def __init__(self, shape, dtype, flags):
            self.context = state.require("cuMemHostAlloc")
            self.flags = flags
            self._block = np.zeros(shape, dtype=dtype)
            self.__array_interface__ = self._block.__array_interface__
            if flags & host_alloc_flags.DEVICEMAP:
                state.allocations[int(self._block.ctypes.data)] = self._block.nbytes

        def get_device_pointer(self):
            state.require("cuMemHostGetDevicePointer")
            if not self.flags & host_alloc_flags.DEVICEMAP:
                raise LogicError("cuMemHostGetDevicePointer failed: invalid value")
            return int(self._block.ctypes.data)

        def free(self):
            state.require("cuMemFreeHost")
            state.allocations.pop(int(self._block.ctypes.data), None)

    def init(flags=0):
        state.initialized = True

    def pagelocked_zeros(shape, dtype, order="C", mem_flags=0):
        array = np.asarray(HostAllocation(shape, dtype, mem_flags))
        return array

    def mem_alloc(nbytes):
        return DeviceAllocation(nbytes)

    def mem_get_info():
        state.require("cuMemGetInfo")
        return 8 << 30, 16 << 30

    def memcpy_htod_async(dest, src, stream=None):
        state.require("cuMemcpyHtoDAsync")
        state.check_device_range(int(dest), src.nbytes, "cuMemcpyHtoDAsync")
        ctypes.memmove(int(dest), src.ctypes.data, src.nbytes)

    def memcpy_dtoh_async(dest, src, stream=None):
        state.require("cuMemcpyDtoHAsync")
        state.check_device_range(int(src), dest.nbytes, "cuMemcpyDtoHAsync")
        ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes)

    for value in (device_attribute, host_alloc_flags, Context, Device, Stream, Event, init, pagelocked_zeros,
                  mem_alloc, mem_get_info, memcpy_htod_async, memcpy_dtoh_async):
        setattr(driver, value.__name__, value)

    def leaked_threads():
        """Threads that ended with a context still pushed (real pycuda aborts the process there)."""
        with state.lock:
            return sorted(state.threads[ident].name for ident, stack in state.stacks.items()
                          if stack and not state.threads[ident].is_alive())

    driver.leaked_threads = leaked_threads
    package = types.ModuleType("pycuda")
    package.__path__ = []
    package.driver = driver
    return package, driver


@pytest.fixture
def fake_pycuda(monkeypatch):
    """The fake pycuda.driver, importable as `pycuda.driver` for the test's duration (a discrete GPU)."""
    package, driver = make_fake_pycuda()
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return driver
