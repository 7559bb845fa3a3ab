"""TensorRT engine building: the one module of the engine package that imports `tensorrt`.

Differences between TensorRT 8.6, 10.x and 11.x are handled by probing for the feature (see
`trt_surface.py` for every name used); a missing feature is an EngineError naming it and the
installed version. `build_plan` runs in the build child process (edge_agent.engine.isolation).
"""

import gc
import importlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from edge_agent.errors import BackendUnavailable, EngineError

log = logging.getLogger(__name__)
Report = Callable[[str, Optional[float]], None]


def import_tensorrt(module: str = "tensorrt") -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(
            "TensorRT's Python module cannot be imported ({}). On a Jetson install python3-libnvinfer (JetPack) "
            "and create the virtual environment with --system-site-packages, or use backend.type: "
            "onnxruntime.".format(exc)) from None


def require(trt: Any, owner: Any, name: str, purpose: str) -> Any:
    """getattr that fails with the feature's name and the installed TensorRT version."""
    if not hasattr(owner, name):
        raise EngineError("{} needs TensorRT's {}.{}, which TensorRT {} does not have.".format(
            purpose, getattr(owner, "__name__", type(owner).__name__), name, trt.__version__))
    return getattr(owner, name)


class _Logger:
    """Factory for an ILogger subclass that keeps the errors for the exception message."""

    @staticmethod
    def create(trt: Any) -> Any:
        class CollectingLogger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: List[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    self.errors.append(msg)
                    log.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    log.warning("TensorRT: %s", msg)
                elif severity == trt.ILogger.Severity.INFO:
                    log.debug("TensorRT: %s", msg)

        return CollectingLogger()


def probe(module: str = "tensorrt") -> Dict[str, Any]:
    """What this TensorRT can do, asked once in the caller before the cache key is computed.

    Asked of a `Runtime`, never a `Builder`: this runs in the daemon at every start, cache hits
    included, and a Builder is what small boards can least afford there (builders are made only
    in the build child)."""
    trt = import_tensorrt(module)
    runtime = trt.Runtime(_Logger.create(trt))
    return {
        "version": trt.__version__,
        "dla_cores": int(runtime.num_DLA_cores),
        "precision_flags": hasattr(trt.BuilderFlag, "FP16"),
        "int8_flag": hasattr(trt.BuilderFlag, "INT8"),
        "implicit_calibrator": (hasattr(trt, "IInt8EntropyCalibrator2")
                                and hasattr(trt.IBuilderConfig, "int8_calibrator")),
    }


def _network_flags(trt: Any, strongly_typed: bool) -> int:
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if hasattr(creation, "EXPLICIT_BATCH"):  # required on 8.x, ignored on 10.x, gone on 11.x
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    if strongly_typed:
        flags |= 1 << int(require(trt, creation, "STRONGLY_TYPED", "a strongly typed network"))
    return flags


def _parse(trt: Any, parser: Any, onnx_path: Path, node_names: List[str], node_ops: List[str]) -> None:
    if parser.parse(onnx_path.read_bytes()):
        return
    problems = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        node = int(error.node())
        name = error.node_name() if hasattr(error, "node_name") else (
            node_names[node] if 0 <= node < len(node_names) else "?")
        op = error.node_operator() if hasattr(error, "node_operator") else (
            node_ops[node] if 0 <= node < len(node_ops) else "?")
        problems.append("node {!r} (operator {}): {}".format(name, op, error.desc()))
    raise EngineError("TensorRT {} cannot parse {}: {}. Re-export the model with operators TensorRT supports, "
                      "or use backend.type: onnxruntime.".format(trt.__version__, onnx_path.name, "; ".join(problems)))


def _progress_monitor(trt: Any, report: Report) -> Any:
    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: Dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            self.steps[phase_name] = max(1, int(num_steps))
            report("TensorRT build: {}".format(phase_name), None)

        def step_complete(self, phase_name: str, step: int) -> bool:
            report("TensorRT build: {} {}/{}".format(phase_name, step + 1, self.steps.get(phase_name, 1)),
                   (step + 1) / self.steps.get(phase_name, 1))
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)

    return Monitor()


