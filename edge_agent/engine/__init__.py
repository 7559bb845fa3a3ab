"""Model preparation: turns the configured ONNX model and precision into what a backend loads.

`prepare_model(config)` resolves the precision, prepares the FP16 / INT8 ONNX variant or builds
the TensorRT engine (in a child process), caches the result by fingerprint and gates reduced
precision on accuracy against the FP32 reference, falling back INT8 -> FP16 -> FP32. Heavy
modules are imported inside the function: `edge_agent.config` imports this package's config.
"""

from typing import TYPE_CHECKING, Callable, Optional

from edge_agent.backends.base import PreparedModel

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig
    from edge_agent.engine.report import BuildReport

Progress = Callable[[str, Optional[float]], None]


def prepare_model(config: "AgentConfig", progress: Optional[Progress] = None, force: bool = False) -> PreparedModel:
    """The artefact the configured backend loads; see `prepare` for the full report."""
    return prepare(config, progress, force).prepared


def prepare(config: "AgentConfig", progress: Optional[Progress] = None, force: bool = False,
            precision: Optional[str] = None) -> "BuildReport":
    """Prepare (or load from the cache) the model for `precision` (default: backend.precision)."""
    from edge_agent.engine.chain import Preparation

    return Preparation(config, progress, force).run(precision or config.backend.precision)


__all__ = ["PreparedModel", "prepare", "prepare_model"]
