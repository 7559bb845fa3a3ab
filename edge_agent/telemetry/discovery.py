"""Home Assistant MQTT discovery (opt-in: mqtt.homeassistant.enabled): one retained device
discovery message, `{prefix}/device/{device id}/config`, generated from the metric catalogue.

Each top-level metric becomes a sensor reading the metrics topic through a value template, with its
unit, a state class (counters: total_increasing, everything else: measurement) and a device class
where Home Assistant has one for the unit; per source, inspected and NG counts and the reject rate;
health is a `problem` binary sensor on the status topic. Availability is the plain availability
topic. The payload follows the documented device-discovery schema (abbreviations: `dev`, `o`,
`cmps`, `p`); tests validate it against that schema.
"""

from typing import Any, Dict, List

from edge_agent import __version__
from edge_agent.telemetry.payloads import CatalogueEntry, Topics

# catalogue unit -> (Home Assistant unit, device class or None)
HA_UNITS = {"ms": ("ms", "duration"), "s": ("s", "duration"), "MB": ("MB", "data_size"), "kB": ("kB", "data_size"),
            "degC": ("°C", "temperature"), "mW": ("mW", None), "MHz": ("MHz", "frequency"), "%": ("%", None),
            "fps": ("fps", None), "px": ("px", None), "load": (None, None), "count": (None, None),
            "bool": (None, None)}
SKIPPED = ("window_s",)  # not a reading of the board


def discovery_topic(prefix: str, device: str) -> str:
    return "{}/device/{}/config".format(prefix, device)


def discovery_payload(topics: Topics, device: Any, catalogue: Dict[str, CatalogueEntry],
                      sources: List[str]) -> Dict[str, Any]:
    """The device discovery message for this board's current catalogue and sources."""
    node = device.id
    components: Dict[str, Dict[str, Any]] = {}
    for key, entry in sorted(catalogue.items()):
        if key.startswith("by_") or key in SKIPPED or entry.kind == "histogram" and key.endswith("_count"):
            continue
        components[key] = _sensor(node, key, key.replace("_", " "), topics.metrics,
                                  "{{{{ value_json.{} }}}}".format(key), entry)
    for source in sources:
        row = "(value_json.by_source | selectattr('source', 'eq', '{}') | first)".format(source)
        for field in ("frames_processed_total", "frames_ng_total"):
            components["{}_{}".format(source, field)] = _sensor(
                node, "{}_{}".format(source, field), "{} {}".format(source, field.replace("_", " ")), topics.metrics,
                "{{{{ {}.{} | default(this.state) }}}}".format(row, field), CatalogueEntry("count", "counter", ""))
        components["{}_reject_rate".format(source)] = dict(_sensor(
            node, "{}_reject_rate".format(source), "{} reject rate".format(source), topics.metrics,
            "{{{{ ({r}.frames_ng_total / {r}.frames_processed_total * 100) | round(2) "
            "if {r}.frames_processed_total else 0 }}}}".format(r=row), CatalogueEntry("%", "derived", "")))
    components["degraded"] = {
        "p": "binary_sensor", "name": "degraded", "unique_id": "{}_degraded".format(node),
        "device_class": "problem", "state_topic": topics.status,
        "value_template": "{{ 'ON' if value_json.state == 'degraded' else 'OFF' }}",
        "json_attributes_topic": topics.status, "json_attributes_template": "{{ {'reasons': value_json.reasons} "
                                                                           "| tojson }}",
    }
    return {
        "dev": {"ids": ["edge-agent-" + node], "name": "edge-agent {}".format(node), "mf": "edge-agent",
                "mdl": "{} / {}".format(device.site, device.line), "sw": __version__},
        "o": {"name": "edge-agent", "sw": __version__},
        "avty_t": topics.availability, "pl_avail": "online", "pl_not_avail": "offline",
        "qos": 1,
        "cmps": components,
    }


def _sensor(node: str, key: str, name: str, topic: str, template: str, entry: CatalogueEntry) -> Dict[str, Any]:
    unit, device_class = HA_UNITS.get(entry.unit, (entry.unit or None, None))
    sensor: Dict[str, Any] = {
        "p": "sensor", "name": name, "unique_id": "{}_{}".format(node, key), "state_topic": topic,
        "value_template": template,
        "state_class": "total_increasing" if entry.kind == "counter" else "measurement",
    }
    if unit:
        sensor["unit_of_measurement"] = unit
    if device_class:
        sensor["device_class"] = device_class
    return sensor
