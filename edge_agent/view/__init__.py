"""The technician's live view (`view.listen`, `--view HOST:PORT`): a tiny HTTP server on its own
thread. `LiveView` is imported lazily (PEP 562): `edge_agent.config` imports this package's config
model, and the server itself needs `edge_agent.pipeline`, which needs the config."""

from typing import Any

from edge_agent.view.config import ViewConfig

__all__ = ["LiveView", "ViewConfig", "ViewState"]


def __getattr__(name: str) -> Any:
    if name == "LiveView":
        from edge_agent.view.server import LiveView

        return LiveView
    if name == "ViewState":
        from edge_agent.view.state import ViewState

        return ViewState
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
