"""`edge-agent run` with telemetry to a real mosquitto, as systemd runs it: SIGTERM publishes the
retained "stopped" and empties the outbox; with the broker down, SIGTERM still exits 0 well within
TimeoutStopSec and keeps the unsent messages for the next start; an unreachable broker does not
stop the watchdog pings; a failing telemetry thread is restarted, and stops them only when it
keeps failing."""

import json
import signal
import sqlite3
import time
from pathlib import Path

from telemetry.telemetry_helpers import seqs

from service.service_helpers import config_data, write_yaml

STOP_BOUND_S = 30.0  # TimeoutStopSec in systemd/edge-agent.service


def _config(short_tmp: Path, model_path: Path, port: int) -> Path:
    data = config_data(model_path, mqtt={"enabled": True, "host": "127.0.0.1", "port": port,
                                         "metrics_interval_s": 0.5, "reconnect_min_s": 1, "reconnect_max_s": 2},
                       paths={"state_dir": str(short_tmp / "state")})
    data["model"]["thresholds"] = {"min_area_px": 200}  # a few defect events, not hundreds
    return write_yaml(short_tmp / "config.yaml", data)


def _outbox(short_tmp: Path):
    """(topic suffix, payload) of every row left in the daemon's outbox."""
    with sqlite3.connect(str(short_tmp / "state" / "outbox.sqlite")) as db:
        return [(topic.rsplit("/", 1)[-1], json.loads(payload)) for topic, payload in
                db.execute("SELECT topic, payload FROM outbox ORDER BY id")]


def test_sigterm_publishes_stopped_and_flushes_the_outbox(short_tmp, model_path, notify, start_daemon, broker,
                                                         collector_factory):
    collector = collector_factory(broker.port)
    daemon = start_daemon(_config(short_tmp, model_path, broker.port))
    notify.wait_for("READY", "1", timeout=30)
    collector.wait_for(lambda c: len(c.json("/metrics")) >= 4, timeout=30, what="metrics")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(STOP_BOUND_S) == 0, daemon.log
    collector.wait_for(lambda c: c.json("/status") and c.json("/status")[-1]["state"] == "stopped",
                       timeout=10, what='status "stopped"')
    assert _outbox(short_tmp) == [], "messages left unsent after a clean stop"
    session = collector.json("/metrics")[-1]["session"]
    numbers = seqs(collector.json("/metrics"), session)
    assert len(numbers) >= 5 and numbers == list(range(1, numbers[-1] + 1)), numbers
    # the last metrics message (written on close, with the final counts) was delivered too
    assert "telemetry: flush bound reached" not in daemon.log
    assert "Traceback" not in daemon.log and "telemetry stuck" not in daemon.log
    late = collector_factory(broker.port, topic="+/v1/+/+/+/status")
    late.wait_for(lambda c: c.json("/status"), what="retained status")
    assert [s["state"] for s in late.json("/status")] == ["stopped"]


def test_broker_down_keeps_the_watchdog_fed_and_sigterm_keeps_the_backlog(short_tmp, model_path, notify,
                                                                          start_daemon, broker,
                                                                          collector_factory):
    collector = collector_factory(broker.port)
    daemon = start_daemon(_config(short_tmp, model_path, broker.port), watchdog_usec=1_000_000)
    notify.wait_for("READY", "1", timeout=30)
    collector.wait_for(lambda c: len(c.json("/metrics")) >= 2, timeout=30, what="metrics")
    broker.stop()
    down_at = time.monotonic()
    time.sleep(5.0)
    # A network outage is not a reason to restart: pings go on (every 0.5 s) and STATUS says why
    # telemetry is waiting.
    pings = notify.pings_between(down_at, time.monotonic())
    assert len(pings) >= 8, pings
    assert max(b - a for a, b in zip(pings, pings[1:])) < 0.9, pings
    outage = [s for s in notify.statuses() if "broker unreachable" in s]
    assert outage and "connection refused" in outage[-1] and " queued" in outage[-1], notify.statuses()[-5:]

    stop_at = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(STOP_BOUND_S) == 0, daemon.log
    assert time.monotonic() - stop_at < 15.0, "stopping with the broker down took too long"
    left = _outbox(short_tmp)
    assert left and "stay in the outbox for the next start" in daemon.log
    # Nothing lost: every metrics seq of the session was either delivered or is still queued.
    session = collector.json("/metrics")[-1]["session"]
    delivered = set(seqs(collector.json("/metrics"), session))
    queued = {m["seq"] for kind, m in left if kind == "metrics" and m["session"] == session}
    assert queued and max(queued) > max(delivered)
    assert sorted(delivered | queued) == list(range(1, max(queued) + 1))
    assert "Traceback" not in daemon.log and "telemetry stuck" not in daemon.log


def test_a_telemetry_failure_is_restarted_and_loses_nothing(short_tmp, model_path, notify, start_daemon, broker,
                                                            collector_factory):
    collector = collector_factory(broker.port)
    daemon = start_daemon(_config(short_tmp, model_path, broker.port), watchdog_usec=1_000_000, harness=True,
                          env={"EA_TEST_TELEMETRY_DIES_AFTER": "1", "EA_TEST_TELEMETRY_FAILURES": "1"})
    notify.wait_for("READY", "1", timeout=30)
    daemon.wait_for_log("telemetry running again after 1 failure(s)")
    failed_at = time.monotonic()
    count = len(collector.json("/metrics"))
    collector.wait_for(lambda c: len(c.json("/metrics")) >= count + 3, timeout=15, what="metrics after the restart")
    assert len(notify.pings_between(failed_at, time.monotonic())) >= 2  # recovering is not a reason to restart
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(STOP_BOUND_S) == 0, daemon.log
    assert _outbox(short_tmp) == []
    session = collector.json("/metrics")[-1]["session"]
    numbers = seqs(collector.json("/metrics"), session)
    assert numbers == list(range(1, numbers[-1] + 1)), numbers
    assert "telemetry failed (failure 1)" in daemon.log  # logged with its traceback, and counted


def test_telemetry_that_keeps_failing_stops_the_watchdog(short_tmp, model_path, notify, start_daemon, broker):
    daemon = start_daemon(_config(short_tmp, model_path, broker.port), watchdog_usec=1_000_000, harness=True,
                          env={"EA_TEST_TELEMETRY_DIES_AFTER": "1"})
    notify.wait_for("READY", "1", timeout=30)
    daemon.wait_for_log("harness: killing the telemetry thread")
    daemon.wait_for_log("failure 5)", timeout=30)  # restarted with backoff 0.5, 1, 2, 4 s: recovery failed
    gave_up_at = time.monotonic()
    time.sleep(3.0)
    late = notify.pings_between(gave_up_at + 1.2, time.monotonic())
    assert late == [], late
    assert any("telemetry failed" in s and "recovery failed" in s and "watchdog withheld" in s
               for s in notify.statuses()), notify.statuses()[-5:]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(STOP_BOUND_S) == 0, daemon.log
