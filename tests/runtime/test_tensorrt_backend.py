"""The TensorRT backend's runtime logic against a fake TensorRT (both API generations) and the
buffer layer emulating the pinned (discrete GPU) and mapped (Jetson) paths on the CPU."""

import numpy as np
import pytest
from fake_tensorrt import fake_trt, write_engine  # noqa: F401  (fake_trt is a fixture)

from edge_agent.backends.base import PreparedModel
from edge_agent.backends.tensorrt import TensorRTBackend
from edge_agent.budget import BudgetExceeded, MemoryBudget
from edge_agent.buffers import HostPool, ScratchArena
from edge_agent.config import InputConfig, ModelConfig, OutputConfig
from edge_agent.errors import ModelError

# Every test here runs against both API generations of the fake TensorRT (see fake_tensorrt.py).
pytestmark = pytest.mark.usefixtures("fake_trt")

MODEL_CONFIG = ModelConfig(input=InputConfig(width=8, height=8), output=OutputConfig(classes=["background", "defect"]))


def backend_for(engine, pool, max_batch=4, slots=2, scratch=None, model_config=MODEL_CONFIG):
    backend = TensorRTBackend(PreparedModel(engine, "fp16", engine), model_config, max_batch, config=None,
                              pool=pool, scratch=scratch)
    backend.slots = slots
    return backend


@pytest.mark.parametrize("path", ["pinned", "mapped"])
def test_outputs_follow_inputs_through_the_ring(tmp_path, path):
    pool = HostPool(emulate=path)
    with backend_for(write_engine(tmp_path / "m.engine"), pool) as backend:
        assert backend.output_spec.shape == (4, 2, 8, 8)
        first_slot = backend.input_buffer
        for frame in range(12):
            n = frame % 4 + 1
            backend.input_buffer[:n] = frame
            out = backend.infer(n)
            assert out.shape == (n, 2, 8, 8)
            np.testing.assert_array_equal(out[:, 0], frame)
            np.testing.assert_array_equal(out[:, 1], 2 * frame)
        # two slots: the input buffer alternates between two distinct allocations
        backend.submit(1)
        second_slot = backend.input_buffer
        backend.wait()
        assert second_slot is not first_slot or backend.slots == 1
        assert pool.stats.after_seal == 0
        assert pool.stats.host_allocations == 2 * 2  # input + output, two slots, nothing more
        assert pool.stats.device_allocations == (4 if path == "pinned" else 0) + 1  # + one scratch region


def test_submit_lets_the_next_batch_be_prepared_while_one_runs(tmp_path):
    with backend_for(write_engine(tmp_path / "m.engine"), HostPool(emulate="pinned")) as backend:
        backend.input_buffer[:2] = 3.0
        backend.submit(2)
        backend.input_buffer[:2] = 5.0  # the other slot: does not disturb the batch in flight
        np.testing.assert_array_equal(backend.wait()[:, 0], 3.0)
        backend.submit(2)
        np.testing.assert_array_equal(backend.wait()[:, 0], 5.0)


def test_two_engines_share_one_scratch_region(tmp_path):
    pool = HostPool(emulate="pinned")
    arena = ScratchArena(pool)
    small = backend_for(write_engine(tmp_path / "a.engine", scratch=1000), pool, scratch=arena)
    large = backend_for(write_engine(tmp_path / "b.engine", scratch=5000), pool, scratch=arena)
    with small, large:
        scratch_small = small._context.scratch if hasattr(small._context, "set_device_memory") else (
            small._context.device_memory, None)
        scratch_large = large._context.scratch if hasattr(large._context, "set_device_memory") else (
            large._context.device_memory, None)
        assert arena.size == 5000
        assert scratch_small[0] == scratch_large[0] == arena.memory.ptr  # the small one was rebound on growth
        small.input_buffer[:1] = 1
        large.input_buffer[:1] = 2
        np.testing.assert_array_equal(small.infer(1)[:, 1], 2)
        np.testing.assert_array_equal(large.infer(1)[:, 1], 4)
        small.submit(1)  # holds the region until wait()
        with pytest.raises(Exception, match="must not run at the same time"):
            large.submit(1)
        small.wait()
    assert arena.memory is None  # freed when the last user closed


def test_execution_failure_names_engine_and_tensors(tmp_path):
    engine = write_engine(tmp_path / "bad.engine", fail_execution=True)
    with pytest.raises(ModelError) as info:
        backend_for(engine, HostPool(emulate="pinned")).open()
    text = str(info.value)
    assert "bad.engine" in text and "'image'" in text and "logits" in text and "execution failed" in text


