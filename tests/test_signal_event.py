import resource
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from edge_agent.signal_event import SignalSafeEvent

STORM = textwrap.dedent("""
    import signal, time
    from edge_agent.signal_event import SignalSafeEvent
    event = SignalSafeEvent()
    signal.signal(signal.SIGALRM, lambda *_: event.set())
    signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)  # a signal every 200 us
    end, rounds = time.monotonic() + 2.0, 0
    while time.monotonic() < end:  # the daemon's supervise loop, sped up
        event.wait(0.001)
        event.clear()
        rounds += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    print(rounds)
""")


def test_a_signal_storm_during_wait_and_clear_never_deadlocks():
    """The same loop with a threading.Event deadlocks within a second or two here (its set() in
    the handler waits for the lock the interrupted wait()/clear() holds); run in a child process
    so that a regression fails by timeout instead of hanging the test run."""
    done = subprocess.run([sys.executable, "-c", STORM], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) > 100


def test_wait_returns_when_another_thread_sets_it_and_times_out_otherwise():
    event = SignalSafeEvent()
    started = time.monotonic()
    assert event.wait(0.1) is False
    assert time.monotonic() - started >= 0.1
    threading.Timer(0.05, event.set).start()
    assert event.wait(10) is True and event.is_set()
    event.clear()
    assert not event.is_set() and event.wait(0) is False


def test_many_sets_without_a_wait_do_not_block_the_setter():
    event = SignalSafeEvent()
    for _ in range(200000):  # far more than a pipe holds
        event.set()
    event.clear()
    assert event.wait(0.01) is False


HIGH_FD = textwrap.dedent("""
    import os, resource, threading
    from edge_agent.signal_event import SignalSafeEvent
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the event's pipe lands above 1024
    event = SignalSafeEvent()
    assert event._read >= 1024, event._read
    assert event.wait(0.05) is False
    threading.Timer(0.05, event.set).start()
    print(event.wait(10))
""")


def test_wait_works_when_its_pipe_is_numbered_above_1024():
    """A busy agent (many cameras, sockets, files) can hold that many descriptors; select() cannot
    watch one numbered 1024 or above."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1200:
        pytest.skip("the hard limit on open files is below 1200 here")
    done = subprocess.run([sys.executable, "-c", HIGH_FD], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
