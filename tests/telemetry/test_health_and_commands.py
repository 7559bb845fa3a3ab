"""Status with health reasons, the availability topic, a truthful Last Will, and commands that no
payload can break (MQTT v5 request/response honoured) — against a real mosquitto."""

import json
import signal
import threading
import time

import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.health import Health
from edge_agent.telemetry.commands import MAX_REQUEST_BYTES, parse_request

from .telemetry_helpers import (
    InProcessAgent,
    agent_config,
    load_schema,
    start_agent,
    stop_agent,
    write_agent_config,
)

BASE = "edge-agent/v1/plant-a/line-2/cell-7"


def _statuses(collector):
    validator = jsonschema.Draft202012Validator(load_schema("status"))
    found = collector.json("/status")
    for status in found:
        validator.validate(status)
    return found


def _availability(collector):
    with collector._lock:
        return [p.decode() for t, p, _ in collector.messages if t == BASE + "/availability"]


def test_health_reports_set_and_clear():
    health = Health()
    assert health.snapshot().state == "online" and health.snapshot().reasons == []
    health.report("source cam1", "down: cannot open /dev/video1")
    before = health.snapshot()
    health.report("source cam1", "down: cannot open /dev/video1")  # same problem: no new version
    assert health.snapshot().version == before.version
    assert before.state == "degraded" and before.reasons == ["source cam1: down: cannot open /dev/video1"]
    health.clear("source cam1")
    assert health.snapshot().state == "online" and health.snapshot().version > before.version


def test_a_dead_source_degrades_the_status_and_availability_is_plain(tmp_path, broker, collector_factory):
    collector = collector_factory(broker.port)
    data = agent_config(tmp_path, broker.port, fps=20)
    (tmp_path / "empty").mkdir()
    data["sources"].append({"type": "folder", "name": "line-b", "path": str(tmp_path / "empty")})
    with InProcessAgent(data):
        collector.wait_for(lambda c: any(s["state"] == "degraded" for s in c.json("/status")), what="degraded")
        collector.wait_for(lambda c: _availability(c) == ["online"], what="availability online")
    statuses = _statuses(collector)
    degraded = [s for s in statuses if s["state"] == "degraded"][0]
    reasons = degraded["reasons"]
    assert any(r.startswith("source line-b: down: folder") and "holds no images" in r for r in reasons), reasons
    assert statuses[-1]["state"] == "stopped" and statuses[-1]["reasons"] == []
    collector.wait_for(lambda c: _availability(c)[-1:] == ["offline"], what="availability offline on stop")


def test_last_will_is_truthful_and_availability_goes_offline(tmp_path, broker, collector_factory):
    collector = collector_factory(broker.port)
    config = write_agent_config(tmp_path, agent_config(tmp_path, broker.port, fps=10))
    proc = start_agent(config, tmp_path / "agent.log")
    try:
        collector.wait_for(lambda c: c.json("/birth") and _availability(c) == ["online"], timeout=60,
                           what="agent online")
        stop_agent(proc, signal.SIGKILL)
        collector.wait_for(lambda c: c.json("/status")[-1]["state"] == "offline"
                           and _availability(c)[-1] == "offline", what="Last Wills")
    finally:
        if proc.poll() is None:
            stop_agent(proc, signal.SIGKILL)
    will = _statuses(collector)[-1]
    # The broker sends the Will later than it was stored: it carries no creation time to mislead.
    assert "ts" not in will and will["seq"] == 0 and "Last Will" in will["reasons"][0]


