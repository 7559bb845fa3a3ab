"""The backend seam: the pipeline sees only this, never TensorRT or ONNX Runtime types.

A backend owns its input and output buffers. The pipeline preprocesses straight into
`input_buffer`, calls `infer(n)` and reads the first `n` rows of the returned output, which stays
valid until the next call. Public methods check state and arguments; subclasses implement `_open`,
`_infer` and `_close` only.

Overlap (a ring of `slots` buffer sets, TensorRT): `submit(n)` starts inference on the current
`input_buffer` and moves `input_buffer` to the next slot, so the caller can preprocess the next
batch while the GPU works; `wait()` returns that batch's outputs. `infer(n)` is submit + wait.
Backends without a ring (ONNX Runtime) run synchronously inside `submit`.

Memory: `memory_plan()` says what `open()` will allocate, term by term, before anything is loaded;
`edge_agent.agent.open_backend` admits it against the budget first (`edge_agent.budget`).
"""

import abc
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from edge_agent.budget import MemoryBudget, MemoryPlan, MemoryTerm
from edge_agent.buffers import BufferPool
from edge_agent.errors import EdgeAgentError

if TYPE_CHECKING:  # config imports the backends' config models, so only for type checkers here
    from edge_agent.config import ModelConfig


class PreparedModel(NamedTuple):
    """What a backend loads: the artefact (ONNX or engine) and how it was derived."""

    path: Path
    precision: str
    source: Path
    fingerprint: Optional[str] = None
    # precisions tried first and passed over: ({"precision", "reason"}, ...) from the preparation chain
    fallbacks: Tuple[Dict[str, Any], ...] = ()


class TensorSpec(NamedTuple):
    name: str
    shape: Tuple[int, ...]  # with the batch dimension at max_batch
    dtype: np.dtype


class MemoryUsage(NamedTuple):
    host_bytes: int
    device_bytes: int

    @property
    def total_mb(self) -> float:
        return (self.host_bytes + self.device_bytes) / 2**20


class Backend(abc.ABC):
    name = "base"

    def __init__(self, model: PreparedModel, model_config: "ModelConfig", max_batch: int) -> None:
        self.model = model
        self.model_config = model_config
        self.max_batch = max_batch
        self.input_spec: Optional[TensorSpec] = None
        self.output_spec: Optional[TensorSpec] = None
        self.input_buffer: Optional[np.ndarray] = None
        self.slots = 1  # buffer sets in the ring; the agent sets memory.slots before open()
        # True when `submit` returns before the batch is done and the previous batch's outputs stay
        # valid across the next submit (a ring of >= 2 slots): the pipeline then overlaps batches
        self.overlaps = False
        # monotonic time the last submitted batch ended, where the backend knows it (a worker thread
        # records it); the frame loop times its asks by it (batch_timing.py)
        self.finished_at: Optional[float] = None
        self.budget: Optional[MemoryBudget] = None  # set by the agent: backends may refine their plan
        self.pool: Optional[BufferPool] = None  # the backend's buffer layer, sealed after warm-up
        self._pending: Optional[int] = None
        self._pending_output: Optional[np.ndarray] = None

    def open(self) -> "Backend":
        """Load the model, allocate every buffer once and run one warm-up inference."""
        self._open()
        if self.input_buffer is None or self.input_spec is None or self.output_spec is None:
            raise EdgeAgentError("backend {} did not set up its buffers".format(self.name))
        self.input_buffer[...] = 0
        with self.bind_thread():
            self.infer(self.max_batch)
        if self.pool is not None:
            self.pool.seal()  # every buffer exists now; any later allocation is counted as a leak
        return self

    def infer(self, n: int) -> np.ndarray:
        """Run the model on input_buffer[:n]; returns the output rows [:n] (a view, reused next call)."""
        self.submit(n)
        return self.wait()

    def submit(self, n: int) -> None:
        """Start inference on input_buffer[:n]; afterwards input_buffer may be another slot's."""
        if self.input_buffer is None:
            raise EdgeAgentError("backend {} is not open".format(self.name))
        if not 1 <= n <= self.max_batch:
            raise ValueError("batch size {} outside 1..{}".format(n, self.max_batch))
        if self._pending is not None:
            raise EdgeAgentError("backend {}: wait() for the submitted batch before submitting another".format(
                self.name))
        self._pending = n
        self._pending_output = self._submit(n)

    def wait(self) -> np.ndarray:
        """The output rows [:n] of the submitted batch (valid until the slot comes round again)."""
        if self._pending is None:
            raise EdgeAgentError("backend {}: wait() without a submitted batch".format(self.name))
        n, self._pending = self._pending, None
        return self._wait(n) if self._pending_output is None else self._pending_output

    def bind_thread(self) -> ContextManager[None]:
        """Bind the backend's device to the calling thread for a loop over it (see BufferPool.bind_thread);
        every thread that runs inference (frame loop, gate, self-test) wraps its loop in this."""
        return self.pool.bind_thread() if self.pool is not None else contextlib.nullcontext()

    def memory_plan(self) -> MemoryPlan:
        """What open() will allocate, before it allocates: the model file and I/O buffers by default."""
        terms: List[MemoryTerm] = [
            MemoryTerm("model file", self.model.path.stat().st_size if self.model.path.exists() else 0, "host",
                       key="model"),
            MemoryTerm("I/O buffers", self.io_bytes_estimate(), "host", scales_with_batch=True, key="io"),
        ]
        return MemoryPlan(self.name, self.model.precision, terms, unified=True, max_batch=self.max_batch)

    def io_bytes_estimate(self) -> int:
        """One slot's float32 input and output at max batch, from the config, before the model is read
        (the output is assumed to have the input's spatial size, one channel per class)."""
        spec = self.model_config.input
        channels = spec.channels + len(self.model_config.output.classes)
        return self.max_batch * channels * spec.height * spec.width * 4

    def close(self) -> None:
        if self.input_buffer is not None:
            self._pending = None
            self._close()
            self.input_buffer = None

    @abc.abstractmethod
    def memory(self) -> MemoryUsage:
        """Bytes this backend holds on the host and on the device."""

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, n: int) -> np.ndarray: ...

    def _submit(self, n: int) -> Optional[np.ndarray]:
        """Start inference; return the outputs if already done (synchronous backends)."""
        return self._infer(n)

    def _wait(self, n: int) -> np.ndarray:
        raise EdgeAgentError("backend {} submitted asynchronously but has no _wait".format(self.name))

    @abc.abstractmethod
    def _close(self) -> None: ...

    def __enter__(self) -> "Backend":
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
