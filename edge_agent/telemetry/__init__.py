"""Telemetry: system probe, SQLite outbox and the MQTT publisher.

`Telemetry` is imported lazily (PEP 562) because `edge_agent.config` imports this package's
config models, and the sink itself needs `edge_agent.config` and `edge_agent.pipeline`.
"""

from typing import Any, Optional

__all__ = ["Telemetry", "open_telemetry", "pipeline_facts"]


def __getattr__(name: str) -> Any:
    if name == "Telemetry":
        from edge_agent.telemetry.sink import Telemetry

        return Telemetry
    if name == "pipeline_facts":
        from edge_agent.telemetry.messages import pipeline_facts

        return pipeline_facts
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))


def open_telemetry(config: Any, registry: Any) -> Optional[Any]:
    """A started `Telemetry` when mqtt.enabled, else None. It connects in the background: a missing
    broker never holds start-up back. Call `update_facts(pipeline_facts(config, pipeline))` once the
    pipeline runs, and `close()` after it stopped, so the last frames' messages are flushed."""
    if not config.mqtt.enabled:
        return None
    from edge_agent.telemetry.sink import Telemetry

    return Telemetry(config, registry, {"model_path": str(config.model.path),
                                        "sources": [s.name for s in config.sources]}).start()
