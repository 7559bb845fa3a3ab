"""ONNX Runtime backend: CPU everywhere (and the fallback on a Jetson), I/O bound to reused arrays."""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_agent.backends.base import Backend, MemoryUsage, TensorSpec
from edge_agent.budget import MemoryPlan, MemoryTerm
from edge_agent.buffers import HostPool
from edge_agent.errors import BackendUnavailable, ModelError

Precision = Literal["fp32", "fp16", "int8"]


class OnnxRuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    type: Literal["onnxruntime"] = Field("onnxruntime", description="ONNX Runtime on the CPU: runs anywhere.")
    precision: Precision = Field("fp32", description="Numeric precision served: fp32, fp16 or int8.")
    threads: int = Field(0, ge=0, le=256, description="Intra-op threads; 0 uses every CPU core.")
    spin: bool = Field(
        False, description="Let idle ORT threads spin: lower latency, but steals CPU from capture and postprocessing."
    )


_ONNX_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: Any, model_config: Any, max_batch: int, config: OnnxRuntimeConfig) -> None:
        super().__init__(model, model_config, max_batch)
        self.config = config
        self._session: Any = None
        self._inputs: List[np.ndarray] = []
        self._outputs: List[np.ndarray] = []
        self._bindings: List[Dict[int, Any]] = []  # per slot, per batch size: made once, reused
        self._slot = 0
        self._worker: Optional[ThreadPoolExecutor] = None
        self._running: Any = None
        self.pool = HostPool()

    def _open(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("onnxruntime is not installed ({}); pip install onnxruntime".format(exc)) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.config.spin else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(self.model.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise ModelError(
                "cannot load model {}: {}. The file may be truncated or not an ONNX model; "
                "copy it again or point model.path at a valid file.".format(self.model.path, _first_line(exc))
            ) from None
        self._setup_buffers(ort)

    def _setup_buffers(self, ort: Any) -> None:
        spec = self.model_config.input
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if spec.name and spec.name not in inputs:
            raise ModelError("model.input.name {!r} is not an input of {}; its inputs are {}".format(
                spec.name, self.model.path.name, sorted(inputs)))
        in_meta = inputs[spec.name] if spec.name else self._session.get_inputs()[0]
        out_name = self.model_config.output.name
        if out_name and out_name not in outputs:
            raise ModelError("model.output.name {!r} is not an output of {}; its outputs are {}".format(
                out_name, self.model.path.name, sorted(outputs)))
        out_meta = outputs[out_name] if out_name else self._session.get_outputs()[0]
        dtype = _ONNX_TO_NUMPY.get(in_meta.type)
        if dtype is None:
            raise ModelError("input {!r} has type {}; edge-agent feeds float32 or float16".format(
                in_meta.name, in_meta.type))
        expected = (spec.channels, spec.height, spec.width) if spec.layout == "NCHW" else (
            spec.height, spec.width, spec.channels)
        _check_input_shape(in_meta.name, in_meta.shape, expected, spec.layout, self.max_batch)
        self.input_spec = TensorSpec(in_meta.name, (self.max_batch,) + expected, np.dtype(dtype))
        probe_input = np.zeros((1,) + expected, dtype=dtype)
        probe = self._session.run([out_meta.name], {in_meta.name: probe_input})[0]
        self.output_spec = TensorSpec(out_meta.name, (self.max_batch,) + probe.shape[1:], probe.dtype)
        for _ in range(max(1, self.slots)):
            inputs = self.pool.host(self.input_spec.shape, dtype)
            outputs = self.pool.host(self.output_spec.shape, probe.dtype)
            bindings = {}
            for n in range(1, self.max_batch + 1):
                binding = self._session.io_binding()
                binding.bind_ortvalue_input(in_meta.name, ort.OrtValue.ortvalue_from_numpy(inputs[:n]))
                binding.bind_ortvalue_output(out_meta.name, ort.OrtValue.ortvalue_from_numpy(outputs[:n]))
                bindings[n] = binding
            self._inputs.append(inputs)
            self._outputs.append(outputs)
            self._bindings.append(bindings)
        self.input_buffer = self._inputs[0]
        if len(self._inputs) > 1:
            # ORT releases the GIL while it runs: a worker thread lets the frame loop postprocess
            # batch k and preprocess batch k+2 while batch k+1 runs
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")
            self.overlaps = True

    def _infer(self, n: int) -> np.ndarray:
        self._session.run_with_iobinding(self._bindings[self._slot][n])
        return self._outputs[self._slot][:n]

    def _submit(self, n: int) -> Optional[np.ndarray]:
        if self._worker is None:
            return self._infer(n)
        future = self._worker.submit(self._run_timed, self._bindings[self._slot][n])
        self._running = (self._slot, future)
        self._slot = (self._slot + 1) % len(self._inputs)
        self.input_buffer = self._inputs[self._slot]
        return None

    def _run_timed(self, binding: Any) -> None:
        self._session.run_with_iobinding(binding)
        self.finished_at = time.monotonic()

    def _wait(self, n: int) -> np.ndarray:
        slot, future = self._running
        self._running = None
        future.result()
        return self._outputs[slot][:n]

    def _close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        self._bindings.clear()
        self._session = None

    def memory(self) -> MemoryUsage:
        buffers = sum(a.nbytes for a in self._inputs + self._outputs)
        weights = self.model.path.stat().st_size if self.model.path.exists() else 0
        return MemoryUsage(host_bytes=buffers + weights, device_bytes=0)


    def memory_plan(self) -> MemoryPlan:
        """Host memory only: the weights twice (ORT keeps the parsed model and its optimized copy while
        loading), the largest layer's activations at max batch, and the I/O buffers of every slot
        (two slots let the next batch run while the last one is postprocessed)."""
        plan = super().memory_plan()
        weights, io = plan.terms[0].nbytes, plan.terms[1].nbytes
        slots = max(1, self.slots)
        terms = [MemoryTerm("model weights", weights, "host", key="weights"),
                 MemoryTerm("ORT session copy of weights", weights, "host", key="session"),
                 MemoryTerm("activations (largest layer)", _activation_bytes(self.model.path, self.max_batch),
                            "host", scales_with_batch=True, key="activations"),
                 MemoryTerm("I/O buffers x {} slots".format(slots), io * slots, "host", scales_with_batch=True,
                            scales_with_slots=True, key="io")]
        return plan._replace(terms=terms)


def _activation_bytes(path: Any, batch: int) -> int:
    """Largest inputs+outputs of one node, from ONNX shape inference (symbolic batch = `batch`);
    0 when shapes cannot be inferred (the margin then has to cover it)."""
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False))
    except Exception:  # an unreadable model fails later with ModelError and a clearer message
        return 0
    graph = model.graph
    sizes: Dict[str, int] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor = info.type.tensor_type
        itemsize = 2 if tensor.elem_type == onnx.TensorProto.FLOAT16 else 4
        count = 1
        for dim in tensor.shape.dim:
            count *= dim.dim_value if dim.HasField("dim_value") else batch
        sizes[info.name] = count * itemsize
    weights = {init.name for init in graph.initializer}
    peak = 0
    for node in graph.node:
        names = [n for n in list(node.input) + list(node.output) if n and n not in weights]
        peak = max(peak, sum(sizes.get(n, 0) for n in names))
    return peak


def _check_input_shape(name: str, shape: Any, expected: Any, layout: str, max_batch: int) -> None:
    dims = list(shape)
    if len(dims) != 4:
        raise ModelError("input {!r} has shape {}; edge-agent needs a 4-D image batch ({})".format(
            name, dims, layout))
    batch = dims[0]
    if isinstance(batch, int) and batch != max_batch and not (batch == 1 and max_batch == 1):
        raise ModelError("input {!r} has a fixed batch of {}; set pipeline.max_batch: {} or export the model "
                         "with a dynamic batch dimension".format(name, batch, batch))
    for got, want, what in zip(dims[1:], expected, ("C", "H", "W") if layout == "NCHW" else ("H", "W", "C")):
        if isinstance(got, int) and got != want:
            raise ModelError(
                "input {!r} has shape {} but the config describes {} {}x{}x{} ({} differs); set model.input "
                "width/height/color/layout to match the model".format(name, dims, layout, *expected, what))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
