"""What the telemetry thread publishes, built from the agent's state: defect events, the metrics
message with its catalogue, status, and the birth message with the agent's facts and provenance.

Only building lives here; storing in the outbox and sending is the sink's job (`sink.py`).
"""

import json
import platform
from typing import Any, Dict, List, Optional

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.engine.cache import file_sha256
from edge_agent.metrics import Registry
from edge_agent.telemetry.crops import encode_crop
from edge_agent.telemetry.outbox import KIND_EVENT, KIND_METRICS, NewMessage
from edge_agent.telemetry.payloads import (
    SCHEMA_VERSION,
    CatalogueEntry,
    DefectRecord,
    Envelope,
    MetricsWindow,
    Topics,
    defect_payload,
    encode,
)
from edge_agent.telemetry.probe import SystemProbe

PROBE_UNITS = {"pct": "%", "mb": "MB", "c": "degC", "mw": "mW", "mhz": "MHz", "1m": "load"}
OWN_CATALOGUE = {
    "outbox_messages": CatalogueEntry("count", "gauge", "messages waiting in the on-disk outbox"),
    "outbox_size_kb": CatalogueEntry("kB", "gauge", "payload bytes waiting in the outbox"),
    "outbox_dropped_metrics_total": CatalogueEntry("count", "counter", "metrics dropped because the outbox was full"),
    "outbox_dropped_events_total": CatalogueEntry("count", "counter", "events dropped because the outbox was full"),
    "mqtt_connected": CatalogueEntry("bool", "gauge", "1 while connected to the broker"),
    "mqtt_connects_total": CatalogueEntry("count", "counter", "successful broker connections this session"),
    "messages_acked_total": CatalogueEntry("count", "counter", "outbox messages acknowledged by the broker"),
}


