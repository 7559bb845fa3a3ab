"""Telemetry: metrics registry, system probe, SQLite outbox and the MQTT publisher.

`Telemetry` is imported lazily (PEP 562) because `edge_agent.config` imports this package's
config models, and the sink itself needs `edge_agent.config` and `edge_agent.pipeline`.
"""

from typing import Any

__all__ = ["Telemetry"]


def __getattr__(name: str) -> Any:
    if name == "Telemetry":
        from edge_agent.telemetry.sink import Telemetry

        return Telemetry
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
