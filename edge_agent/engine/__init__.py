"""Model preparation: turns the configured ONNX model and precision into what a backend loads."""

from typing import Callable, Optional

from edge_agent.backends.base import PreparedModel
from edge_agent.config import AgentConfig
from edge_agent.errors import ConfigError


def prepare_model(config: AgentConfig, progress: Optional[Callable[[str, Optional[float]], None]] = None,
                  force: bool = False) -> PreparedModel:
    precision = config.backend.precision
    if precision != "fp32":
        raise ConfigError("backend.precision: {} is not available yet; use fp32".format(precision))
    return PreparedModel(path=config.model.path, precision="fp32", source=config.model.path)