def test_foreign_engine_file_is_refused_with_the_tensorrt_log(tmp_path):
    engine = tmp_path / "old.engine"
    engine.write_bytes(b"\x00\x01 not a plan")
    with pytest.raises(ModelError, match="not compatible.*rebuild|rebuild"):
        backend_for(engine, HostPool(emulate="pinned")).open()


def test_batch_outside_the_profile_is_refused_before_buffers_exist(tmp_path):
    pool = HostPool(emulate="pinned")
    with pytest.raises(ModelError, match="max_batch is 8"):
        backend_for(write_engine(tmp_path / "m.engine", max_batch=4), pool, max_batch=8).open()
    assert pool.stats.host_allocations == 0


def test_exact_scratch_is_admitted_again_after_deserializing(tmp_path):
    engine = write_engine(tmp_path / "m.engine", scratch=300 * 2**20)
    backend = backend_for(engine, HostPool(emulate="pinned"))
    backend.budget = MemoryBudget(limit_mb=200, margin_mb=0, available=lambda: 2**40)
    backend.budget.admit(backend.memory_plan())  # scratch not known before loading: fits
    with pytest.raises(BudgetExceeded, match="context scratch +300.0 MB"):
        backend.open()
    assert backend.pool.stats.host_allocations == 0 and backend.pool.stats.device_allocations == 0


def test_manifest_scratch_is_counted_before_loading(tmp_path):
    engine = write_engine(tmp_path / "m.engine")
    (tmp_path / "m.engine.json").write_text('{"build": {"device_memory_bytes": 104857600}}')  # cache manifest
    plan = backend_for(engine, HostPool(emulate="pinned")).memory_plan()
    assert {t.name: t.nbytes for t in plan.terms}["context scratch"] == 100 * 2**20


def test_missing_tensorrt_is_reported_as_unavailable(tmp_path, monkeypatch):
    import sys

    from edge_agent.errors import BackendUnavailable

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match="python3-libnvinfer"):
        backend_for(write_engine(tmp_path / "m.engine"), HostPool(emulate="pinned")).open()


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106"])
def test_the_fake_offers_nothing_the_real_bindings_lack(version):
    """Every public member of the fake's engine and context exists in the recorded real surface of
    the version it imitates (tests/engine/trt_surface_snapshot.json, from the real bindings)."""
    import json
    from pathlib import Path

    from fake_tensorrt import make_fake_tensorrt

    snapshot = json.loads((Path(__file__).resolve().parents[1] / "engine" / "trt_surface_snapshot.json").read_text())
    surface = snapshot[version]
    fake = make_fake_tensorrt(version)
    generation = "10" if hasattr(fake, "ExecutionContextAllocationStrategy") else "8"
    offered = ["{}.{}".format(cls, member) for cls in ("ICudaEngine", "IExecutionContext")
               for member in dir(getattr(fake, cls)) if not member.startswith("_")]
    offered += ["ExecutionContextAllocationStrategy.USER_MANAGED"] if generation == "10" else []
    undeclared = [name for name in offered if name not in surface]
    lacking = [name for name in offered if name in surface and not surface[name]["exists"]]
    assert undeclared == [] and lacking == [], (undeclared, lacking)


def test_an_engine_built_for_a_dla_core_is_loaded_onto_that_core(tmp_path):
    engine = write_engine(tmp_path / "m.engine", min_batch=4, max_batch=4)  # DLA: a static profile
    (tmp_path / "m.engine.json").write_text('{"build": {"dla_core": 1, "device_memory_bytes": 4096}}')
    with backend_for(engine, HostPool(emulate="pinned")) as backend:
        assert backend._engine.loaded_on_dla_core == 1
        for n in (1, 3, 4):  # smaller batches run padded to the static batch of 4
            backend.input_buffer[:n] = n
            out = backend.infer(n)
            assert out.shape[0] == n
            np.testing.assert_array_equal(out[:, 1], 2 * n)
        assert backend._context.input_shape[0] == 4


def test_an_engine_without_dla_is_loaded_with_the_default_core(tmp_path):
    with backend_for(write_engine(tmp_path / "m.engine"), HostPool(emulate="pinned")) as backend:
        assert backend._engine.loaded_on_dla_core == -1