def test_demo_stops_cleanly_on_sigterm(tmp_path, broker, collector_factory):
    collector = collector_factory(broker.port)
    config = write_agent_config(tmp_path, agent_config(tmp_path, broker.port, fps=10))
    proc = start_agent(config, tmp_path / "demo.log", command="demo")
    try:
        collector.wait_for(lambda c: c.json("/birth"), timeout=60, what="demo online")
        code = stop_agent(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            stop_agent(proc, signal.SIGKILL)
    assert code == 0, (tmp_path / "demo.log").read_text()[-2000:]
    collector.wait_for(lambda c: c.json("/status")[-1]["state"] == "stopped", what="stopped")
    assert "frames in" in (tmp_path / "demo.log").read_text()  # the summary was printed


def test_request_parsing_refuses_before_parsing():
    assert parse_request(b"")[0] == {}
    assert parse_request(b'{"request_id": 7}')[0] == {"request_id": 7}
    for payload, words in ((b"[" * 200000, "bytes"), (b"[" * 50, "nested"), (b'{"a": [[[[[1]]]]]}', "nested"),
                           (b"not json", "not JSON"), (b"\xff\xfe", "UTF-8"), (b"[1, 2]", "object"),
                           (b'{"request_id": 1, "extra": 2}', "unknown field"), (b'{"request_id": [1]}', "request_id"),
                           (b'{"request_id": true}', "request_id")):
        request, reason = parse_request(payload)
        assert request is None and words in reason, (payload[:20], reason)
    # brackets inside strings do not count as nesting
    assert parse_request(json.dumps({"request_id": "[[[[[[[[[["}).encode())[0] is not None
    assert len(b"[" * 200000) > MAX_REQUEST_BYTES


class _V5Requester:
    """An MQTT v5 client that sends commands with a response topic and correlation data."""

    def __init__(self, port):
        self.replies = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="requester", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.ready.set()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe("requester/replies", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, _client, _userdata, message):
        correlation = getattr(message.properties, "CorrelationData", None)
        self.replies.append((json.loads(message.payload), correlation))

    def send(self, command, payload, correlation):
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = "requester/replies"
        properties.CorrelationData = correlation
        self.client.publish(BASE + "/cmd/" + command, payload, qos=1, properties=properties)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_commands_answer_v5_requests_and_survive_any_payload(tmp_path, broker, collector_factory):
    collector = collector_factory(broker.port)
    with InProcessAgent(agent_config(tmp_path, broker.port, fps=10)) as agent:
        collector.wait_for(lambda c: c.json("/birth"), what="birth")
        requester = _V5Requester(broker.port)
        try:
            requester.send("rebirth", b'{"request_id": "a"}', b"corr-1")
            hostile = [b"[" * 200000, b"[" * 100, b"not json", b"\xff", b"[1]", b'{"bogus": 1}']
            for index, payload in enumerate(hostile):
                requester.send("publish-now", payload, "bad-{}".format(index).encode())
            requester.send("publish-now", b"", b"last")  # the telemetry thread still answers
            deadline = time.monotonic() + 20
            while len(requester.replies) < 2 + len(hostile) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            requester.close()
        ok, text = agent.telemetry.health()
        assert ok and text.startswith("broker connected"), text
    by_correlation = {correlation: reply for reply, correlation in requester.replies}
    assert by_correlation[b"corr-1"]["ok"] and by_correlation[b"corr-1"]["request_id"] == "a"
    assert by_correlation[b"last"]["ok"] and by_correlation[b"last"]["message"] == "metrics published"
    validator = jsonschema.Draft202012Validator(load_schema("reply"))
    for index in range(6):
        reply = by_correlation[b"bad-%d" % index]
        validator.validate(reply)
        assert reply["ok"] is False and reply["message"].startswith("refused: "), reply
    # v5 replies go to the response topic, not to reply/{command}
    assert not collector.json("/reply/rebirth")


class _Outbox:
    def __init__(self, size_bytes, max_bytes, rows):
        self.size_bytes, self.max_bytes, self.rows = size_bytes, max_bytes, rows


def test_telemetry_checks_report_a_stalled_pipeline_a_filling_outbox_and_a_backlog():
    from edge_agent.metrics import Registry
    from edge_agent.telemetry.checks import STALL_S, TelemetryChecks

    registry = Registry()
    checks = TelemetryChecks(registry, registry.health, event_queue_size=100)
    captured = registry.counter("frames_captured", source="cam0")
    processed = registry.counter("frames_processed", source="cam0")
    captured.inc(5)
    processed.inc(5)
    checks.run(_Outbox(0, 1000, 0), 0, True, now=100.0)
    assert registry.health.snapshot().state == "online"
    captured.inc(30)  # the camera goes on, the frame loop does not
    checks.run(_Outbox(0, 1000, 0), 0, True, now=100.0 + STALL_S / 2)
    assert registry.health.snapshot().state == "online"  # not yet
    checks.run(_Outbox(600, 1000, 42), 60, False, now=100.0 + STALL_S + 1)
    reasons = registry.health.snapshot().reasons
    assert "pipeline: stalled: frames are captured but none processed for 10 s or more" in reasons, reasons
    assert "outbox: over 50 % full, messages unsent (broker unreachable)" in reasons
    assert "telemetry: backlog: over 50 % of mqtt.event_queue_size frames wait for the outbox" in reasons
    version = registry.health.snapshot().version
    captured.inc(10)  # more of the same: no new reasons, no new status message
    checks.run(_Outbox(620, 1000, 50), 61, False, now=100.0 + STALL_S + 2)
    assert registry.health.snapshot().version == version
    processed.inc()
    checks.run(_Outbox(0, 1000, 0), 0, True, now=100.0 + STALL_S + 4)
    assert registry.health.snapshot().state == "online"  # every reason cleared with its cause
