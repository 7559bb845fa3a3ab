"""Crash a supervised background thread once and watch the process-wide supervisor handle it: the
failure counted, the task restarting with the error in the agent's health (made by the daemon's
own listener), then running again with the health cleared."""

import time

from edge_agent.config_loader import load_config
from edge_agent.service import Daemon
from edge_agent.supervisor import SUPERVISOR


def wait_for(predicate, timeout=10.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for {}".format(what))


def fail_once(monkeypatch, target, name, error, before=None):
    """Replace `target.name` so that its first call raises `error` (after `before(*args)` when
    given) and later calls go to the real one."""
    real = getattr(target, name)
    calls = []

    def once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            if before is not None:
                before(*args, **kwargs)
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, once)
    return calls


class SupervisorWatch:
    """Every status change of the supervisor's tasks, with the daemon's health right after it."""

    def __init__(self):
        self.daemon = Daemon(load_config(None, {}))  # only its registry and its listener are used
        self.changes = []
        self._callbacks = []
        self._failures = SUPERVISOR.failures()
        SUPERVISOR.add_listener(self.daemon._on_task_change)
        SUPERVISOR.add_listener(self._record)

    def _record(self, status):
        self.changes.append((status, self.daemon.registry.health.snapshot().reasons))
        for callback in self._callbacks:
            callback(status)

    def on_change(self, callback):
        """`callback(status)` on the task's thread at each change (to look at the world right then)."""
        self._callbacks.append(callback)

    def close(self):
        SUPERVISOR.remove_listener(self._record)
        SUPERVISOR.remove_listener(self.daemon._on_task_change)

    def failures(self, name):
        return SUPERVISOR.failures().get(name, 0) - self._failures.get(name, 0)

    def states(self, name):
        return [status.state for status, _ in self.changes if status.name == name]

    def assert_recovered(self, name, error_text, timeout=10.0):
        """`name` failed once with `error_text`, was reported, and runs again, reported healthy."""
        wait_for(lambda: self.failures(name) == 1 and self.states(name)[-1:] == ["running"]
                 and "restarting" in self.states(name), timeout, "{} to restart".format(name))
        restarting = [(s, reasons) for s, reasons in self.changes if s.name == name and s.state == "restarting"]
        status, reasons = restarting[0]
        assert status.failures == 1 and error_text in status.reason, status
        assert any(r.startswith("thread {}: restarting (1 failures)".format(name)) and error_text in r
                   for r in reasons), reasons
        assert not [r for r in self.daemon.registry.health.snapshot().reasons if r.startswith("thread " + name)]
        assert self.failures(name) == 1
