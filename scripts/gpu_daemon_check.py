#!/usr/bin/env python3
"""The daemon's shape on a real GPU: `edge-agent run`'s frame loop over the TensorRT backend and CudaPool.

TensorRT cannot be installed on the GPU test machines, so a stand-in `tensorrt` module takes its
place: its execution context launches a CUDA kernel (pycuda) that reads the bound input address
and writes the bound output address, as `execute_async_v3` would. Everything else is the product's
own code, arranged as the daemon arranges it:

- the backend (`TensorRTBackend`: ring of slots, I/O tensor API, scratch arena, events) and its
  `CudaPool` are opened on the main thread, as `open_backend` does;
- the real `Pipeline` (synthetic camera sources, preprocessing into the slot, batching, overlap,
  postprocessing) runs in its own thread named "frame-loop", as `edge-agent run` does;
- every batch's output is checked on the host against the kernel's formula applied to the input
  that was in that slot (bit-exact: the kernel uses round-to-nearest ops without contraction);
- both paths: pinned host + device buffers with async copies, and mapped zero-copy memory;
- afterwards: no allocation after warm-up, and no context left pushed on any thread.

It also records what the real driver says to a thread with no current context (the bug of
issue 9), so the fake pycuda of the CPU tests can be compared with it.

Usage: python scripts/gpu_daemon_check.py [--frames 2000] [--json out.json]. Exit 1 on any failure.
"""

import argparse
import json
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KERNEL = """
__global__ void stand_in_engine(const float *in, float *out, unsigned char *scratch, int per_image, int classes,
                                int batch)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)batch * classes * per_image;
    if (i >= total) return;
    int pixel = i % per_image;
    int c = (i / per_image) % classes;
    int b = i / ((long long)per_image * classes);
    float v = in[((long long)b * 3 + (c % 3)) * per_image + pixel];
    out[i] = __fadd_rn(__fmul_rn(v, (float)(c + 1)), 1.0f);
    if (i == 0) scratch[0] += 1;
}
"""
CLASSES = ["background", "scratch", "spot"]
SIZE = 256


def expected(inputs, classes):
    """The kernel's formula on the host, in float32 with the same rounding."""
    n = inputs.shape[0]
    out = np.empty((n, classes) + inputs.shape[2:], np.float32)
    for c in range(classes):
        out[:, c] = inputs[:, c % 3] * np.float32(c + 1) + np.float32(1.0)
    return out


