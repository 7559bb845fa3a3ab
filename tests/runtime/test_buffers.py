import numpy as np
import pytest

from edge_agent.buffers import BufferRing, HostPool, ScratchArena, TensorLayout, ring_bytes
from edge_agent.errors import EdgeAgentError

TENSORS = [TensorLayout("image", (2, 3, 16, 16), np.dtype(np.float32), True),
           TensorLayout("logits", (2, 5, 16, 16), np.dtype(np.float16), False)]


@pytest.mark.parametrize("emulate,device_allocations", [(None, 0), ("pinned", 6), ("mapped", 0)])
def test_ring_allocates_every_slot_once_and_plans_its_size(emulate, device_allocations):
    pool = HostPool(emulate=emulate)
    ring = BufferRing(pool, TENSORS, slots=3)
    assert pool.stats.host_allocations == 6 and pool.stats.device_allocations == device_allocations
    host, device = ring_bytes(TENSORS, 3, separate_device=emulate == "pinned")
    assert (host, device) == (ring.host_bytes, ring.device_bytes) == (pool.stats.host_bytes, pool.stats.device_bytes)
    addresses = {slot.address["image"] for slot in ring.slots}
    assert len(addresses) == 3  # distinct memory per slot
    if emulate == "mapped":  # zero copy: the engine reads the very memory the CPU writes
        assert all(s.address["image"] == s.host["image"].ctypes.data for s in ring.slots)
    if emulate == "pinned":
        assert all(s.address["image"] != s.host["image"].ctypes.data for s in ring.slots)


def test_ring_rotates_through_its_slots():
    ring = BufferRing(HostPool(), TENSORS, slots=2)
    first = ring.current
    assert ring.advance() is not first and ring.advance() is first


def test_allocation_after_seal_is_counted():
    pool = HostPool()
    BufferRing(pool, TENSORS, slots=2)
    pool.seal()
    assert pool.stats.after_seal == 0
    pool.host((4,), np.float32)
    assert pool.stats.after_seal == 1


def test_emulated_device_copies_move_the_bytes():
    pool = HostPool(emulate="pinned")
    host = pool.host((4, 4), np.float32)
    back = pool.host((4, 4), np.float32)
    device = pool.device(host.nbytes)
    host[:] = np.arange(16).reshape(4, 4)
    pool.to_device(device.ptr, host[:2])
    pool.to_host(back[:2], device.ptr)
    np.testing.assert_array_equal(back[:2], host[:2])
    assert not back[2:].any()  # only the rows asked for


def test_scratch_arena_grows_once_and_rebinds_every_user():
    pool = HostPool(emulate="pinned")
    arena = ScratchArena(pool)
    bound = {}
    arena.reserve("a", 100, lambda ptr, size: bound.__setitem__("a", (ptr, size)))
    arena.reserve("b", 50, lambda ptr, size: bound.__setitem__("b", (ptr, size)))
    assert bound["a"] == bound["b"] == (arena.memory.ptr, 100) and pool.stats.device_allocations == 1
    arena.reserve("c", 400, lambda ptr, size: bound.__setitem__("c", (ptr, size)))
    assert bound["a"] == bound["b"] == bound["c"] == (arena.memory.ptr, 400)
    assert pool.stats.device_allocations == 2 and pool.stats.device_bytes == 400  # the old region was freed
    arena.acquire("a")
    with pytest.raises(EdgeAgentError, match="must not run at the same time"):
        arena.acquire("b")
    arena.release("a")
    arena.acquire("b")
    arena.release("b")
    for user in "abc":
        arena.drop(user)
    assert arena.memory is None and pool.stats.device_bytes == 0


def test_emulate_rejects_unknown_modes():
    with pytest.raises(ValueError, match="emulate"):
        HostPool(emulate="unified")
