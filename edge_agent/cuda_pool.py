"""GPU I/O memory through pycuda, with the device's primary context current on every thread that uses it.

On an integrated GPU (Jetson, where CPU and GPU share one DRAM) host buffers are *mapped* pinned
memory and the GPU reads them through their device pointer: zero copies. On a discrete GPU,
pinned host buffers plus device buffers and asynchronous copies on one stream. The choice is read
from the device's attributes.

Contexts are per thread. pycuda keeps its own context stack per thread (and the driver one current
context per thread): a context pushed on the thread that opened the pool is not current on the
frame-loop thread, and every pycuda call there fails with `LogicError: ... invalid device context`.
So the pool never leaves its context pushed on a thread it does not control:

- `bind_thread()` pushes the retained primary context (the one TensorRT's runtime API uses) on the
  calling thread and pops it when the block ends, on that same thread: a thread that ends with a
  context still pushed makes pycuda abort the process. Loops (the frame loop, the gate, the
  self-test) bind once for their whole run.
- Every pool operation called on a thread that is not bound binds itself for its own duration,
  so any other thread (a future worker, a close() from the main thread) still works.
"""

import contextlib
import threading
from typing import Any, ContextManager, Iterator, Optional, Tuple

import numpy as np

from edge_agent.buffers import BufferPool, DeviceMemory
from edge_agent.errors import BackendUnavailable, EdgeAgentError


class CudaPool(BufferPool):
    """pycuda memory on one device's retained primary context."""

    has_device = True

    def __init__(self, device: int = 0, mapped: Optional[bool] = None) -> None:
        super().__init__()
        try:
            import pycuda.driver as cuda
        except ImportError as exc:
            raise BackendUnavailable(
                "pycuda cannot be imported ({}); install it with pip install 'edge-agent[jetson]' "
                "(it builds against the local CUDA: set CUDA_ROOT if nvcc is not on PATH)".format(exc)) from None
        self.cuda = cuda
        self._bound = threading.local()  # .depth: nesting of bind_thread() on that thread
        cuda.init()
        self._device_handle = cuda.Device(device)
        self._context = self._device_handle.retain_primary_context()
        with self.bind_thread():
            attributes = self._device_handle.get_attributes()
            self.integrated = bool(attributes.get(cuda.device_attribute.INTEGRATED, 0))
            can_map = bool(attributes.get(cuda.device_attribute.CAN_MAP_HOST_MEMORY, 0))
            # Mapped memory only pays on shared DRAM; on a discrete GPU every kernel access would cross PCIe.
            self.zero_copy = (self.integrated if mapped is None else mapped) and can_map
            self.kind = "cuda-mapped" if self.zero_copy else "cuda-pinned"
            self.name = self._device_handle.name()
            self.stream = cuda.Stream()
            self.stream_handle = int(self.stream.handle)

    @contextlib.contextmanager
    def bind_thread(self) -> Iterator[None]:
        depth = getattr(self._bound, "depth", 0)
        if depth == 0:
            self._context.push()
        self._bound.depth = depth + 1
        try:
            yield
        finally:
            self._bound.depth = depth
            if depth == 0:
                self.cuda.Context.pop()

    def _active(self) -> ContextManager[None]:
        """The binding an operation needs: none on a bound thread, its own on any other."""
        if getattr(self._bound, "depth", 0):
            return contextlib.nullcontext()
        return self.bind_thread()

    def to_device(self, device_ptr: int, host_view: np.ndarray) -> None:
        with self._active():
            self.cuda.memcpy_htod_async(device_ptr, host_view, self.stream)

    def to_host(self, host_view: np.ndarray, device_ptr: int) -> None:
        with self._active():
            self.cuda.memcpy_dtoh_async(host_view, device_ptr, self.stream)

    def event(self) -> Any:
        with self._active():
            return _StreamEvent(self, self.cuda.Event())

    def _host(self, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        with self._active():
            if self.zero_copy:
                array = self.cuda.pagelocked_zeros(shape, dtype, mem_flags=self.cuda.host_alloc_flags.DEVICEMAP)
            else:
                array = self.cuda.pagelocked_zeros(shape, dtype)
        self._held.append(array)
        return array

    def device_pointer(self, host_array: np.ndarray) -> int:
        if not self.zero_copy:
            return super().device_pointer(host_array)
        allocation = host_array.base
        if not hasattr(allocation, "get_device_pointer"):
            raise EdgeAgentError("device_pointer needs a whole buffer from this pool, not a view of one")
        with self._active():
            return int(allocation.get_device_pointer())

    def _device(self, nbytes: int) -> DeviceMemory:
        with self._active():
            allocation = self.cuda.mem_alloc(nbytes)
        return DeviceMemory(int(allocation), nbytes, allocation)

    def _free(self, memory: DeviceMemory) -> None:
        with self._active():
            memory.handle.free()

    def free_device_bytes(self) -> int:
        with self._active():
            free, _ = self.cuda.mem_get_info()
        return int(free)

    def close(self) -> None:
        with self._active():
            self.stream.synchronize()
            for array in self._held:
                array.base.free()
            super().close()
            # dropped while the context is current: pycuda destroys the stream in its own context
            self.stream = None


class _StreamEvent:
    """A CUDA event on the pool's stream; record/synchronize bind the context like every pool call."""

    __slots__ = ("_pool", "_event")

    def __init__(self, pool: CudaPool, event: Any) -> None:
        self._pool, self._event = pool, event

    def record(self) -> None:
        with self._pool._active():
            self._event.record(self._pool.stream)

    def synchronize(self) -> None:
        with self._pool._active():
            self._event.synchronize()