def stand_in_tensorrt(kernel, streams):
    """A `tensorrt` module with the 10.x runtime API the backend uses; the engine is a kernel launch."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "stand-in (CUDA kernel)"

    class _Severity:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

    class ILogger:
        Severity = _Severity

        def __init__(self):
            pass

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class DataType:
        name = "FLOAT"

    class ExecutionContextAllocationStrategy:
        USER_MANAGED = "USER_MANAGED"

    class IExecutionContext:
        def __init__(self, engine):
            self.engine, self.addresses, self.shape, self.scratch = engine, {}, None, None

        def set_device_memory(self, memory, size):
            self.scratch = memory

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return True

        def set_tensor_address(self, name, memory):
            self.addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle):
            batch = self.shape[0]
            per_image = SIZE * SIZE
            total = batch * len(CLASSES) * per_image
            kernel(np.uintp(self.addresses["image"]), np.uintp(self.addresses["logits"]), np.uintp(self.scratch),
                   np.int32(per_image), np.int32(len(CLASSES)), np.int32(batch),
                   block=(256, 1, 1), grid=((total + 255) // 256, 1), stream=streams[stream_handle])
            return True

    class ICudaEngine:
        device_memory_size_v2 = 1 << 20
        num_io_tensors = 2

        def __init__(self, max_batch):
            self.max_batch = max_batch

        def get_tensor_name(self, index):
            return ("image", "logits")[index]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "image" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return DataType()

        def get_tensor_shape(self, name):
            return (-1, 3, SIZE, SIZE) if name == "image" else (-1, len(CLASSES), SIZE, SIZE)

        def get_tensor_profile_shape(self, name, profile_index):
            return (1, 3, SIZE, SIZE), (1, 3, SIZE, SIZE), (self.max_batch, 3, SIZE, SIZE)

        def create_execution_context(self, strategy):
            return IExecutionContext(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return ICudaEngine(json.loads(bytes(plan).decode())["max_batch"])

    for value in (ILogger, TensorIOMode, ExecutionContextAllocationStrategy, IExecutionContext, ICudaEngine, Runtime):
        setattr(trt, value.__name__, value)
    return trt


def unbound_thread_errors(cuda, stream, device_ptr, pinned):
    """What the real driver answers a thread on which no context was pushed (issue 9's bug): object
    creation, and calls on valid objects (copies, events, frees) made on the main thread."""
    seen = {}
    event = cuda.Event()  # made here, where the context is bound: used there
    spare = cuda.mem_alloc(64)

    def probe():
        for label, call in (("Event()", cuda.Event),
                            ("mem_alloc", lambda: cuda.mem_alloc(64)),
                            ("pagelocked_zeros", lambda: cuda.pagelocked_zeros((4,), np.float32)),
                            ("memcpy_htod_async", lambda: cuda.memcpy_htod_async(device_ptr, pinned, stream)),
                            ("memcpy_dtoh_async", lambda: cuda.memcpy_dtoh_async(pinned, device_ptr, stream)),
                            ("Event.record", lambda: event.record(stream)),
                            ("Event.synchronize", event.synchronize),
                            ("Stream.synchronize", stream.synchronize),
                            ("mem_get_info", cuda.mem_get_info),
                            ("DeviceAllocation.free", spare.free)):
            try:
                call()
                seen[label] = "no error"
            except Exception as exc:  # the exact type and text are what we record
                seen[label] = "{}: {}".format(type(exc).__name__, exc)

    worker = threading.Thread(target=probe, name="unbound")
    worker.start()
    worker.join()
    return seen


def run_path(mapped, frames, max_batch, slots, engine, streams):
    from edge_agent.backends.base import PreparedModel
    from edge_agent.backends.tensorrt import TensorRTBackend
    from edge_agent.budget import MemoryBudget
    from edge_agent.config_loader import load_config
    from edge_agent.cuda_pool import CudaPool
    from edge_agent.metrics import Registry
    from edge_agent.pipeline import Pipeline

    config = load_config(None, {
        "model": {"path": str(engine), "input": {"width": SIZE, "height": SIZE}, "output": {"classes": CLASSES}},
        "backend": {"type": "tensorrt"}, "pipeline": {"max_batch": max_batch, "max_wait_ms": 5},
        "memory": {"slots": slots},
        "sources": [{"type": "synthetic", "name": "cam{}".format(i), "width": 320, "height": 240, "seed": i}
                    for i in range(4)]})
    pool = CudaPool(mapped=mapped)
    streams[pool.stream_handle] = pool.stream

    class CheckedBackend(TensorRTBackend):
        """Checks every batch's output against its slot's input on the host (the frame loop's thread)."""

        checked = 0
        wrong = []

        def _submit(self, n):
            # the expected output from the input as submitted: once submit returns, the frame loop may
            # refill that buffer (at once with one slot)
            self._want = expected(self.input_buffer[:n], len(CLASSES))
            return super()._submit(n)

        def _wait(self, n):
            index = self._inflight
            out = super()._wait(n)
            want = self._want
            if not np.array_equal(out, want):
                CheckedBackend.wrong.append("batch {} slot {}: {} values differ".format(
                    CheckedBackend.checked, index, int(np.count_nonzero(out != want))))
            CheckedBackend.checked += n
            return out

    backend = CheckedBackend(PreparedModel(engine, "fp16", engine), config.model, max_batch, config.backend, pool=pool)
    backend.slots = slots
    backend.budget = MemoryBudget(config.memory.limit_mb, config.memory.margin_mb)
    backend.budget.admit(backend.memory_plan())
    failures = []
    registry = Registry()
    backend.open()  # main thread, as open_backend does
    try:
        pipeline = Pipeline(config, backend, registry)
        pipeline.start()
        outcome = {}

        def frame_loop():
            try:
                outcome["frames"] = pipeline.run(threading.Event(), max_frames=frames)
            except Exception as exc:  # reported below
                outcome["error"] = "{}: {}".format(type(exc).__name__, exc)

        worker = threading.Thread(target=frame_loop, name="frame-loop")
        started = time.perf_counter()
        worker.start()
        worker.join()
        elapsed = time.perf_counter() - started
        pipeline.stop()
        if "error" in outcome:
            failures.append("{}: frame loop failed: {}".format(pool.kind, outcome["error"]))
        failures += ["{}: {}".format(pool.kind, w) for w in CheckedBackend.wrong[:5]]
        if pool.stats.after_seal:
            failures.append("{}: {} allocations after warm-up".format(pool.kind, pool.stats.after_seal))
        done = outcome.get("frames", 0)
        if done != frames or CheckedBackend.checked < frames:
            failures.append("{}: {} frames served, {} outputs checked, {} wanted".format(
                pool.kind, done, CheckedBackend.checked, frames))
        figures = {"path": pool.kind, "device": pool.name, "frames": done, "outputs_checked": CheckedBackend.checked,
                   "wrong_batches": len(CheckedBackend.wrong), "seconds": round(elapsed, 3),
                   "fps": round(done / elapsed, 1) if elapsed else None, "max_batch": max_batch, "slots": slots,
                   "batches": registry.counter_total("inference_batches"),
                   "allocations_after_warmup": pool.stats.after_seal,
                   "infer_ms_p50": _p50(registry, "stage_ms", stage="infer")}
    finally:
        backend.close()  # main thread again, as the daemon's teardown
        pool.close()
    if pool.cuda.Context.get_current() is not None:
        failures.append("{}: a context is still current on the main thread after close".format(pool.kind))
    return figures, failures


def _p50(registry, name, **labels):
    stats, _ = registry.histogram(name, **labels).stats_since(0)
    return round(stats.p50, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000, help="frames per path (2000)")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    import pycuda.driver as cuda
    from pycuda.compiler import SourceModule

    from edge_agent.cuda_pool import CudaPool

    streams = {}
    loader = CudaPool(mapped=False)
    with loader.bind_thread():  # the module is loaded in the primary context, used by every thread
        kernel = SourceModule(KERNEL).get_function("stand_in_engine")
    sys.modules["tensorrt"] = stand_in_tensorrt(kernel, streams)
    probe_device = loader.device(4 * 4)
    probe_host = loader.host((4,), np.float32)
    with loader.bind_thread():
        unbound = unbound_thread_errors(cuda, loader.stream, probe_device.ptr, probe_host)
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as folder:
        engine = Path(folder) / "stand-in.engine"
        engine.write_text(json.dumps({"max_batch": args.max_batch}))
        for mapped in (False, True):
            figures, problems = run_path(mapped, args.frames, args.max_batch, args.slots, engine, streams)
            rows.append(figures)
            failures += problems
    loader.free(probe_device)
    loader.close()
    print("device: {}".format(rows[0]["device"]))
    print("what the driver says to a thread with no context pushed:")
    for label, text in unbound.items():
        print("  {}: {}".format(label, text))
    print("\n| path | frames | outputs checked | wrong batches | fps | infer ms p50 | batches | max batch | slots "
          "| allocs after warm-up |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| {path} | {frames} | {outputs_checked} | {wrong_batches} | {fps} | {infer_ms_p50} | {batches} | "
              "{max_batch} | {slots} | {allocations_after_warmup} |".format(**r))
    print("\n{}".format("ALL CHECKS PASSED" if not failures else "FAILED:\n  " + "\n  ".join(failures)))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "unbound_thread": unbound, "failures": failures},
                                              indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
