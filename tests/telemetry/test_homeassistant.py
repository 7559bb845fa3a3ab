"""Home Assistant discovery (opt-in): one retained device message generated from the catalogue,
valid against the documented device-discovery schema, whose templates read keys that the
agent really publishes, with the plain availability topic."""

import json
import re

import jsonschema

from .telemetry_helpers import SCHEMAS, InProcessAgent, agent_config

BASE = "edge-agent/v1/plant-a/line-2/cell-7"
TOPIC = "homeassistant/device/cell-7/config"


def test_discovery_is_valid_and_reads_published_keys(tmp_path, broker, collector_factory):
    collector = collector_factory(broker.port)
    data = agent_config(tmp_path, broker.port, fps=20, interval=0.3, homeassistant={"enabled": True})
    with InProcessAgent(data):
        collector.wait_for(lambda c: c.json(TOPIC) and any("latency_max_ms" in m for m in c.json("/metrics")),
                           timeout=60, what="discovery and metrics of processed frames")
    discovery = collector.json(TOPIC)[-1]
    schema = json.loads((SCHEMAS / "homeassistant-device-discovery.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(discovery)
    assert discovery["avty_t"] == BASE + "/availability"
    components = discovery["cmps"]
    published = {key for message in collector.json("/metrics") for key in message}
    for name, component in components.items():
        keys = re.findall(r"value_json\.(\w+)", component["value_template"])
        if component["state_topic"].endswith("/metrics"):
            for key in keys:
                assert key in published, "{} reads {}, which no metrics message carried".format(name, key)
    assert components["frames_processed_total"]["state_class"] == "total_increasing"
    assert components["process_rss_mb"]["unit_of_measurement"] == "MB"
    assert components["cam0_reject_rate"]["unit_of_measurement"] == "%"
    assert components["degraded"]["device_class"] == "problem"
    assert components["degraded"]["state_topic"] == BASE + "/status"
    assert len({c["unique_id"] for c in components.values()}) == len(components)


def test_discovery_is_off_by_default(tmp_path, broker, collector_factory):
    collector = collector_factory(broker.port, topic="homeassistant/#")
    with InProcessAgent(agent_config(tmp_path, broker.port, fps=10)):
        agent_birth = collector_factory(broker.port)
        agent_birth.wait_for(lambda c: c.json("/birth"), what="birth")
    assert not collector.messages
