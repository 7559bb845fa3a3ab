"""TensorRT backend: a serialized engine from the engine cache, run with the I/O tensor API.

- `tensorrt` is imported here only, lazily; every version difference is a capability probe
  (`hasattr`), never a version comparison, and a missing feature fails with its name and the
  installed version.
- Buffers come from `edge_agent.buffers`: a ring of `slots` I/O sets allocated once at load
  (mapped zero-copy memory on Jetson, pinned + device memory with async copies elsewhere), one
  CUDA stream, `execute_async_v3`.
- The execution context's scratch memory is a region of a `ScratchArena` the agent owns, so
  engines that never run at the same time share one allocation.
- Admission happens twice: before loading (engine size, I/O x slots, the scratch size if the
  engine's manifest records it) and again right after deserializing, with the exact scratch size,
  before the context and buffers exist.
"""

import json
import logging
from collections import deque
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edge_agent.backends.base import Backend, MemoryUsage, TensorSpec
from edge_agent.budget import MemoryPlan, MemoryTerm
from edge_agent.buffers import BufferPool, BufferRing, ScratchArena, TensorLayout
from edge_agent.cuda_pool import CudaPool
from edge_agent.errors import BackendUnavailable, ModelError

log = logging.getLogger(__name__)

TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(
            "TensorRT cannot be imported ({}). On a Jetson install JetPack's python3-libnvinfer and create the "
            "venv with --system-site-packages; elsewhere use backend.type: onnxruntime".format(exc)) from None
    return trt


def _missing(trt: Any, feature: str) -> BackendUnavailable:
    return BackendUnavailable("TensorRT {} has no {}; edge-agent needs TensorRT 8.5 or newer".format(
        getattr(trt, "__version__", "?"), feature))


