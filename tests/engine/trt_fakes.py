"""A fake `tensorrt` module per supported version, generated from the recorded real surface.

Behaviour lives in the `_*` classes below. `make_fake(version)` keeps only the members that the
real bindings of that version have (tests/engine/trt_surface_snapshot.json, checked against the
real wheels by test_trt_conformance.py) and refuses a behaviour member that is not declared in
edge_agent/engine/trt_surface.py or whose parameters differ from the real signature: a fake can
never offer what TensorRT lacks.
"""

import inspect
import json
import os
import types

from trt_introspect import SNAPSHOT

from edge_agent.engine.trt_surface import NAMES


class _Enum:
    pass


class _Severity(_Enum):
    INTERNAL_ERROR, ERROR, WARNING, INFO = 0, 1, 2, 3


class _ILogger:
    Severity = _Severity

    def __init__(self):
        pass

    def log(self, severity, msg):
        pass


class _NetworkDefinitionCreationFlag(_Enum):
    EXPLICIT_BATCH, STRONGLY_TYPED = 0, 5


class _BuilderFlag(_Enum):
    FP16, INT8, GPU_FALLBACK = 0, 1, 2


class _MemoryPoolType(_Enum):
    WORKSPACE = 0


class _DeviceType(_Enum):
    DLA = 1


class _ITensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class _ILayer:
    def __init__(self, name):
        self.name = name


class _INetworkDefinition:
    def __init__(self, flags):
        self.flags = flags
        self.inputs = []
        self.layers = []

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, index):
        return self.inputs[index]

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, index):
        return self.layers[index]


class _ParserError:
    def __init__(self, node, text):
        self._node, self._text = node, text

    def desc(self):
        return self._text

    def node(self):
        return self._node

    def node_name(self):
        return "fake-node-name"

    def node_operator(self):
        return "FakeOp"


class _OnnxParser:
    fail_at_node = None  # tests set a node index to make parsing fail there

    def __init__(self, network, logger):
        self.network = network
        self.errors = []

    def parse(self, model, path=None):
        if _OnnxParser.fail_at_node is not None:
            self.errors.append(self._fake.ParserError(_OnnxParser.fail_at_node, "no importer registered for this op"))
            return False
        self.network.inputs.append(self._fake.ITensor("image", (-1, 3, 32, 32)))
        self.network.layers.extend(self._fake.ILayer(name) for name in ("conv_0", "relu_1", "resize_2", "conv_3"))
        return True

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, index):
        return self.errors[index]


class _ITimingCache:
    def __init__(self, data):
        self.data = data

    def serialize(self):
        return self.data + b"+timing"


class _IOptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, input, min, opt, max):  # noqa: A002 -- the real parameter names
        self.shapes[input] = (min, opt, max)


class _IBuilderConfig:
    # class level, like the real properties, so that hasattr(trt.IBuilderConfig, ...) probes work
    builder_optimization_level = 3
    default_device_type = None
    DLA_core = -1
    int8_calibrator = None
    progress_monitor = None

    def __init__(self):
        self.flags, self.pools, self.profiles = set(), {}, []
        self.timing_cache = None

    def set_memory_pool_limit(self, pool, pool_size):
        self.pools[pool] = pool_size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def set_flag(self, flag):
        self.flags.add(flag)

    def can_run_on_DLA(self, layer):  # noqa: N802 -- the real name
        return not layer.name.startswith("resize")  # the fake DLA has no Resize

    def create_timing_cache(self, serialized_timing_cache):
        return self._fake.ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.ignore_mismatch = ignore_mismatch
        if cache.data.startswith(b"OTHER-GPU") and not ignore_mismatch:
            return False  # the real one refuses a cache made on other hardware unless told to ignore that
        self.timing_cache = cache
        return True


