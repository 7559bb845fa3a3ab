"""The backend seam: the pipeline sees only this, never TensorRT or ONNX Runtime types.

A backend owns its input and output buffers. The pipeline preprocesses straight into
`input_buffer`, calls `infer(n)` and reads the first `n` rows of the returned output, which stays
valid until the next call. Public methods check state and arguments; subclasses implement `_open`,
`_infer` and `_close` only.
"""

import abc
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional, Tuple

import numpy as np

from edge_agent.errors import EdgeAgentError

if TYPE_CHECKING:  # config imports the backends' config models, so only for type checkers here
    from edge_agent.config import ModelConfig


class PreparedModel(NamedTuple):
    """What a backend loads: the artefact (ONNX or engine) and how it was derived."""

    path: Path
    precision: str
    source: Path
    fingerprint: Optional[str] = None


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
        self._calls = 0

    def open(self) -> "Backend":
        """Load the model, allocate every buffer once and run one warm-up inference."""
        self._open()
        if self.input_buffer is None or self.input_spec is None or self.output_spec is None:
            raise EdgeAgentError("backend {} did not set up its buffers".format(self.name))
        self.input_buffer[...] = 0
        self.infer(1)
        return self

    def infer(self, n: int) -> np.ndarray:
        """Run the model on input_buffer[:n]; returns the output rows [:n] (a view, reused next call)."""
        if self.input_buffer is None:
            raise EdgeAgentError("backend {} is not open".format(self.name))
        if not 1 <= n <= self.max_batch:
            raise ValueError("batch size {} outside 1..{}".format(n, self.max_batch))
        self._calls += 1
        return self._infer(n)

    def close(self) -> None:
        if self.input_buffer is not None:
            self._close()
            self.input_buffer = None

    @abc.abstractmethod
    def memory(self) -> MemoryUsage:
        """Bytes this backend holds on the host and on the device."""

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, n: int) -> np.ndarray: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    def __enter__(self) -> "Backend":
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
