"""A stand-in `tensorrt` module for tests on machines without TensorRT or a GPU.

`make_fake_tensorrt(version)` gives the fake of one supported version (8.5.2 ... 11.4): the API
era is read from that version's recorded real surface (tests/engine/trt_surface_snapshot.json,
checked against the real bindings by the conformance tests; 8.5.2 derived from 8.6.1): "10"
(USER_MANAGED + set_device_memory + device_memory_size_v2) or "8" (context without device memory +
`device_memory` attribute, `device_memory_size`). The fake is then checked against that surface:
it never offers a declared name that the version lacks. The "engine" is a JSON file; executing
it reads the input at its bound address and writes output[b, c] = input[b, 0] * (c + 1), so the
tests see real data move through the buffers. Memory is addressed by pointer, as on a GPU.
"""

import ctypes
import enum
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest


class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = _Severity

    def __init__(self):
        pass


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1


class ExecutionContextAllocationStrategy(enum.Enum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


def _array_at(address, shape, dtype=np.float32):
    count = int(np.prod(shape))
    raw = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


class _Context:
    def __init__(self, engine):
        self.engine = engine
        self.addresses = {}
        self.input_shape = None
        self.scratch = None
        self.executions = 0

    def set_input_shape(self, name, shape):
        spec = self.engine.spec
        if name != spec["input"] or not 1 <= shape[0] <= spec["max_batch"]:
            self.engine.logger.log(_Severity.ERROR, "bad shape {} for {}".format(shape, name))
            return False
        self.input_shape = tuple(shape)
        return True

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle):
        spec = self.engine.spec
        if self.engine.fail_execution or self.scratch is None or self.input_shape is None:
            self.engine.logger.log(_Severity.ERROR, "execution failed (scratch bound: {})".format(
                self.scratch is not None))
            return False
        batch = self.input_shape[0]
        image = _array_at(self.addresses[spec["input"]], self.input_shape)
        out_shape = (batch, spec["classes"]) + tuple(spec["shape"][1:])
        logits = _array_at(self.addresses[spec["output"]], out_shape)
        for c in range(spec["classes"]):
            logits[:, c] = image[:, 0] * (c + 1)
        _array_at(self.scratch[0], (1,), np.uint8)[0] = self.executions % 256  # scratch is really used
        self.executions += 1
        return True


class IExecutionContext(_Context):
    """TensorRT 10.1+: scratch memory given with set_device_memory."""

    def set_device_memory(self, address, size):
        self.scratch = (address, size)


class ICudaEngine:
    def __init__(self, spec, logger):
        self.spec = spec
        self.logger = logger
        self.fail_execution = spec.get("fail_execution", False)
        self.contexts = []

    @property
    def num_io_tensors(self):
        return 2

    def get_tensor_name(self, index):
        return (self.spec["input"], self.spec["output"])[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == self.spec["input"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_tensor_shape(self, name):
        if name == self.spec["input"]:
            return (-1,) + tuple(self.spec["shape"])
        return (-1, self.spec["classes"]) + tuple(self.spec["shape"][1:])

    def get_tensor_profile_shape(self, name, profile_index):
        dims = tuple(self.spec["shape"])
        return ((self.spec.get("min_batch", 1),) + dims, (1,) + dims, (self.spec["max_batch"],) + dims)

    def _context(self):
        context = IExecutionContext(self)
        self.contexts.append(context)
        return context


class Runtime:
    DLA_core = -1  # the real property: which DLA core deserialized engines run on

    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, plan):
        try:
            spec = json.loads(bytes(plan).decode("utf-8"))
        except ValueError:
            self.logger.log(_Severity.ERROR, "The engine plan file is not compatible with this version of TensorRT")
            return None
        engine = self.module.ICudaEngine(spec, self.logger)
        engine.loaded_on_dla_core = self.DLA_core
        return engine


SNAPSHOT = Path(__file__).resolve().parents[1] / "engine" / "trt_surface_snapshot.json"
VERSIONS = ("8.5.2", "8.6.1", "10.3.0", "11.4.0.106")  # both eras, JetPack 5's derived surface, the newest


def make_fake_tensorrt(version="10.3.0"):
    """A fresh module object shaped like TensorRT `version`, checked against its recorded surface."""
    real = json.loads(SNAPSHOT.read_text())[version]
    generation = "10" if real["ICudaEngine.device_memory_size_v2"]["exists"] else "8"
    module = _make_generation(generation)
    module.__version__ = version
    offered = [name for name, entry in real.items() if not entry["exists"] and _has(module, name)]
    if offered:
        raise AssertionError("fake TensorRT {} offers {}, which the real {} lacks".format(version, offered, version))
    return module


def _has(module, dotted):
    owner = module
    for part in dotted.split("."):
        if not hasattr(owner, part):
            return False
        owner = getattr(owner, part)
    return True


def _make_generation(generation):
    module = types.ModuleType("tensorrt")
    for name in ("ILogger", "TensorIOMode", "DataType"):
        setattr(module, name, globals()[name])

    if generation == "10":
        class Engine(ICudaEngine):
            @property
            def device_memory_size_v2(self):
                return self.spec["scratch"]

            def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC):
                if strategy is not ExecutionContextAllocationStrategy.USER_MANAGED:
                    raise AssertionError("the backend must ask for USER_MANAGED scratch memory")
                return self._context()

        module.ExecutionContextAllocationStrategy = ExecutionContextAllocationStrategy
        module.IExecutionContext = IExecutionContext
    else:
        class Context8(_Context):
            @property
            def device_memory(self):
                return self.scratch[0] if self.scratch else 0

            @device_memory.setter
            def device_memory(self, address):
                self.scratch = (address, self.engine.spec["scratch"])


        class Engine(ICudaEngine):
            @property
            def device_memory_size(self):
                return self.spec["scratch"]

            def create_execution_context_without_device_memory(self):
                context = Context8(self)
                self.contexts.append(context)
                return context

        module.IExecutionContext = Context8
    module.ICudaEngine = Engine

    class BoundRuntime(Runtime):
        pass

    BoundRuntime.module = module
    module.Runtime = BoundRuntime
    return module


def write_engine(path, input_name="image", output_name="logits", shape=(3, 8, 8), classes=2, max_batch=4,
                 scratch=4096, **extra):
    spec = dict(input=input_name, output=output_name, shape=list(shape), classes=classes, max_batch=max_batch,
                scratch=scratch, **extra)
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(params=VERSIONS)
def fake_trt(request, monkeypatch):
    """The fake TensorRT of one version, importable as `tensorrt` for the test's duration."""
    module = make_fake_tensorrt(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module
