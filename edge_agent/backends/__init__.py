"""Backend registry: a backend's module is imported only when it is selected."""

import importlib
from typing import Any, Dict, List, Tuple

from edge_agent.backends.base import Backend, PreparedModel

# type -> (module, class, the library it needs)
_BACKENDS: Dict[str, Tuple[str, str, str]] = {
    "onnxruntime": ("edge_agent.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime"),
    "tensorrt": ("edge_agent.backends.tensorrt", "TensorRTBackend", "tensorrt"),
}


def create_backend(model: PreparedModel, config: Any) -> Backend:
    """A closed backend for `config` (an AgentConfig) serving `model`."""
    module_name, class_name, _ = _BACKENDS[config.backend.type]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(model, config.model, config.pipeline.max_batch, config.backend)


def available_backends() -> List[Tuple[str, bool, str]]:
    """(name, available, reason) for each backend, without loading any model."""
    report = []
    for name, (_, _, library) in _BACKENDS.items():
        try:
            module = importlib.import_module(library)
            report.append((name, True, "{} {}".format(library, getattr(module, "__version__", "?"))))
        except Exception as exc:  # a broken install can raise more than ImportError
            report.append((name, False, "{} cannot be imported: {}".format(library, exc)))
    return report
