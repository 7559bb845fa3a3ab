"""What the telemetry thread publishes, built from the agent's state: defect events, the metrics
message with its catalogue, status, and the birth message with the agent's facts and provenance.

Only building lives here; storing in the outbox and sending is the sink's job (`sink.py`).
"""

import json
import platform
import re
from typing import Any, Dict, List, Optional, Tuple

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
    Topics,
    defect_payload,
    encode,
    frame_id,
    verdict_payload,
)
from edge_agent.telemetry.probe import SystemProbe
from edge_agent.telemetry.window import MetricsWindow, unit_name

PROBE_DESCRIPTIONS = {
    "cpu_util_pct": "board CPU use, all cores (100 = every core busy)",
    "process_cpu_pct": "the agent's CPU use (100 = one core)",
    "load_1m": "1-minute load average",
    "ram_total_mb": "board memory (on Jetson the GPU's memory is part of it)",
    "ram_used_mb": "board memory in use",
    "ram_available_mb": "board memory available",
    "swap_used_mb": "swap in use",
    "process_rss_mb": "the agent's resident memory",
    "process_threads": "the agent's threads",
    "disk_free_mb": "free space on the state directory's file system",
    "disk_used_pct": "used share of the state directory's file system",
    "gpu_util_pct": "GPU load (jtop, Tegra sysfs or NVML)",
    "gpu_freq_mhz": "GPU clock",
    "gpu_mem_used_mb": "GPU memory in use (NVML: a discrete GPU's own memory, every process)",
    "gpu_mem_process_mb": "the agent's GPU buffers on a Jetson (jtop or nvmap debugfs): RAM, part of the RSS, "
                          "not to be added to it",
    "gpu_mem_shared_mb": "every process's GPU buffers on a Jetson (jtop or NvMapMemUsed): part of ram_used_mb",
    "emc_util_pct": "memory controller load (jtop)",
    "power_total_mw": "board input power",
    "memory_budget_mb": "memory.limit_mb",
    "memory_budget_used_pct": "the agent's resident memory as a share of memory.limit_mb",
    "backend_host_mb": "host memory the inference backend holds",
    "backend_device_mb": "device memory the inference backend holds",
    "buffers_mb": "I/O buffers of the inference backend",
    "by_zone[].temp_c": "temperature of a thermal zone (zone: gpu, cpu, soc0, ...)",
    "by_rail[].power_mw": "power of an INA rail (rail: vdd_gpu_soc, vdd_cpu_cv, ...)",
}
# per-zone and per-rail probe readings: their zone/rail becomes a label, as sources do
PROBE_GROUPS = ((re.compile(r"^temp_(.+)_c$"), "by_zone", "zone", "temp_c"),
                (re.compile(r"^power_(?!total_mw$)(.+)_mw$"), "by_rail", "rail", "power_mw"))
