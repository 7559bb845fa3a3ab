"""The shipped dashboard configs consume what the agent publishes: a real run's messages are
replayed through the Telegraf config's rules (as Telegraf documents its json and json_v2 parsers
and InfluxDB identifies a point: measurement + tag set + timestamp), and nothing is lost."""

import collections
import json

import tomllib

from .telemetry_helpers import REPO, InProcessAgent, agent_config

TELEGRAF = REPO / "docs" / "dashboards" / "telegraf-edge-agent.conf"


def _consumers():
    config = tomllib.loads(TELEGRAF.read_text())
    return {c["topics"][0].rsplit("+/", 1)[1]: c for c in config["inputs"]["mqtt_consumer"]}


def _topic_tags(consumer, topic):
    rule = consumer["topic_parsing"][0]
    return {name: level for name, level in zip(rule["tags"].split("/"), topic.split("/")) if name != "_"}


def json_v1_points(consumer, topic, message):
    """Telegraf's `json` parser: tag_keys become tags (as strings), json_time_key the time, numbers
    and json_string_fields the fields, fieldexclude dropped; the topic levels become tags."""
    tags = _topic_tags(consumer, topic)
    tags.update({key: str(message[key]) for key in consumer.get("tag_keys", []) if key in message})
    fields = {key: value for key, value in message.items()
              if key not in consumer.get("tag_keys", []) and key not in consumer.get("fieldexclude", [])
              and key != consumer["json_time_key"]
              and (isinstance(value, (int, float)) and not isinstance(value, bool)
                   or key in consumer.get("json_string_fields", []))}
    return [(consumer["name_override"], frozenset(tags.items()), message[consumer["json_time_key"]], fields)]


def json_v2_points(consumer, topic, message):
    """Telegraf's `json_v2` parser with `object` tables: path "@this" is the message itself (minus
    excluded_keys), an array path gives one metric per element; `tags` name the tag keys."""
    points = []
    for table in consumer["json_v2"]:
        time = message[table["timestamp_path"]]
        for obj in table["object"]:
            rows = [message] if obj["path"] == "@this" else message.get(obj["path"], [])
            for row in rows:
                tags = _topic_tags(consumer, topic)
                tags.update({key: str(row[key]) for key in obj.get("tags", []) if key in row})
                fields = {key: value for key, value in row.items()
                          if key not in obj.get("tags", []) and key not in obj.get("excluded_keys", [])}
                points.append((table["measurement_name"], frozenset(tags.items()), time, fields))
    return points


def test_telegraf_config_keeps_every_event_verdict_and_metric(tmp_path, broker, collector_factory):
    collector = collector_factory(broker.port)
    data = agent_config(tmp_path, broker.port, fps=40, interval=0.5)
    data["telemetry"] = {"verdicts": "all"}
    data["sources"][0]["defect_rate"] = 1.0
    data["sources"].append(dict(data["sources"][0], name="cam_b_left", seed=7))  # "_" in a source name
    with InProcessAgent(data):
        collector.wait_for(lambda c: len(c.json("/events/defect")) >= 150 and len(c.json("/metrics")) >= 3,
                           timeout=60, what="events and metrics")
    consumers = _consumers()
    with collector._lock:
        received = [(t, p) for t, p, _ in collector.messages]
    by_kind = collections.defaultdict(list)
    for topic, payload in received:
        kind = next((k for k in consumers if topic.endswith("/" + k)), None)
        if kind is not None:
            by_kind[kind].append((topic, json.loads(payload)))

    # Events: every one is its own point, although regions of one class share source, class and time.
    events = by_kind["events/defect"]
    points = [p for topic, m in events for p in json_v1_points(consumers["events/defect"], topic, m)]
    shared = collections.Counter((m["source"], m["class"], m["capture_ts"]) for _, m in events)
    assert max(shared.values()) >= 2, "the run had no frame with two regions of one class: the check proves nothing"
    assert len({p[:3] for p in points}) == len(events)

    # Verdicts: one point per inspected frame, OK and NG.
    verdicts = by_kind["events/verdict"]
    points = [p for topic, m in verdicts for p in json_v1_points(consumers["events/verdict"], topic, m)]
    assert verdicts and len({p[:3] for p in points}) == len(verdicts), sorted({t for t, _ in received})[:20]
    assert {dict(p[1])["source"] for p in points} == {"cam0", "cam_b_left"}

    # Metrics: every value reaches a point, labelled series with their labels as tags, names unchanged.
    consumer = consumers["metrics"]
    sources = set()
    for topic, message in by_kind["metrics"]:
        points = json_v2_points(consumer, topic, message)
        stored = {(measurement, tags, key) for measurement, tags, _, fields in points for key in fields}
        keys = {key for _, _, key in stored}
        for key, value in message.items():
            if key.startswith("by_"):
                labels = [k for k in value[0] if isinstance(value[0][k], str)]
                for row in value:
                    tags = {(k, row[k]) for k in labels}
                    for field in set(row) - set(labels):
                        assert any(k == field and tags <= set(t) for _, t, k in stored), (key, row, field)
            elif key not in ("schema", "session", "seq", "ts", "replay"):
                assert key in keys, key
        sources.update(dict(t)["source"] for m, t, _ in stored if m == "edge_agent_source")
    assert sources == {"cam0", "cam_b_left"}
