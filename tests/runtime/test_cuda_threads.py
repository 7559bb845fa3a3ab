"""CUDA contexts are per thread: the TensorRT backend opened on one thread serves on another.

The daemon opens the backend on its main thread (`open_backend`) and runs the frame loop on a
thread of its own. With the real driver a pycuda call on a thread where the context was never
made current fails (`LogicError: ... invalid device context`); fake_pycuda enforces the same, so
these tests fail when a thread touches CUDA without the pool binding the context there.
"""

import sys
import threading

import cv2
import numpy as np
import pytest
from fake_pycuda import LogicError, fake_pycuda, make_fake_pycuda  # noqa: F401  (fake_pycuda is a fixture)
from fake_tensorrt import make_fake_tensorrt, write_engine
from runtime_images import write_images

from edge_agent import agent
from edge_agent.backends.base import PreparedModel
from edge_agent.backends.tensorrt import TensorRTBackend
from edge_agent.config import InputConfig, ModelConfig, OutputConfig
from edge_agent.config_loader import load_config
from edge_agent.cuda_pool import CudaPool
from edge_agent.service import Daemon

from onnx_models import dark_spot_model

MODEL_CONFIG = ModelConfig(input=InputConfig(width=8, height=8), output=OutputConfig(classes=["background", "defect"]))