def _make_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps the last warnings and errors, to quote them in our errors."""

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: deque = deque(maxlen=20)

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(msg)
                log.warning("TensorRT: %s", msg)

    return CapturingLogger()


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model: Any, model_config: Any, max_batch: int, config: Any,
                 pool: Optional[BufferPool] = None, scratch: Optional[ScratchArena] = None) -> None:
        super().__init__(model, model_config, max_batch)
        self.config = config
        self.pool = pool
        self.scratch = scratch
        self._owns_pool = pool is None
        self._id = "{}#{}".format(Path(model.path).name, id(self))
        self._trt: Any = None
        self._logger: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._ring: Optional[BufferRing] = None
        self._tensors: List[TensorLayout] = []
        self._scratch_bytes = 0
        self._engine_bytes = 0
        self._shapes: Dict[int, Tuple[int, ...]] = {}
        self._views: List[Dict[int, Dict[str, np.ndarray]]] = []
        self._events: List[Any] = []
        self._bound_slot = -1
        self._shape_batch = 0
        self._inflight = -1

    # --- memory admission -------------------------------------------------------------------

    def memory_plan(self) -> MemoryPlan:
        engine_bytes = Path(self.model.path).stat().st_size if Path(self.model.path).exists() else 0
        scratch = self._scratch_bytes or _manifest_scratch(Path(self.model.path))
        # exact once the engine is deserialized, estimated from the config before
        per_slot = sum(t.nbytes for t in self._tensors) if self._tensors else self.io_bytes_estimate()
        unified = TEGRA_RELEASE.exists() or bool(getattr(self.pool, "integrated", False))
        zero_copy = bool(getattr(self.pool, "zero_copy", unified))
        io_name = "I/O buffers x {} slots".format(self.slots)
        terms = [MemoryTerm("engine (weights)", engine_bytes, "device", key="engine")]
        terms.append(MemoryTerm("context scratch" if scratch else "context scratch (checked after load)",
                                scratch, "device", scales_with_batch=True, key="scratch"))
        if zero_copy:
            terms.append(MemoryTerm(io_name + " (mapped, zero-copy)", per_slot * self.slots, "host",
                                    scales_with_batch=True, scales_with_slots=True, key="io"))
        else:
            terms.append(MemoryTerm(io_name + " (device)", per_slot * self.slots, "device",
                                    scales_with_batch=True, scales_with_slots=True, key="io"))
            terms.append(MemoryTerm("host staging (pinned) x {} slots".format(self.slots), per_slot * self.slots,
                                    "host", scales_with_batch=True, scales_with_slots=True, key="staging"))
        return MemoryPlan(self.name, self.model.precision, terms, unified=unified, max_batch=self.max_batch,
                          slots=self.slots, already_held=self._engine_bytes)

    # --- load -------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._load()
        except BaseException:
            self._close()  # a refusal or error half-way must not leave GPU memory or a context behind
            raise

    def _load(self) -> None:
        trt = self._trt = import_tensorrt()
        if not hasattr(trt.IExecutionContext, "execute_async_v3"):
            raise _missing(trt, "IExecutionContext.execute_async_v3 (the I/O tensor API)")
        if self.pool is None:
            self.pool = CudaPool()
        if self.scratch is None:
            self.scratch = ScratchArena(self.pool)
        self._logger = _make_logger(trt)
        runtime = trt.Runtime(self._logger)
        dla_core = _manifest_build(Path(self.model.path)).get("dla_core")
        if isinstance(dla_core, int) and dla_core >= 0:
            runtime.DLA_core = dla_core  # an engine built for DLA core 1 must not be loaded onto core 0
        plan = Path(self.model.path).read_bytes()
        self._engine = runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise ModelError("TensorRT {} cannot load engine {}: {}. It was probably built by another TensorRT "
                             "version or for another GPU; delete it (or run edge-agent build) to rebuild.".format(
                                 trt.__version__, self.model.path, self._log_tail()))
        self._engine_bytes = len(plan)
        self._tensors = self._discover_tensors()
        self._scratch_bytes = _scratch_size(trt, self._engine)
        if self.budget is not None:
            self.budget.admit(self.memory_plan())  # exact scratch now known; nothing else allocated yet
        self._context = _create_context(trt, self._engine)
        self.scratch.reserve(self._id, self._scratch_bytes, self._bind_scratch)
        self._ring = BufferRing(self.pool, self._tensors, self.slots)
        self.overlaps = self.slots >= 2  # batch k's outputs survive while batch k+1 runs
        self._prepare_views()
        spec = next(t for t in self._tensors if t.is_input)
        out = self._output_tensor()
        self.input_spec = TensorSpec(spec.name, spec.shape, np.dtype(spec.dtype))
        self.output_spec = TensorSpec(out.name, out.shape, np.dtype(out.dtype))
        self.input_buffer = self._ring.current.host[spec.name]

    def _discover_tensors(self) -> List[TensorLayout]:
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ModelError("engine {} has inputs {}; edge-agent feeds exactly one image tensor".format(
                self.model.path.name, inputs))
        input_name = inputs[0]
        wanted = self.model_config.input.name
        if wanted and wanted != input_name:
            raise ModelError("model.input.name {!r} is not the input of engine {}; its input is {!r}".format(
                wanted, self.model.path.name, input_name))
        low, _, high = engine.get_tensor_profile_shape(input_name, 0)
        static = low[0] == high[0] == self.max_batch  # DLA: one batch size, smaller batches run padded
        if not static and (high[0] < self.max_batch or low[0] > 1):
            raise ModelError("engine {} accepts batches {}..{} of {!r} but pipeline.max_batch is {}; rebuild the "
                             "engine with a profile whose batch range covers 1..{}".format(
                                 self.model.path.name, low[0], high[0], input_name, self.max_batch, self.max_batch))
        dims = tuple(int(d) for d in high[1:])
        self._shapes = {n: (self.max_batch if static else n,) + dims for n in range(1, self.max_batch + 1)}
        tensors = [TensorLayout(input_name, (self.max_batch,) + dims, _nptype(trt, engine, input_name), True)]
        # Output shapes at max batch: a throwaway context would allocate scratch, so ask the engine for
        # the shape and resolve the batch dimension (-1) ourselves.
        for name in names:
            if name == input_name:
                continue
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            if any(d < 0 for d in shape[1:]):
                raise ModelError("output {!r} of engine {} has dynamic dimensions {} besides the batch; edge-agent "
                                 "needs fixed output sizes".format(name, self.model.path.name, shape))
            tensors.append(TensorLayout(name, (self.max_batch,) + shape[1:], _nptype(trt, engine, name), False))
        out_name = self.model_config.output.name
        if out_name and out_name not in names:
            raise ModelError("model.output.name {!r} is not an output of engine {}; its outputs are {}".format(
                out_name, self.model.path.name, [n for n in names if n != input_name]))
        return tensors

    def _output_tensor(self) -> TensorLayout:
        outputs = [t for t in self._tensors if not t.is_input]
        wanted = self.model_config.output.name
        return next(t for t in outputs if t.name == wanted) if wanted else outputs[0]

    def _prepare_views(self) -> None:
        """Every view the frame loop will touch, made once: slicing per frame would allocate."""
        self._views = []
        self._events = []
        for slot in self._ring.slots:
            self._views.append({n: {t.name: slot.host[t.name][:n] for t in self._tensors}
                                for n in range(1, self.max_batch + 1)})
            self._events.append(self.pool.event())

    def _bind_scratch(self, ptr: int, size: int) -> None:
        if hasattr(self._context, "set_device_memory"):  # TensorRT 10.1+
            self._context.set_device_memory(ptr, size)
        else:
            self._context.device_memory = ptr

    # --- frame loop -------------------------------------------------------------------------

    def _infer(self, n: int) -> np.ndarray:
        self._submit(n)
        return self._wait(n)

    def _submit(self, n: int) -> None:
        ring, pool, context = self._ring, self.pool, self._context
        slot = ring.current
        views = self._views[slot.index][n]
        input_name = self.input_spec.name
        self.scratch.acquire(self._id)
        if self._shape_batch != n:
            if not context.set_input_shape(input_name, self._shapes[n]):
                raise ModelError("TensorRT rejected input shape {} for {!r} of engine {}: {}".format(
                    self._shapes[n], input_name, self.model.path.name, self._log_tail()))
            self._shape_batch = n
        if self._bound_slot != slot.index:
            for tensor in self._tensors:
                context.set_tensor_address(tensor.name, slot.address[tensor.name])
            self._bound_slot = slot.index
        if not pool.zero_copy:
            pool.to_device(slot.address[input_name], views[input_name])
        if not context.execute_async_v3(pool.stream_handle):
            self.scratch.release(self._id)
            raise ModelError("TensorRT execute_async_v3 failed for engine {} (input {!r} shape {}, outputs {}): "
                             "{}".format(self.model.path.name, input_name, self._shapes[n],
                                         [t.name for t in self._tensors if not t.is_input], self._log_tail()))
        if not pool.zero_copy:
            for tensor in self._tensors:
                if not tensor.is_input:
                    pool.to_host(views[tensor.name], slot.address[tensor.name])
        self._events[slot.index].record()
        if len(ring.slots) == 1:
            # One slot: the next input_buffer is this batch's own input, which the frame loop fills
            # as soon as submit returns; the GPU must be done with it (copy, or mapped read) first.
            self._events[slot.index].synchronize()
        self._inflight = slot.index
        self.input_buffer = ring.advance().host[input_name]

    def _wait(self, n: int) -> np.ndarray:
        index = self._inflight
        self._events[index].synchronize()
        self.scratch.release(self._id)
        return self._views[index][n][self.output_spec.name]

    def _close(self) -> None:
        if self.pool is None:
            self._context = None
            self._engine = None
            return
        with self.pool.bind_thread():  # close() may run on another thread than the frame loop
            if self._inflight >= 0:
                self._events[self._inflight].synchronize()
            self._events = []
            if self._ring is not None:
                self._ring.close()
                self._ring = None
            if self.scratch is not None:
                self.scratch.drop(self._id)
            self._context = None  # TensorRT frees a context when its last reference goes
            self._engine = None
        if self._owns_pool:
            self.pool.close()
            self.pool = None

    def memory(self) -> MemoryUsage:
        ring = self._ring
        host = ring.host_bytes if ring is not None else 0
        device = (ring.device_bytes if ring is not None else 0) + self._engine_bytes + self._scratch_bytes
        return MemoryUsage(host_bytes=host, device_bytes=device)

    def _log_tail(self) -> str:
        messages = list(self._logger.messages) if self._logger is not None else []
        return " | ".join(messages[-3:]) if messages else "TensorRT logged nothing"


def _scratch_size(trt: Any, engine: Any) -> int:
    if hasattr(engine, "device_memory_size_v2"):  # 10.1+; the old property is gone in 11
        return int(engine.device_memory_size_v2)
    if hasattr(engine, "device_memory_size"):
        return int(engine.device_memory_size)
    raise _missing(trt, "ICudaEngine.device_memory_size(_v2)")


def _create_context(trt: Any, engine: Any) -> Any:
    """A context without its own scratch memory: the agent's arena provides it."""
    strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
    if strategy is not None and hasattr(trt.IExecutionContext, "set_device_memory"):
        context = engine.create_execution_context(strategy.USER_MANAGED)
    elif hasattr(engine, "create_execution_context_without_device_memory"):
        context = engine.create_execution_context_without_device_memory()
    else:
        raise _missing(trt, "a way to create an execution context on user-managed memory")
    if context is None:
        raise ModelError("TensorRT could not create an execution context (out of memory?)")
    return context


