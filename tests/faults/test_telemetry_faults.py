"""Telemetry faults with the agent as users run it: the disk under the outbox fills up and frees
again, the broker is down at start, the link is cut through a proxy. Each time the agent keeps
inspecting, loses no seq and says what happened (issue 14)."""

import socket
import threading
import time

import pytest
from telemetry.telemetry_helpers import (
    Broker,
    Collector,
    agent_config,
    seqs,
    start_agent,
    stop_agent,
    write_agent_config,
)

from .disk_helpers import fill, mount_tmpfs


def _wait_log(path, text, timeout=40):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError("{!r} not logged within {} s:\n{}".format(text, timeout, path.read_text()[-4000:]))


def _continuous(collector, suffix):
    messages = collector.json(suffix)
    session = messages[-1]["session"]
    numbers = seqs(messages, session)
    return numbers == list(range(1, numbers[-1] + 1)), numbers


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB filesystem for the state directory."""
    unmount = mount_tmpfs(tmp_path / "state", "8m", "tests/telemetry/test_outbox_faults.py covers the same path "
                                                     "with SQLite's max_page_count")
    yield tmp_path / "state"
    unmount()


def test_disk_full_then_space_back(tmp_path, small_disk):
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker").start()
    collector = Collector(broker.port)
    data = agent_config(tmp_path, broker.port, fps=20, interval=0.5)
    data["model"]["thresholds"]["min_area_px"] = 200  # a few events: the freed space is not refilled at once
    log = tmp_path / "agent.log"
    agent = start_agent(write_agent_config(tmp_path, data), log)
    try:
        collector.wait_for(lambda c: len(c.json("/metrics")) >= 2, timeout=60, what="metrics")
        broker.stop()  # messages must now go to the outbox on the disk...
        filler = fill(small_disk)  # ...which is full
        _wait_log(log, "cannot be written", timeout=30)
        time.sleep(3)
        assert agent.poll() is None
        filler.unlink()  # space is back
        _wait_log(log, "writing works again", timeout=30)
        broker.start()
        after = Collector(broker.port)
        assert after.subscribed.wait(10)
        after.wait_for(lambda c: any(m["outbox_spilled_messages"] == 0 and m["mqtt_connected"] == 1
                                     for m in c.json("/metrics")), timeout=40, what="metrics after recovery")
        time.sleep(2)
    finally:
        code = stop_agent(agent)
        broker.stop()
    assert code == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text and "cannot rollback" not in text
    assert any(m["state"] == "online" for m in after.json("/status"))
    merged = Collector.__new__(Collector)
    merged.messages = collector.messages + after.messages
    merged._lock = threading.Lock()
    ok, numbers = _continuous(merged, "/metrics")
    last = after.json("/metrics")[-1]
    lost = last["outbox_lost_metrics_total"]
    assert ok or lost > 0, numbers  # a gap only when counted
    assert last["frames_processed_total"] > 0


def test_broker_down_at_start_then_up(tmp_path):
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker").start()
    collector = Collector(broker.port)
    assert collector.subscribed.wait(10)
    with socket.socket() as probe:  # a free port with nothing listening: the agent's broker is down
        probe.bind(("127.0.0.1", 0))
        agent_port = probe.getsockname()[1]
    data = agent_config(tmp_path, agent_port, fps=20, interval=0.5)
    log = tmp_path / "agent.log"
    agent = start_agent(write_agent_config(tmp_path, data), log)
    proxy = None
    try:
        _wait_log(log, "connection refused", timeout=60)
        time.sleep(3)
        proxy = CuttingProxy(broker.port, port=agent_port)  # the broker comes up (the subscriber is ready)
        collector.wait_for(lambda c: any(m["replay"] for m in c.json("/metrics")) and len(c.json("/metrics")) >= 8,
                           timeout=40, what="the backlog")
    finally:
        code = stop_agent(agent)
        if proxy is not None:
            proxy.close()
        broker.stop()
    assert code == 0
    ok, numbers = _continuous(collector, "/metrics")
    assert ok, numbers


class CuttingProxy:
    """A TCP proxy on loopback whose connections can be cut at will (a link that fails mid-stream)."""

    def __init__(self, target_port, port=0):
        self.target = target_port
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.pairs = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass

    def close(self):
        self.server.close()
        self.cut()


def test_link_cut_through_a_proxy_loses_no_seq(tmp_path):
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker").start()
    proxy = CuttingProxy(broker.port)
    collector = Collector(broker.port)
    assert collector.subscribed.wait(10)
    data = agent_config(tmp_path, proxy.port, fps=20, interval=0.3)
    data["model"]["thresholds"]["min_area_px"] = 200
    log = tmp_path / "agent.log"
    agent = start_agent(write_agent_config(tmp_path, data), log)
    try:
        collector.wait_for(lambda c: len(c.json("/metrics")) >= 2, timeout=60, what="metrics")
        for _ in range(4):
            proxy.cut()
            time.sleep(2.5)
        collector.wait_for(lambda c: c.json("/metrics")[-1]["mqtt_connects_total"] >= 4, timeout=30,
                           what="reconnects")
        time.sleep(2)
    finally:
        code = stop_agent(agent)
        proxy.close()
        broker.stop()
    assert code == 0
    for suffix in ("/metrics", "/events/defect"):
        ok, numbers = _continuous(collector, suffix)
        assert ok, (suffix, numbers)
    assert "lost the broker" in log.read_text()


def test_sigkill_during_outbox_writes_keeps_the_outbox_whole(tmp_path):
    import signal
    import sqlite3

    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")  # down: every message is written to the outbox and stays
    data = agent_config(tmp_path, broker.port, fps=40, interval=0.2)
    data["model"]["thresholds"]["min_area_px"] = 10  # many events: the outbox writes all the time
    config = write_agent_config(tmp_path, data)
    for round_ in range(3):
        log = tmp_path / "agent-{}.log".format(round_)
        agent = start_agent(config, log)
        _wait_log(log, "running: 1 source(s)", timeout=60)
        time.sleep(1.5 + 0.37 * round_)
        assert stop_agent(agent, sig=signal.SIGKILL) == -signal.SIGKILL
    db = sqlite3.connect(str(tmp_path / "state" / "outbox.sqlite"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    db.close()
    assert stored > 0
    broker.start()
    collector = Collector(broker.port)
    log = tmp_path / "agent-last.log"
    agent = start_agent(config, log)
    try:
        collector.wait_for(lambda c: len({m["session"] for m in c.json("/metrics")}) >= 4, timeout=60,
                           what="the backlog of the three killed sessions")
        time.sleep(2)
    finally:
        code = stop_agent(agent)
        broker.stop()
    assert code == 0
    for suffix in ("/metrics", "/events/defect"):
        messages = collector.json(suffix)
        for session in {m["session"] for m in messages}:
            numbers = seqs(messages, session)
            # committed rows all arrive: a kill can only cut a session's tail, never leave a hole
            assert numbers == list(range(numbers[0], numbers[-1] + 1)) and numbers[0] == 1, (suffix, numbers)