@pytest.fixture(params=["8.5.2", "10.3.0"])
def fake_trt(request, monkeypatch):
    module = make_fake_tensorrt(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


@pytest.fixture(params=["pinned", "mapped"])
def gpu(request, monkeypatch):
    """fake pycuda of a discrete GPU (pinned path) or an integrated one (mapped, zero-copy path)."""
    package, driver = make_fake_pycuda(integrated=request.param == "mapped")
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return driver


def test_the_fake_driver_refuses_a_thread_without_a_context(fake_pycuda):  # noqa: F811
    fake_pycuda.init()
    context = fake_pycuda.Device(0).retain_primary_context()
    context.push()
    stream = fake_pycuda.Stream()
    seen = []

    def other_thread():
        for call in (fake_pycuda.Event, lambda: fake_pycuda.memcpy_htod_async(0, np.zeros(1), stream)):
            try:
                call()
            except LogicError as exc:
                seen.append(str(exc))

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    fake_pycuda.Context.pop()
    assert seen == ["explicit_context_dependent failed: invalid device context - no currently active context?",
                    "cuMemcpyHtoDAsync failed: invalid device context"]
    with pytest.raises(LogicError, match="cannot pop non-current context"):
        fake_pycuda.Context.pop()


def test_a_thread_that_ends_with_a_pushed_context_is_reported(fake_pycuda):  # noqa: F811
    fake_pycuda.init()
    context = fake_pycuda.Device(0).retain_primary_context()
    worker = threading.Thread(target=context.push, name="forgot-to-pop")
    worker.start()
    worker.join()
    assert fake_pycuda.leaked_threads() == ["forgot-to-pop"]


def test_opened_on_one_thread_served_on_another(tmp_path, fake_trt, gpu):
    pool = CudaPool()
    assert pool.zero_copy == (pool.kind == "cuda-mapped")
    backend = TensorRTBackend(PreparedModel(write_engine(tmp_path / "m.engine"), "fp16", tmp_path / "m.engine"),
                              MODEL_CONFIG, 4, config=None, pool=pool)
    backend.slots = 2
    errors, checked = [], []

    def frame_loop():
        try:
            with backend.bind_thread():
                for frame in range(40):
                    n = frame % 4 + 1
                    backend.input_buffer[:n] = frame
                    out = backend.infer(n)
                    np.testing.assert_array_equal(out[:, 1], 2 * frame)
                    checked.append(frame)
            backend.input_buffer[:1] = 7  # unbound thread: each call binds the context for itself
            np.testing.assert_array_equal(backend.infer(1)[:, 0], 7)
        except Exception as exc:  # reported below, on the test's thread
            errors.append(exc)

    with backend:  # opened (and warmed up) on this thread
        worker = threading.Thread(target=frame_loop, name="frame-loop")
        worker.start()
        worker.join()
        assert errors == [] and len(checked) == 40
    pool.close()
    assert ("cuEventRecord", "frame-loop") in gpu._state.calls
    assert gpu.leaked_threads() == []
    assert gpu.Context.get_current() is None  # nothing left pushed on the test's thread either


def test_edge_agent_run_serves_frames_through_tensorrt_on_its_frame_loop_thread(
        tmp_path, fake_trt, gpu, monkeypatch):
    """`edge-agent run` (the Daemon) with backend.type tensorrt: main thread opens, frame-loop serves."""
    engine = write_engine(tmp_path / "m.engine", shape=(3, 16, 16), max_batch=2)
    monkeypatch.setattr(agent, "prepare_model", lambda config, progress=None: PreparedModel(
        engine, "fp16", engine, "fake-fingerprint"))
    folder = write_images(tmp_path / "images", cv2, count=9)
    frames = len(list(folder.iterdir()))
    model = dark_spot_model(tmp_path / "m.onnx", size=(16, 16))  # model.path is checked as ONNX at start
    config = load_config(None, {
        "model": {"path": str(model), "input": {"width": 16, "height": 16},
                  "output": {"classes": ["background", "defect"]}},
        "backend": {"type": "tensorrt"}, "pipeline": {"max_batch": 2},
        # the fake engine echoes its input, which the start's trial inference rightly reads as defects
        # covering every frame: that is a warning only with the sanity watch off
        "sanity": {"enabled": False},
        "sources": [{"type": "folder", "name": "line", "path": str(folder)}]})
    daemon = Daemon(config)
    assert daemon.run() == 0
    assert daemon.registry.counter_total("frames_processed") == frames
    assert daemon.registry.counter_total("inference_items") == frames
    assert ("cuEventRecord", "frame-loop") in gpu._state.calls
    assert gpu.leaked_threads() == []
    assert gpu.Context.get_current() is None


def test_a_reload_that_keeps_the_engine_serves_it_from_the_next_frame_loop_thread(
        tmp_path, fake_trt, gpu, monkeypatch):
    """A SIGHUP that only changes thresholds keeps the opened engine: the first frame-loop thread
    ends (its context popped), a new one binds the same engine and serves on."""
    import time

    import yaml

    engine = write_engine(tmp_path / "m.engine", shape=(3, 16, 16), max_batch=2)
    prepared = []
    monkeypatch.setattr(agent, "prepare_model", lambda config, progress=None: prepared.append(1) or PreparedModel(
        engine, "fp16", engine, "fake-fingerprint"))
    folder = write_images(tmp_path / "images", cv2, count=4)
    model = dark_spot_model(tmp_path / "m.onnx", size=(16, 16))
    data = {"model": {"path": str(model), "input": {"width": 16, "height": 16},
                      "output": {"classes": ["background", "defect"]}},
            "backend": {"type": "tensorrt"}, "pipeline": {"max_batch": 2}, "sanity": {"enabled": False},
            "sources": [{"type": "folder", "name": "line", "path": str(folder), "loop": True}]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    daemon = Daemon(load_config(str(path)), str(path))

    def wait_for_frames(count):
        deadline = time.monotonic() + 30
        while daemon.registry.counter_total("frames_processed") < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def operator():
        wait_for_frames(8)
        data["model"]["thresholds"] = {"min_area_px": 3}
        path.write_text(yaml.safe_dump(data))
        daemon.reload_requested.set()  # what the SIGHUP handler does
        daemon.wake.set()
        deadline = time.monotonic() + 30
        while daemon.config.model.thresholds.min_area_px != 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        wait_for_frames(daemon.registry.counter_total("frames_processed") + 8)
        daemon.stop_requested.set()
        daemon.wake.set()

    threading.Thread(target=operator, daemon=True).start()
    assert daemon.run() == 0
    assert daemon.config.model.thresholds.min_area_px == 3
    assert len(prepared) == 1  # the engine was loaded once, before the reload
    assert daemon.registry.counter_total("frames_processed") >= 16
    assert ("cuEventRecord", "frame-loop") in gpu._state.calls
    assert gpu.leaked_threads() == []
    assert gpu.Context.get_current() is None


def test_int8_and_fp16_engines_are_timed_on_the_same_batch(tmp_path, fake_trt, gpu):
    """engine/speed.py's timing opens both engines through the real backend (CudaPool on this thread)."""
    from edge_agent.engine.speed import time_engines

    first, second = write_engine(tmp_path / "int8.engine"), write_engine(tmp_path / "fp16.engine")
    model = dark_spot_model(tmp_path / "m.onnx", size=(8, 8))
    config = load_config(None, {"model": {"path": str(model), "input": {"width": 8, "height": 8},
                                          "output": {"classes": ["background", "defect"]}},
                                "backend": {"type": "tensorrt"}, "pipeline": {"max_batch": 4}})
    int8_ms, fp16_ms = time_engines(config, PreparedModel(first, "int8", first), PreparedModel(second, "fp16", second),
                                    rounds=2, batches=3)
    assert int8_ms > 0 and fp16_ms > 0
    assert gpu.leaked_threads() == [] and gpu.Context.get_current() is None
