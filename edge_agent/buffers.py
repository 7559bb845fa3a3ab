"""Host and device I/O buffers: allocated once at load, reused for every frame, counted.

A `BufferPool` is the only thing in edge-agent that allocates I/O memory, so counting there proves
the steady state allocates nothing: `seal()` after warm-up, and any later allocation is counted in
`stats.after_seal` (and logged), which the tests and `scripts/gpu_check.py` check is zero.

- `HostPool`: numpy arrays, for ONNX Runtime on the CPU (no device memory exists).
- `CudaPool` (`edge_agent.cuda_pool`, pycuda): mapped pinned memory on an integrated GPU (Jetson),
  pinned + device memory and asynchronous copies on a discrete one; its CUDA context is bound per
  thread (`bind_thread`).

`BufferRing` holds N slots of I/O buffers so preprocessing of the next batch can fill one slot
while the GPU works on another. `ScratchArena` is one device allocation shared by execution
contexts that never run at the same time (two engines, or candidate and reference of a gate).
"""

import abc
import contextlib
import ctypes
import logging
import threading
from typing import Any, Callable, ContextManager, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from edge_agent.errors import EdgeAgentError

log = logging.getLogger(__name__)


class TensorLayout(NamedTuple):
    """One I/O tensor at the largest batch: what a slot allocates for it."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    is_input: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


class AllocationStats:
    """What a pool has allocated; `after_seal` must stay 0 in the steady state."""

    __slots__ = ("host_allocations", "device_allocations", "host_bytes", "device_bytes", "after_seal")

    def __init__(self) -> None:
        self.host_allocations = 0
        self.device_allocations = 0
        self.host_bytes = 0
        self.device_bytes = 0
        self.after_seal = 0

    def as_dict(self) -> Dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class DeviceMemory(NamedTuple):
    ptr: int
    nbytes: int
    handle: Any  # keeps the allocation alive; freed by the pool


class BufferPool(abc.ABC):
    """Allocates, counts and frees I/O memory. `zero_copy` pools hand the GPU host pointers."""

    kind = "base"
    zero_copy = False
    has_device = False

    def __init__(self) -> None:
        self.stats = AllocationStats()
        self._sealed = False
        self._held: List[Any] = []

    def seal(self) -> None:
        """Warm-up is over: from now on every allocation is a steady-state allocation (a bug)."""
        self._sealed = True

    def host(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        array = self._host(tuple(int(d) for d in shape), np.dtype(dtype))
        self._count(host=array.nbytes)
        return array

    def device(self, nbytes: int) -> DeviceMemory:
        if nbytes <= 0:
            raise ValueError("device allocation of {} bytes".format(nbytes))
        memory = self._device(int(nbytes))
        self._count(device=memory.nbytes)
        return memory

    def device_pointer(self, host_array: np.ndarray) -> int:
        """The address the GPU uses for a host buffer of a zero-copy pool."""
        raise EdgeAgentError("{} pool has no device view of host memory".format(self.kind))

    # Copies and ordering on the pool's one stream. Synchronous pools (the CPU) complete at once.
    stream_handle = 0

    def to_device(self, device_ptr: int, host_view: np.ndarray) -> None:
        raise EdgeAgentError("{} pool has no device copies".format(self.kind))

    def to_host(self, host_view: np.ndarray, device_ptr: int) -> None:
        raise EdgeAgentError("{} pool has no device copies".format(self.kind))

    def event(self) -> Any:
        """An object with record() (after the work queued so far) and synchronize()."""
        return _DoneEvent()

    def bind_thread(self) -> ContextManager[None]:
        """Make this pool's device current on the calling thread for the `with` block.

        A GPU pool's context is per thread (pycuda and the CUDA driver keep one context stack per
        thread), so every thread that runs a loop over the pool binds it once for the loop; calls
        from an unbound thread still work, each binding itself for its own duration. Pools without
        a device need no binding."""
        return contextlib.nullcontext()

    def _count(self, host: int = 0, device: int = 0) -> None:
        if host:
            self.stats.host_allocations += 1
            self.stats.host_bytes += host
        if device:
            self.stats.device_allocations += 1
            self.stats.device_bytes += device
        if self._sealed:
            self.stats.after_seal += 1
            log.warning("%s pool allocated %d bytes after warm-up; the frame loop should reuse buffers",
                        self.kind, host or device)

    def free(self, memory: DeviceMemory) -> None:
        self.stats.device_bytes -= memory.nbytes
        self._free(memory)

    def close(self) -> None:
        self._held.clear()

    @abc.abstractmethod
    def _host(self, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...

    @abc.abstractmethod
    def _device(self, nbytes: int) -> DeviceMemory: ...

    @abc.abstractmethod
    def _free(self, memory: DeviceMemory) -> None: ...


class _DoneEvent:
    __slots__ = ()

    def record(self) -> None:
        pass

    def synchronize(self) -> None:
        pass


class HostPool(BufferPool):
    """CPU memory only (ONNX Runtime). `device()` gives host bytes standing in for a device, so the
    scratch-sharing and ring logic is the same code with or without a GPU.

    `emulate` makes it behave like a GPU pool for tests on machines without one: "pinned" gives every
    host buffer a separate "device" copy moved by to_device/to_host; "mapped" hands out host
    addresses as device pointers (zero copy)."""

    kind = "host"

    def __init__(self, emulate: Optional[str] = None) -> None:
        super().__init__()
        if emulate not in (None, "pinned", "mapped"):
            raise ValueError("emulate must be None, 'pinned' or 'mapped', got {!r}".format(emulate))
        self.has_device = emulate is not None
        self.zero_copy = emulate == "mapped"
        if emulate:
            self.kind = "host-emulating-" + emulate

    def device_pointer(self, host_array: np.ndarray) -> int:
        if not self.zero_copy:
            return super().device_pointer(host_array)
        return int(host_array.ctypes.data)

    def to_device(self, device_ptr: int, host_view: np.ndarray) -> None:
        ctypes.memmove(device_ptr, host_view.ctypes.data, host_view.nbytes)

    def to_host(self, host_view: np.ndarray, device_ptr: int) -> None:
        ctypes.memmove(host_view.ctypes.data, device_ptr, host_view.nbytes)

    def _host(self, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def _device(self, nbytes: int) -> DeviceMemory:
        block = np.zeros(nbytes, dtype=np.uint8)
        return DeviceMemory(int(block.ctypes.data), nbytes, block)

    def _free(self, memory: DeviceMemory) -> None:
        """numpy owns the block; dropping the last reference (the arena's or the ring's) frees it."""


class Slot:
    """One set of I/O buffers: host arrays (where the CPU reads and writes) and device addresses."""

    __slots__ = ("index", "host", "address", "device")

    def __init__(self, index: int) -> None:
        self.index = index
        self.host: Dict[str, np.ndarray] = {}
        self.address: Dict[str, int] = {}  # what the engine reads/writes: device or mapped pointer
        self.device: Dict[str, DeviceMemory] = {}  # separate device copies (pinned path only)


class BufferRing:
    """N slots of every I/O tensor, allocated at construction, rotated by `advance()`."""

    def __init__(self, pool: BufferPool, tensors: Sequence[TensorLayout], slots: int) -> None:
        if slots < 1:
            raise ValueError("a ring needs at least one slot, got {}".format(slots))
        self.pool = pool
        self.tensors = list(tensors)
        self.slots: List[Slot] = []
        self.position = 0
        for index in range(slots):
            slot = Slot(index)
            for tensor in self.tensors:
                array = pool.host(tensor.shape, tensor.dtype)
                slot.host[tensor.name] = array
                if pool.zero_copy:
                    slot.address[tensor.name] = pool.device_pointer(array)
                elif pool.has_device:
                    memory = pool.device(tensor.nbytes)
                    slot.device[tensor.name] = memory
                    slot.address[tensor.name] = memory.ptr
                else:
                    slot.address[tensor.name] = int(array.ctypes.data)
            self.slots.append(slot)

    @property
    def current(self) -> Slot:
        return self.slots[self.position]

    def advance(self) -> Slot:
        self.position = (self.position + 1) % len(self.slots)
        return self.slots[self.position]

    @property
    def host_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors) * len(self.slots)

    @property
    def device_bytes(self) -> int:
        return self.host_bytes if self.pool.has_device and not self.pool.zero_copy else 0

    def close(self) -> None:
        for slot in self.slots:
            for memory in slot.device.values():
                self.pool.free(memory)
            slot.device.clear()
        self.slots.clear()


def ring_bytes(tensors: Sequence[TensorLayout], slots: int, separate_device: bool) -> Tuple[int, int]:
    """(host, device) bytes a ring will take, computed before anything is allocated."""
    host = sum(t.nbytes for t in tensors) * slots
    return host, host if separate_device else 0


Rebind = Callable[[int, int], None]


class ScratchArena:
    """One device region for the scratch memory of contexts that take turns.

    Each context `reserve`s what its engine needs and gets its region's address through `rebind`
    (again if a later, larger reservation replaces the region). `acquire`/`release` around each
    inference make the turn-taking explicit: a second context asking while the first one runs is an
    error, not a silent memory corruption.
    """

    def __init__(self, pool: BufferPool) -> None:
        self.pool = pool
        self.memory: Optional[DeviceMemory] = None
        self._users: Dict[str, Tuple[int, Rebind]] = {}
        self._owner: Optional[str] = None
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self.memory.nbytes if self.memory is not None else 0

    def reserve(self, user: str, nbytes: int, rebind: Rebind) -> None:
        if user in self._users:
            raise EdgeAgentError("scratch arena: {} already has a reservation".format(user))
        self._users[user] = (nbytes, rebind)
        if nbytes > self.size:
            if self.memory is not None:
                self.pool.free(self.memory)
            self.memory = self.pool.device(nbytes)
            for _, rebind_user in self._users.values():
                rebind_user(self.memory.ptr, self.memory.nbytes)
        elif self.memory is not None:
            rebind(self.memory.ptr, self.memory.nbytes)

    def drop(self, user: str) -> None:
        self._users.pop(user, None)
        if not self._users and self.memory is not None:
            self.pool.free(self.memory)
            self.memory = None

    def acquire(self, user: str) -> None:
        with self._lock:
            if self._owner is not None and self._owner != user:
                raise EdgeAgentError(
                    "scratch memory is shared by {} and {}, which must not run at the same time; "
                    "give concurrent engines separate arenas".format(self._owner, user))
            self._owner = user

    def release(self, user: str) -> None:
        with self._lock:
            if self._owner == user:
                self._owner = None