def _calibrator(trt: Any, table: Path) -> Any:
    class TableCalibrator(trt.IInt8EntropyCalibrator2):
        """Serves an existing calibration table only: a site's DeepStream/trtexec cache."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: List[str]) -> Any:
            return None  # no images: TensorRT must take the ranges from the table

        def read_calibration_cache(self) -> bytes:
            return table.read_bytes()

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return TableCalibrator()


def build_plan(report: Report, module: str, onnx_path: str, output: str, precision: str, strongly_typed: bool,
               workspace_bytes: int, optimization_level: int, profile: Dict[str, List[List[int]]],
               dla_core: Optional[int], timing_cache: Optional[str], calibration_table: Optional[str],
               node_names: List[str], node_ops: List[str]) -> Dict[str, Any]:
    """Parse, configure and build; writes the plan to `output`. Runs in the build child process."""
    trt = import_tensorrt(module)
    logger = _Logger.create(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    report("TensorRT {}: parsing {}".format(trt.__version__, Path(onnx_path).name), None)
    _parse(trt, parser, Path(onnx_path), node_names, node_ops)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if hasattr(trt.IBuilderConfig, "builder_optimization_level"):  # 8.6+: absent on JetPack 5 (8.5.2)
        config.builder_optimization_level = optimization_level
    elif optimization_level != 3:
        log.warning("backend.optimization_level %d ignored: TensorRT %s has no builder optimization level "
                    "(added in 8.6); it builds at its fixed default", optimization_level, trt.__version__)
    optimization_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shapes = profile.get(tensor.name)
        if shapes is None:
            raise EngineError("no optimization profile for input {!r}; set model.input.name".format(tensor.name))
        optimization_profile.set_shape(tensor.name, *[tuple(s) for s in shapes])
    config.add_optimization_profile(optimization_profile)
    if calibration_table:  # checked first: its absence (TensorRT 11) is the actionable message
        require(trt, trt, "IInt8EntropyCalibrator2", "backend.calibration_cache (an existing calibration table)")
        require(trt, trt.IBuilderConfig, "int8_calibrator", "backend.calibration_cache")
    if not strongly_typed and precision in ("fp16", "int8"):
        config.set_flag(require(trt, trt.BuilderFlag, "FP16", "an FP16 engine without a strongly typed network"))
    if not strongly_typed and precision == "int8":
        config.set_flag(require(trt, trt.BuilderFlag, "INT8", "an INT8 engine without a strongly typed network"))
        if calibration_table:
            config.int8_calibrator = _calibrator(trt, Path(calibration_table))
    gpu_layers = None
    if dla_core is not None:
        if builder.num_DLA_cores > dla_core:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = dla_core
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
            gpu_layers = _layers_not_on_dla(network, config)
            log.info("DLA core %d: %d of %d layers cannot run on DLA and fall back to the GPU%s", dla_core,
                     len(gpu_layers), network.num_layers, ": " + ", ".join(gpu_layers[:10]) if gpu_layers else "")
        else:
            log.warning("backend.dla_core %d ignored: this device has %d DLA core(s); building for the GPU",
                        dla_core, builder.num_DLA_cores)
    cache = _timing_cache(trt, config, Path(timing_cache)) if timing_cache is not None else None
    if hasattr(trt, "IProgressMonitor") and hasattr(trt.IBuilderConfig, "progress_monitor"):
        config.progress_monitor = _progress_monitor(trt, report)
    report("TensorRT {}: building {} engine (this can take minutes)".format(trt.__version__, precision), None)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError("TensorRT {} could not build the engine: {}".format(
            trt.__version__, "; ".join(logger.errors) or "no error message (see the log above)"))
    data = bytes(plan)
    with open(output, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if cache is not None:
        _write_atomic(Path(timing_cache), bytes(cache.serialize()))
    on_dla = dla_core is not None and builder.num_DLA_cores > dla_core
    # Free the builder's side before the engine is deserialized to validate it: on a small board the
    # builder, network and parser (with the weights) plus the engine would be the build's peak.
    del plan, cache, parser, network, config, builder
    gc.collect()
    engine = trt.Runtime(logger).deserialize_cuda_engine(data)
    memory = None
    if engine is not None:
        memory = int(engine.device_memory_size_v2 if hasattr(engine, "device_memory_size_v2")
                     else engine.device_memory_size)
    del engine
    return {"device_memory_bytes": memory, "plan_bytes": len(data), "dla_core": dla_core if on_dla else None,
            "dla_gpu_fallback_layers": len(gpu_layers) if gpu_layers is not None else None,
            "peak_rss_bytes": _peak_rss_bytes()}


def _layers_not_on_dla(network: Any, config: Any) -> List[str]:
    """Names of the network's layers that DLA cannot run (GPU_FALLBACK puts them on the GPU)."""
    layers = [network.get_layer(index) for index in range(network.num_layers)]
    return [layer.name for layer in layers if not config.can_run_on_DLA(layer)]


def _timing_cache(trt: Any, config: Any, path: Path) -> Any:
    """The timing cache for this build, from `path` when TensorRT accepts it for this GPU and version.

    ignore_mismatch=False: a cache made on other hardware is refused, not silently used (its
    timings would pick tactics for the wrong GPU). A refused or damaged file is logged and a new
    cache starts; it replaces the file after the build."""
    existing = path.read_bytes() if path.exists() else b""
    cache = config.create_timing_cache(existing) if existing else None
    if cache is not None and config.set_timing_cache(cache, False):
        return cache
    if existing:
        log.warning("timing cache %s (%d bytes) was refused by TensorRT %s: it was made on other hardware or by "
                    "another version, or it is damaged; starting a new one, which replaces it after this build",
                    path, len(existing), trt.__version__)
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache


def _peak_rss_bytes() -> Optional[int]:
    """This build process's peak resident memory (host side; on Jetson the GPU shares that DRAM but
    its allocations are not counted in RSS)."""
    try:
        import resource
    except ImportError:  # not on Linux
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(".{}.tmp-{}".format(path.name, os.getpid()))
    with open(str(temp), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(str(temp), str(path))
