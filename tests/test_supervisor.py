"""The supervisor restarts a failing background thread with backoff, counts and reports it."""

import threading
import time

from edge_agent.supervisor import Supervisor


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_crashing_task_is_restarted_with_backoff_and_counted():
    supervisor = Supervisor()
    changes = []
    supervisor.add_listener(changes.append)
    runs = []

    def work(stop):
        runs.append(time.monotonic())
        if len(runs) <= 3:
            raise RecursionError("maximum recursion depth exceeded")
        stop.wait()

    task = supervisor.spawn("worker", work, backoff_initial_s=0.05, backoff_max_s=1.0)
    assert _wait_for(lambda: len(runs) == 4)
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # doubling backoff, no busy loop
    assert _wait_for(lambda: task.status().state == "running")
    assert task.status().failures == 3 and supervisor.failures() == {"worker": 3}
    assert any(c.state == "restarting" and "RecursionError" in c.reason for c in changes)
    assert not supervisor.problems()
    task.stop()
    assert task.join(2.0)
    assert task.status().state == "stopped"
    assert supervisor.tasks() == []  # ended tasks are forgotten; their failures stay counted


def test_recovery_fails_after_repeated_failures_and_heals_when_it_runs_again():
    supervisor = Supervisor()
    healthy = threading.Event()

    def work(stop):
        if not healthy.is_set():
            raise OSError("database or disk is full")
        stop.wait()

    task = supervisor.spawn("writer", work, backoff_initial_s=0.01, backoff_max_s=0.02, give_up_after=3)
    assert _wait_for(lambda: bool(supervisor.recovery_failed()))
    status = supervisor.recovery_failed()[0]
    assert status.name == "writer" and status.state == "failed" and "disk is full" in status.reason
    healthy.set()
    assert _wait_for(lambda: task.status().state == "running")
    assert not supervisor.recovery_failed()
    task.stop()
    task.join(2.0)


def test_a_task_that_stops_beating_is_stuck():
    supervisor = Supervisor()
    release = threading.Event()
    task = supervisor.spawn("probe", lambda stop: release.wait(5), stall_s=0.1)
    assert _wait_for(lambda: task.status().state == "stuck")
    assert supervisor.recovery_failed()[0].name == "probe"
    release.set()
    task.join(2.0)


def test_stop_during_backoff_is_prompt_and_cleanup_runs_once():
    supervisor = Supervisor()
    exits = []

    def work(stop):
        raise ValueError("bug")

    task = supervisor.spawn("src", work, backoff_initial_s=30.0, on_exit=lambda: exits.append(1))
    assert _wait_for(lambda: task.status().state == "restarting")
    started = time.monotonic()
    task.stop()
    assert task.join(2.0) and time.monotonic() - started < 1.0
    assert exits == [1]


def test_a_task_that_returns_is_finished_not_restarted():
    supervisor = Supervisor()
    runs = []
    task = supervisor.spawn("file", lambda stop: runs.append(1))
    assert task.join(2.0)
    assert runs == [1] and task.status().state == "finished"


def test_a_served_socketserver_stops_within_its_poll_even_before_it_ran():
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from edge_agent.supervisor import serve

    supervisor = Supervisor()
    for start_first in (True, False):
        server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        task = supervisor.spawn("http", serve(server, poll_s=0.05), start=start_first)
        task.stop()  # serve_forever's shutdown() would wait forever here when the loop never ran
        if not start_first:
            task.start()
        started = time.monotonic()
        assert task.join(2.0) and time.monotonic() - started < 1.0
        server.server_close()
