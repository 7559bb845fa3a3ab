"""The rollout's threads are supervised too: the rollout thread crashes once beside a running line
and handles the next request; the build governor crashes once with the build child suspended,
resumes it, and governs again after its restart."""

import subprocess
import sys

import psutil
import pytest
from rollout.test_probation import Line, config_for

from edge_agent.engine.cache import write_json_atomic
from edge_agent.rollout.watch import BuildGovernor

from .supervision_helpers import SupervisorWatch, fail_once, wait_for
from onnx_models import dark_spot_model


@pytest.fixture
def supervised():
    watch = SupervisorWatch()
    yield watch
    watch.close()


def test_the_rollout_thread_restarts_and_handles_the_next_request(tmp_path, supervised, monkeypatch):
    model = dark_spot_model(tmp_path / "old.onnx")
    with Line(config_for(tmp_path, model)) as line:
        fail_once(monkeypatch, line.rollout, "_check_probation", OSError(5, "Input/output error"))
        supervised.assert_recovered("rollout", "Input/output error")
        store = line.rollout.store
        store.desired_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(store.desired_path, {"rollout_id": "r-after", "url": str(model), "sha256": "ab" * 32,
                                               "size": model.stat().st_size})
        report = line.wait("r-after", ("rejected",), timeout=60)
    assert "SHA-256" in report["reason"], report


class _Line:
    frames = 0  # a line that stopped: every look is a drop, so the governor pauses the build each time


def test_the_build_governor_restarts_resumes_the_build_and_governs_again(supervised, monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process = psutil.Process(child.pid)
    governor = BuildGovernor(_Line(), max_drop=0.2, period_s=0.1)
    governor.baseline_fps = 30.0
    try:
        # the first pause fails after the child was suspended: the loop must not leave it so
        fail_once(monkeypatch, governor, "_suspend", psutil.AccessDenied(child.pid),
                  before=lambda: process.suspend())
        at_restart = []  # the child's state when the supervisor reports the failure
        supervised.on_change(lambda status: status.name == "rollout-governor" and status.state == "restarting"
                             and at_restart.append(process.status()))
        governor.attach(child.pid)
        supervised.assert_recovered("rollout-governor", "AccessDenied")
        assert at_restart and at_restart[0] != psutil.STATUS_STOPPED, at_restart
        wait_for(lambda: governor.pauses >= 3, what="pauses after the restart")
    finally:
        governor.close()
    assert process.status() != psutil.STATUS_STOPPED
    assert governor.figures()["build_pauses"] == governor.pauses and governor.samples
    child.kill()
    child.wait(10)