OWN_CATALOGUE = {
    "outbox_messages": CatalogueEntry("count", "gauge", "messages waiting in the on-disk outbox"),
    "outbox_size_kb": CatalogueEntry("kB", "gauge", "payload bytes waiting in the outbox"),
    "outbox_dropped_metrics_total": CatalogueEntry("count", "counter", "metrics dropped because the outbox was full"),
    "outbox_dropped_events_total": CatalogueEntry("count", "counter", "events dropped because the outbox was full"),
    "mqtt_connected": CatalogueEntry("bool", "gauge", "1 while connected to the broker"),
    "mqtt_connects_total": CatalogueEntry("count", "counter", "successful broker connections this session"),
    "messages_acked_total": CatalogueEntry("count", "counter", "outbox messages acknowledged by the broker"),
    "outbox_rejected_total": CatalogueEntry("count", "counter", "messages moved aside: larger than the broker takes"),
    "outbox_lost_events_total": CatalogueEntry("count", "counter", "events lost: the disk refused writes too long"),
    "outbox_lost_metrics_total": CatalogueEntry("count", "counter", "metrics lost: the disk refused writes too long"),
    "outbox_spilled_messages": CatalogueEntry("count", "gauge", "messages held in memory while the disk refuses"),
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
        """One event message per region of a frame, then the frame's verdict (telemetry.verdicts)."""
        messages: List[NewMessage] = []
        frame = frame_id(self.config.device.id, self.envelope.session, record)
        for index, region in enumerate(record.regions):
            payload = defect_payload(record, region, index, frame, self.provenance)
            score, area = self.config.model.thresholds.for_class(region.cls)
            payload["threshold_score"] = score
            payload["threshold_min_area_px"] = area
            if record.crops is not None:
                payload.update(encode_crop(record.crops[index][0], record.crops[index][1], self.config.mqtt.crop))
            stamped = self.envelope.stamp("defect", payload)
            stamped["event_id"] = "{}-{}-{}".format(self.config.device.id, self.envelope.session, stamped["seq"])
            messages.append(NewMessage(KIND_EVENT, self.topics.defect, encode(stamped)))
        policy = self.config.telemetry.verdicts
        if policy == "all" or (policy == "ng" and record.regions):
            stamped = self.envelope.stamp("verdict", verdict_payload(record, frame, self.provenance))
            messages.append(NewMessage(KIND_EVENT, self.topics.verdict, encode(stamped)))
        return messages

    def metrics(self, own: Dict[str, float]) -> NewMessage:
        """The window's metrics; the sink's own values (outbox, link) and the probe's in `own`.
        Updates `catalogue` with every key sent."""
        flat, groups = split_probe_values(own)
        values, self.catalogue = self.metrics_window.collect(flat, self.probe_catalogue(flat))
        values.update(groups)
        self.catalogue.update(PROBE_GROUP_CATALOGUE if groups else {})
        return NewMessage(KIND_METRICS, self.topics.metrics, encode(self.envelope.stamp("metrics", values)))

    def probe_catalogue(self, values: Dict[str, float]) -> Dict[str, CatalogueEntry]:
        catalogue = dict(OWN_CATALOGUE)
        for key in values:
            if key not in catalogue:
                unit = "count" if key == "process_threads" else unit_name(key.rsplit("_", 1)[-1])
                catalogue[key] = CatalogueEntry(unit, "probe", PROBE_DESCRIPTIONS.get(key, "undocumented " + key))
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
            flat, groups = split_probe_values(dict(probe.latest) if probe else {})
            self.catalogue = MetricsWindow(self.registry).collect({}, self.probe_catalogue(
                dict(dict.fromkeys(OWN_CATALOGUE, 0.0), **flat)))[1]
            self.catalogue.update(PROBE_GROUP_CATALOGUE if groups else {})
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


PROBE_GROUP_CATALOGUE = {key: CatalogueEntry(unit_name(key.rsplit("_", 1)[-1]), "probe", text)
                         for key, text in PROBE_DESCRIPTIONS.items() if key.startswith("by_")}


def split_probe_values(values: Dict[str, float]) -> Tuple[Dict[str, float], Dict[str, List[Dict[str, Any]]]]:
    """(values with per-zone / per-rail readings taken out, those readings as `by_zone` / `by_rail` rows)."""
    flat: Dict[str, float] = {}
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for key, value in values.items():
        for pattern, group, label, field in PROBE_GROUPS:
            match = pattern.match(key)
            if match:
                groups.setdefault(group, []).append({label: match.group(1), field: value})
                break
        else:
            flat[key] = value
    return flat, groups


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
        # precisions passed over at preparation (accuracy gate, failed build, slower), with the reason
        "precision_fallbacks": [dict(f) for f in getattr(backend.model, "fallbacks", ())],
        "thresholds": config.model.thresholds.model_dump(mode="json"),
        "backend_host_bytes": memory.host_bytes,
        "backend_device_bytes": memory.device_bytes,
        "sources": [s.name for s in config.sources],
    }