class MessageBuilder:
    """Builds every payload of one agent session (session id and sequence numbers in `envelope`)."""

    def __init__(self, config: AgentConfig, registry: Registry, topics: Topics, envelope: Envelope,
                 client_id: str, describe: Dict[str, Any]) -> None:
        self.config = config
        self.registry = registry
        self.topics = topics
        self.envelope = envelope
        self.client_id = client_id
        self.describe = dict(describe)
        self.provenance: Dict[str, Any] = {}
        self.catalogue: Dict[str, CatalogueEntry] = {}
        self.metrics_window = MetricsWindow(registry)

    def update_facts(self, describe: Dict[str, Any]) -> None:
        self.describe = dict(describe)
        self.provenance = self._provenance()

    # ---- events and metrics ---------------------------------------------------------------------
    def defects(self, record: DefectRecord) -> List[NewMessage]:
        """One event message per region of a frame."""
        messages: List[NewMessage] = []
        for index, region in enumerate(record.regions):
            payload = defect_payload(record, region, self.provenance)
            score, area = self.config.model.thresholds.for_class(region.cls)
            payload["threshold_score"] = score
            payload["threshold_min_area_px"] = area
            if record.crops is not None:
                payload.update(encode_crop(record.crops[index][0], record.crops[index][1], self.config.mqtt.crop))
            stamped = self.envelope.stamp("defect", payload)
            stamped["event_id"] = "{}-{}-{}".format(self.config.device.id, self.envelope.session, stamped["seq"])
            messages.append(NewMessage(KIND_EVENT, self.topics.defect, encode(stamped)))
        return messages

    def metrics(self, own: Dict[str, float]) -> NewMessage:
        """The window's metrics; the sink's own values (outbox, link) and the probe's in `own`.
        Updates `catalogue` with every key sent."""
        values, self.catalogue = self.metrics_window.collect(own, self.probe_catalogue(own))
        return NewMessage(KIND_METRICS, self.topics.metrics, encode(self.envelope.stamp("metrics", values)))

    def probe_catalogue(self, values: Dict[str, float]) -> Dict[str, CatalogueEntry]:
        catalogue = dict(OWN_CATALOGUE)
        for key in values:
            if key not in catalogue:
                unit = PROBE_UNITS.get(key.rsplit("_", 1)[-1], "count" if key == "process_threads" else "")
                catalogue[key] = CatalogueEntry(unit, "probe", "system probe: " + key.replace("_", " "))
        return catalogue

    # ---- status and birth -----------------------------------------------------------------------
    def status(self, state: str, reasons: List[str]) -> bytes:
        return encode(self.envelope.stamp("status", {"state": state, "reasons": list(reasons)}))

    def will(self) -> bytes:
        """The Last Will: stored by the broker at connect time, published by it when the connection
        is lost. Only what is true then: no `ts` (the broker sends it later, at a time the agent
        cannot know; a consumer takes the arrival time), seq 0."""
        return encode({"schema": SCHEMA_VERSION, "session": self.envelope.session, "seq": 0, "state": "offline",
                       "reasons": ["connection lost: the broker published the Last Will (no keepalive within "
                                   "1.5 x {} s, or the link dropped)".format(self.config.mqtt.keepalive_s)]})

    def birth(self, probe: Optional[SystemProbe], commands: List[str]) -> bytes:
        if not self.catalogue:
            self.catalogue = MetricsWindow(self.registry).collect({}, self.probe_catalogue(
                dict(OWN_CATALOGUE, **(probe.latest if probe else {}))))[1]
        mqtt = self.config.mqtt
        birth = {
            "agent_version": __version__,
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "hostname": platform.node(),
            "device": self.config.device.id,
            "site": self.config.device.site,
            "line": self.config.device.line,
            "client_id": self.client_id,
            "mqtt_protocol": mqtt.protocol,
            "metrics_interval_s": mqtt.metrics_interval_s,
            "probe_providers": probe.providers if probe else [],
            "probe_facts": probe.facts() if probe else {},
            "provenance": self.provenance,
            "describe": _jsonable(self.describe),
            "commands": list(commands),
            "catalogue": {k: {"unit": e.unit, "type": e.kind, "description": e.description}
                          for k, e in sorted(self.catalogue.items())},
        }
        return encode(self.envelope.stamp("birth", birth))

    # ---- facts ----------------------------------------------------------------------------------
    def _provenance(self) -> Dict[str, Any]:
        describe = self.describe
        model_path = self.config.model.path
        sha = describe.get("model_sha256") or file_sha256(model_path)
        provenance = {
            "device": self.config.device.id,
            "model": str(describe.get("model_path", model_path.name)).rsplit("/", 1)[-1],
            "model_sha256": sha,
            "backend": str(describe.get("backend", self.config.backend.type)),
            "precision": str(describe.get("precision", self.config.backend.precision)),
            "agent_version": __version__,
        }
        if describe.get("engine_fingerprint"):
            provenance["engine_fingerprint"] = str(describe["engine_fingerprint"])
        return provenance

    def memory_facts(self) -> Dict[str, float]:
        facts = {"memory_budget_mb": float(self.config.memory.limit_mb)}
        for key, name in (("backend_host_bytes", "backend_host_mb"), ("backend_device_bytes", "backend_device_mb"),
                          ("buffer_bytes", "buffers_mb")):
            if isinstance(self.describe.get(key), (int, float)):
                facts[name] = round(self.describe[key] / 2**20, 2)
        return facts


def _jsonable(value: Any) -> Any:
    """A JSON-ready copy without nulls: an unknown value is left out, never sent as null."""
    return _without_nulls(json.loads(json.dumps(value, default=str)))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def pipeline_facts(config: AgentConfig, pipeline: Any) -> Dict[str, Any]:
    """Birth-message facts about a running pipeline: model, backend, precision, engine, memory."""
    backend = pipeline.backend
    memory = backend.memory()
    return {
        "model_path": str(config.model.path),
        "model_sha256": file_sha256(config.model.path),
        "backend": backend.name,
        "precision": backend.model.precision,
        "engine_fingerprint": backend.model.fingerprint,
        "thresholds": config.model.thresholds.model_dump(mode="json"),
        "backend_host_bytes": memory.host_bytes,
        "backend_device_bytes": memory.device_bytes,
        "sources": [s.name for s in config.sources],
    }