# DataType member name -> numpy type. By name, because trt.nptype's binding has no signature that the
# conformance tests can check, and the enum's integer values are not stable across versions.
_NUMPY_TYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
                "UINT8": "uint8", "BOOL": "bool"}


def _nptype(trt: Any, engine: Any, name: str) -> np.dtype:
    data_type = engine.get_tensor_dtype(name)
    type_name = getattr(data_type, "name", str(data_type).split(".")[-1])
    if type_name not in _NUMPY_TYPES:
        raise ModelError("tensor {!r} has TensorRT type {}; edge-agent supports {}".format(
            name, type_name, ", ".join(sorted(_NUMPY_TYPES))))
    return np.dtype(_NUMPY_TYPES[type_name])


def _manifest_build(engine_path: Path) -> Dict[str, Any]:
    """What the engine builder recorded in the cache manifest beside the engine (`<engine file>.json`,
    its "build" object: device_memory_bytes, dla_core, ...); {} when there is none."""
    manifest = engine_path.with_name(engine_path.name + ".json")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    build = data.get("build") if isinstance(data, dict) else None
    return build if isinstance(build, dict) else {}


def _manifest_scratch(engine_path: Path) -> int:
    """The scratch size recorded in the manifest (build.device_memory_bytes); 0 when there is none."""
    value = _manifest_build(engine_path).get("device_memory_bytes")
    return int(value) if isinstance(value, int) and value >= 0 else 0
