"""Broker faults against a real mosquitto and the agent as users run it (`edge-agent run`):
size limits announced or not, a plain client on a TLS port, a port that accepts and stays
silent, two agents with the same id. Each ends in a clear log line and telemetry that goes on,
never a reconnect storm or a thread that dies (issue 14)."""

import socket
import threading
import time

from telemetry.telemetry_helpers import (
    Broker,
    Collector,
    agent_config,
    make_test_ca,
    start_agent,
    stop_agent,
    write_agent_config,
)

CROPS = {"enabled": True, "max_side_px": 256, "jpeg_quality": 95, "max_bytes": 65536}


def _wait_log(path, text, timeout=40):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return path.read_text(errors="replace")
        time.sleep(0.1)
    raise AssertionError("{!r} not logged within {} s:\n{}".format(text, timeout, path.read_text()[-4000:]))


def _run_against(tmp_path, broker_extra, seconds, **mqtt):
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", extra="allow_anonymous true\n" + broker_extra).start()
    collector = Collector(broker.port)
    data = agent_config(tmp_path, broker.port, fps=20, interval=0.5, crop=CROPS, **mqtt)
    log = tmp_path / "agent.log"
    agent = start_agent(write_agent_config(tmp_path, data), log)
    try:
        collector.wait_for(lambda c: len(c.json("/metrics")) >= 2, timeout=60, what="metrics")
        time.sleep(seconds)
    finally:
        code = stop_agent(agent)
        collector.close()
        broker.stop()
    assert code == 0, log.read_text()[-3000:]
    return collector, log.read_text()


def test_an_announced_packet_limit_moves_oversized_rows_aside_without_reconnecting(tmp_path):
    collector, log = _run_against(tmp_path, "max_packet_size 6000", 8)
    assert "moved aside and not resent" in log and "maximum packet size of 6000" in log
    assert log.count("telemetry: connected to broker") == 1, log[-3000:]  # no reconnect storm
    metrics = collector.json("/metrics")
    assert metrics[-1]["outbox_rejected_total"] > 0
    assert all(len(p) <= 6000 for _, p, _ in collector.messages)
    assert collector.json("/events/defect")  # the events that fit still arrive


def test_an_unannounced_size_limit_moves_the_poison_row_aside(tmp_path):
    # mosquitto's message_size_limit is not announced in CONNACK: it closes the connection instead
    collector, log = _run_against(tmp_path, "message_size_limit 6000", 12, max_message_kb=1024)
    assert "each time it was sent" in log or "each time the birth message was sent" in log, log[-3000:]
    connects = log.count("telemetry: connected to broker")
    assert connects < 12, "reconnect storm: {} connections in 12 s".format(connects)
    assert collector.json("/metrics")[-1]["mqtt_connected"] == 1


def test_a_plain_client_on_a_tls_port_says_so(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder, tls=make_test_ca(folder)).start()
    log = tmp_path / "agent.log"
    agent = start_agent(write_agent_config(tmp_path, agent_config(tmp_path, broker.port)), log)
    try:
        text = _wait_log(log, "speaks TLS", timeout=40)
    finally:
        assert stop_agent(agent) == 0
        broker.stop()
    assert "set mqtt.tls.enabled: true" in text


def _silent_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def test_a_port_that_accepts_and_stays_silent_is_reported(tmp_path):
    server, held = _silent_server()
    data = agent_config(tmp_path, server.getsockname()[1], keepalive_s=5)
    log = tmp_path / "agent.log"
    agent = start_agent(write_agent_config(tmp_path, data), log)
    try:
        text = _wait_log(log, "sent no MQTT reply", timeout=45)
    finally:
        assert stop_agent(agent) == 0
        server.close()
        for sock in held:
            sock.close()
    assert "accepted the TCP connection" in text


def test_two_agents_with_the_same_id_are_told_so(tmp_path):
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker").start()
    agents = []
    try:
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            data = agent_config(folder, broker.port, fps=10, interval=1.0)
            agents.append((start_agent(write_agent_config(folder, data), folder / "agent.log"), folder / "agent.log"))
        deadline = time.monotonic() + 60
        while not any("same client id" in log.read_text() for _, log in agents):
            assert time.monotonic() < deadline, agents[0][1].read_text()[-3000:]
            time.sleep(0.2)
    finally:
        codes = [stop_agent(agent) for agent, _ in agents]
        broker.stop()
    assert codes == [0, 0]
    text = "".join(log.read_text() for _, log in agents)
    assert "device.id 'cell-7'" in text