class _Builder:
    dla_cores = 0
    last = None  # the (network, config) of the last build, for assertions

    def __init__(self, logger):
        self.logger = logger

    @property
    def num_DLA_cores(self):
        return _Builder.dla_cores

    def create_network(self, flags):
        return self._fake.INetworkDefinition(flags)

    def create_builder_config(self):
        return self._fake.IBuilderConfig()

    def create_optimization_profile(self):
        return self._fake.IOptimizationProfile()

    def build_serialized_network(self, network, config):
        _Builder.last = (network, config)
        # hooks for build-child tests (the child is a spawned process: it sees the environment only)
        int8 = getattr(self._fake.BuilderFlag, "INT8", None) in config.flags  # no INT8 flag on 11.x
        if os.environ.get("FAKE_TRT_BUILD_LOG"):
            with open(os.environ["FAKE_TRT_BUILD_LOG"], "a") as log:
                log.write("int8\n" if int8 else "fp16\n" if config.flags else "fp32\n")
        failure = os.environ.get("FAKE_TRT_FAIL_INT8") if int8 else None
        if os.environ.get("FAKE_TRT_FAIL_ALL"):
            failure = "Requested amount of GPU memory (1073741824 bytes) could not be allocated."
        if failure:
            self.logger.log(self._fake.ILogger.Severity.ERROR, failure)
            return None  # what the real builder returns when calibration, memory or every tactic fails
        if getattr(config, "progress_monitor", None) is not None:  # absent before 10.0
            config.progress_monitor.phase_start("Building engine", None, 2)
            for step in range(2):
                config.progress_monitor.step_complete("Building engine", step)
            config.progress_monitor.phase_finish("Building engine")
        return b"PLAN" + bytes(str(sorted(config.flags)), "ascii")


class _ICudaEngine:
    device_memory_size = 1 << 20
    device_memory_size_v2 = 1 << 20


class _Runtime:
    DLA_core = -1

    def __init__(self, logger):
        pass

    @property
    def num_DLA_cores(self):
        return _Builder.dla_cores

    def deserialize_cuda_engine(self, serialized_engine):
        return self._fake.ICudaEngine()


class _IProgressMonitor:
    def __init__(self):
        pass

    def phase_start(self, phase_name, parent_phase, num_steps):
        pass

    def step_complete(self, phase_name, step):
        return True

    def phase_finish(self, phase_name):
        pass


class _IInt8EntropyCalibrator2:
    def __init__(self):
        pass

    def get_batch_size(self):
        return 1

    def get_batch(self, names):
        return None

    def read_calibration_cache(self):
        return None

    def write_calibration_cache(self, cache):
        pass


_BEHAVIOUR = {cls.__name__[1:]: cls for cls in (
    _ILogger, _NetworkDefinitionCreationFlag, _BuilderFlag, _MemoryPoolType, _DeviceType, _ITensor, _ILayer,
    _INetworkDefinition, _ParserError, _OnnxParser, _ITimingCache, _IOptimizationProfile, _IBuilderConfig,
    _Builder, _ICudaEngine, _Runtime, _IProgressMonitor, _IInt8EntropyCalibrator2)}
_INTERNAL = {"Builder.dla_cores", "Builder.last", "OnnxParser.fail_at_node", "OnnxParser.errors",
             "INetworkDefinition.layers"}


def _refusing_setattr(class_name, real):
    """Like a pybind11 object: assigning a property this version lacks is an AttributeError (a plain
    Python object would silently grow the attribute and hide the bug)."""
    absent = frozenset(name.split(".", 1)[1] for name in NAMES
                       if name.startswith(class_name + ".") and name.count(".") == 1
                       and name in real and not real[name]["exists"])

    def __setattr__(self, attr, value):
        if attr in absent:
            raise AttributeError("'tensorrt.{}' object has no attribute '{}'".format(class_name, attr))
        object.__setattr__(self, attr, value)

    return __setattr__


def make_fake(version):
    real = json.loads(SNAPSHOT.read_text())[version]
    module = types.ModuleType("tensorrt_fake_" + version.replace(".", "_"))
    module.__version__ = version
    for class_name, behaviour in _BEHAVIOUR.items():
        if not real.get(class_name, {"exists": True})["exists"]:
            continue  # the class itself is absent in this version
        members = {}
        for attr, value in vars(behaviour).items():
            name = "{}.{}".format(class_name, attr)
            if attr.startswith("__") and attr != "__init__" or name in _INTERNAL or attr == "Severity":
                members[attr] = value
                continue
            if attr == "__init__":
                # a constructor the project calls is checked against the class's real signature
                name = class_name if class_name in NAMES and real.get(class_name, {}).get("signatures") else name
            elif name not in NAMES:
                raise AssertionError("fake {} is not in trt_surface.py: declare it or drop it".format(name))
            if name in real and not real[name]["exists"]:
                continue  # this version lacks it: so does the fake
            if name in real and real[name].get("signatures") and inspect.isfunction(value):
                params = list(inspect.signature(value).parameters)[1:]
                if not any([n for n, _ in sig] == params for sig in real[name]["signatures"]):
                    raise AssertionError("fake {}{} differs from the real {}".format(
                        name, params, real[name]["signatures"]))
            members[attr] = value
        members["_fake"] = module  # behaviours create objects of the filtered classes, never their own
        members["__setattr__"] = _refusing_setattr(class_name, real)
        setattr(module, class_name, type(class_name, (), members))
    module.ILogger.Severity = _Severity
    return module
