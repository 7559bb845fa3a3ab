"""Every `tensorrt` name the project uses: one declared surface, checked against the real bindings.

`tests/engine/test_trt_conformance.py` imports the real TensorRT Python bindings of each
supported version (PyPI wheels, stub NVIDIA libraries) and checks each entry: it exists with a
matching signature in every version, or it is marked `probed` and the code asks `hasattr` before
using it. TensorRT 8.5.2 (JetPack 5) has no bindings wheel: its surface is 8.6.1 minus what 8.6
added, each removal citing NVIDIA's release notes (tests/engine/trt_surface_852.py). An AST test
checks that every `trt.X` written in `edge_agent/` is declared here, and the builder's test fakes
are generated from this list and the recorded real surface, so no fake offers what TensorRT lacks.
Add a name here before using it (the runtime backend too).
"""

from typing import NamedTuple, Tuple

SUPPORTED_VERSIONS = ("8.5.2", "8.6.1", "10.3.0", "10.13.3.9", "10.16.1.11", "11.4.0.106")
# Versions with no bindings wheel on PyPI, checked against a surface derived from a real one:
# 8.5.2 (JetPack 5) = 8.6.1 minus what 8.6 added (tests/engine/trt_surface_852.py cites each removal).
DERIVED_VERSIONS = {"8.5.2": "8.6.1"}


class Use(NamedTuple):
    name: str  # dotted path below the module, e.g. "Builder.create_network"
    params: Tuple[str, ...] = ()  # positional arguments the project passes, in order (after self)
    probed: bool = False  # True: guarded by hasattr, absent in some supported version


SURFACE = (
    Use("__version__"),
    Use("ILogger"),
    Use("ILogger.__init__"),
    Use("ILogger.log", ("severity", "msg")),
    Use("ILogger.Severity.INTERNAL_ERROR"),
    Use("ILogger.Severity.ERROR"),
    Use("ILogger.Severity.WARNING"),
    Use("ILogger.Severity.INFO"),
    Use("Builder", ("logger",)),
    Use("Builder.create_network", ("flags",)),
    Use("Builder.create_builder_config"),
    Use("Builder.create_optimization_profile"),
    Use("Builder.build_serialized_network", ("network", "config")),
    Use("Builder.num_DLA_cores"),
    Use("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", probed=True),
    Use("NetworkDefinitionCreationFlag.STRONGLY_TYPED", probed=True),
    Use("INetworkDefinition.num_inputs"),
    Use("INetworkDefinition.get_input", ("index",)),
    Use("INetworkDefinition.num_layers"),
    Use("INetworkDefinition.get_layer", ("index",)),
    Use("ILayer.name"),
    Use("IBuilderConfig.can_run_on_DLA", ("layer",)),
    Use("ITensor.name"),
    Use("ITensor.shape"),
    Use("OnnxParser", ("network", "logger")),
    Use("OnnxParser.parse", ("model",)),
    Use("OnnxParser.num_errors"),
    Use("OnnxParser.get_error", ("index",)),
    Use("ParserError.desc"),
    Use("ParserError.node"),
    Use("ParserError.node_name", probed=True),
    Use("ParserError.node_operator", probed=True),
    Use("IBuilderConfig.set_memory_pool_limit", ("pool", "pool_size")),
    Use("IBuilderConfig.builder_optimization_level", probed=True),  # 8.6+
    Use("IBuilderConfig.add_optimization_profile", ("profile",)),
    Use("IBuilderConfig.set_flag", ("flag",)),
    Use("IBuilderConfig.default_device_type"),
    Use("IBuilderConfig.DLA_core"),
    Use("IBuilderConfig.create_timing_cache", ("serialized_timing_cache",)),
    Use("IBuilderConfig.set_timing_cache", ("cache", "ignore_mismatch")),
    Use("IBuilderConfig.int8_calibrator", probed=True),
    Use("IBuilderConfig.progress_monitor", probed=True),
    Use("ITimingCache.serialize"),
    Use("MemoryPoolType.WORKSPACE"),
    Use("BuilderFlag.FP16", probed=True),
    Use("BuilderFlag.INT8", probed=True),
    Use("BuilderFlag.GPU_FALLBACK"),
    Use("DeviceType.DLA"),
    Use("IOptimizationProfile.set_shape", ("input", "min", "opt", "max")),
    Use("IInt8EntropyCalibrator2", probed=True),
    Use("IInt8EntropyCalibrator2.__init__", probed=True),
    Use("IInt8EntropyCalibrator2.get_batch_size", probed=True),
    Use("IInt8EntropyCalibrator2.get_batch", ("names",), probed=True),
    Use("IInt8EntropyCalibrator2.read_calibration_cache", probed=True),
    Use("IInt8EntropyCalibrator2.write_calibration_cache", ("cache",), probed=True),
    Use("IProgressMonitor", probed=True),
    Use("IProgressMonitor.__init__", probed=True),
    Use("IProgressMonitor.phase_start", ("phase_name", "parent_phase", "num_steps"), probed=True),
    Use("IProgressMonitor.step_complete", ("phase_name", "step"), probed=True),
    Use("IProgressMonitor.phase_finish", ("phase_name",), probed=True),
    Use("Runtime", ("logger",)),
    Use("Runtime.num_DLA_cores"),
    Use("Runtime.DLA_core"),
    Use("Runtime.deserialize_cuda_engine", ("serialized_engine",)),
    Use("ICudaEngine.device_memory_size_v2", probed=True),
    Use("ICudaEngine.device_memory_size", probed=True),
    # runtime: edge_agent/backends/tensorrt.py
    Use("TensorIOMode.INPUT"),
    Use("ICudaEngine.num_io_tensors"),
    Use("ICudaEngine.get_tensor_name", ("index",)),
    Use("ICudaEngine.get_tensor_mode", ("name",)),
    Use("ICudaEngine.get_tensor_dtype", ("name",)),
    Use("ICudaEngine.get_tensor_shape", ("name",)),
    Use("ICudaEngine.get_tensor_profile_shape", ("name", "profile_index")),
    # called as create_execution_context(USER_MANAGED) only where the strategy enum exists (10+);
    # 8.x's takes no argument, so no parameter is declared here
    Use("ICudaEngine.create_execution_context"),
    Use("ICudaEngine.create_execution_context_without_device_memory", probed=True),
    Use("ExecutionContextAllocationStrategy.USER_MANAGED", probed=True),
    Use("IExecutionContext.set_device_memory", ("memory", "size"), probed=True),
    Use("IExecutionContext.device_memory", probed=True),
    Use("IExecutionContext.set_input_shape", ("name", "shape")),
    Use("IExecutionContext.set_tensor_address", ("name", "memory")),
    Use("IExecutionContext.execute_async_v3", ("stream_handle",)),
)

NAMES = frozenset(use.name for use in SURFACE)
