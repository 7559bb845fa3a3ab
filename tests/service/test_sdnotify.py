"""The notify protocol over a real Unix datagram socket, as systemd receives it."""

import os
import socket

from edge_agent.sdnotify import Notifier


def test_messages_arrive_as_systemd_parses_them(notify):
    notifier = Notifier(notify.path, watchdog_usec=2_000_000)
    assert notifier.ready("running: 1 source(s)")
    assert notifier.watchdog()
    assert notifier.extend_timeout(90, "building engine 40 %")
    assert notifier.status("running 38.0 fps\nsecond line")
    assert notifier.stopping("stopping")
    notify.wait_for("STOPPING", "1", timeout=5)
    messages = [m for _, m in notify.messages]
    assert messages[0] == {"READY": "1", "STATUS": "running: 1 source(s)", "MAINPID": str(os.getpid())}
    assert messages[1] == {"WATCHDOG": "1"}
    assert messages[2] == {"EXTEND_TIMEOUT_USEC": "90000000", "STATUS": "building engine 40 %"}
    assert messages[3] == {"STATUS": "running 38.0 fps second line"}  # one line: a newline would end the field
    assert messages[4] == {"STOPPING": "1", "STATUS": "stopping"}
    assert notifier.watchdog_interval_s == 1.0
    notifier.close()


def test_abstract_namespace_socket():
    name = "edge-agent-test-{}".format(os.getpid())
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(5)
    try:
        assert Notifier("@" + name).watchdog()
        assert server.recv(100) == b"WATCHDOG=1"
    finally:
        server.close()


def test_environment(monkeypatch, notify):
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier.from_environment()
    assert notifier.enabled and notifier.watchdog_interval_s == 15.0
    # the watchdog belongs to another process (a parent that exec'd us keeps its variables)
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier.from_environment().watchdog_interval_s is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier.from_environment().watchdog_interval_s == 15.0


def test_without_systemd_everything_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = Notifier.from_environment()
    assert not notifier.enabled
    assert notifier.ready("x") is False and notifier.watchdog() is False
    assert notifier.watchdog_interval_s is None


def test_vanished_socket_does_not_raise(short_tmp, caplog):
    notifier = Notifier(str(short_tmp / "gone.sock"))
    assert notifier.status("a") is False
    assert notifier.status("b") is False
    assert sum("cannot notify systemd" in r.message for r in caplog.records) == 1  # said once, not per ping
