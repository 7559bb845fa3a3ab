"""TensorRT 8.5.2 (JetPack 5.1.x) as a surface: the real 8.6.1 bindings minus what 8.6 added.

PyPI has no 8.5 bindings wheel (the oldest is tensorrt-bindings 8.6.1), so the 8.5.2 surface is
derived: every name below arrived in TensorRT 8.6 and is marked absent. Each entry cites where
NVIDIA says so. `test_trt_conformance.py` checks that each removed name really exists in the
8.6.1 bindings (else the list is wrong), and the derived surface feeds the same checks and fakes
as the real versions: a declared name that 8.6 added must be `probed`, or the build fails on
every JetPack 5 board (as `config.builder_optimization_level = ...` did).

Sources:
RN86 = TensorRT 8.6.0 Early Access release notes, "Key Features and Enhancements"
       (https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-861/release-notes/index.html,
       section "TensorRT 8.6.0 Early Access (EA)"; also RN-08624-001_v8.6.1 PDF section 1.2)
DG86 = TensorRT 8.6 Developer Guide
       (https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-861/developer-guide/index.html)
"""

RN86 = "TensorRT 8.6.0 EA release notes, Key Features and Enhancements"
DG86 = "TensorRT 8.6 Developer Guide"

ADDED_IN_8_6 = {
    "IBuilderConfig.builder_optimization_level":
        RN86 + ": builder optimization levels (IBuilderConfig::setBuilderOptimizationLevel)",
    "IBuilderConfig.hardware_compatibility_level":
        RN86 + ": hardware compatibility (IBuilderConfig::setHardwareCompatibilityLevel, Ampere+)",
    "HardwareCompatibilityLevel": RN86 + ": hardware compatibility, enum HardwareCompatibilityLevel",
    "ICudaEngine.hardware_compatibility_level": RN86 + ": hardware compatibility, ICudaEngine query",
    "BuilderFlag.VERSION_COMPATIBLE":
        RN86 + ": version compatibility (BuilderFlag::kVERSION_COMPATIBLE); DG86 'Version Compatibility': "
        "version compatibility is supported from 8.6 on",
    "BuilderFlag.EXCLUDE_LEAN_RUNTIME": RN86 + ": version compatibility, lean runtime excluded from the plan",
    "Runtime.engine_host_code_allowed": DG86 + ", 'Version Compatibility': IRuntime::setEngineHostCodeAllowed",
    "Runtime.load_runtime": DG86 + ", 'Version Compatibility': IRuntime::loadRuntime (lean runtime)",
    "Runtime.tempfile_control_flags": DG86 + ", 'Version Compatibility': TempfileControlFlag for the lean runtime",
    "Runtime.temporary_directory": DG86 + ", 'Version Compatibility': IRuntime::setTemporaryDirectory",
    "TempfileControlFlag": DG86 + ", 'Version Compatibility': enum TempfileControlFlag",
    "IBuilderConfig.plugins_to_serialize": RN86 + ": plugin shared libraries serialized into version-compatible plans",
    "IBuilderConfig.max_aux_streams": RN86 + ": multi-stream execution (IBuilderConfig::setMaxAuxStreams)",
    "ICudaEngine.num_aux_streams": RN86 + ": multi-stream execution (ICudaEngine::getNbAuxStreams)",
    "IExecutionContext.set_aux_streams": RN86 + ": multi-stream execution (IExecutionContext::setAuxStreams)",
    "PreviewFeature.PROFILE_SHARING_0806": RN86 + ": PreviewFeature::kPROFILE_SHARING_0806 (named for 8.6)",
    "DataType.FP8": RN86 + ": DataType::kFP8 added (reserved)",
}


def derive_852(surface_861):
    """The 8.5.2 surface from an 8.6.1 surface ({name: entry}): names 8.6 added become absent.

    Entries below a removed name (e.g. `HardwareCompatibilityLevel.AMPERE_PLUS`) go too."""
    derived = {}
    for name, entry in surface_861.items():
        removed = any(name == added or name.startswith(added + ".") for added in ADDED_IN_8_6)
        derived[name] = {"exists": False} if removed else dict(entry)
    return derived
