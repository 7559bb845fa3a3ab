"""Test-only entry point: `edge-agent` with faults injected from the environment.

    python tests/service/daemon_harness.py run --config FILE

EA_TEST_SLOW_BUILD=N      prepare_model reports "building engine" N times, 0.3 s apart, first
EA_TEST_STALL_AFTER=N     the frame loop blocks forever inside a stage after N frames
EA_TEST_DRAIN_TIMEOUT=S   shorter bound for draining the frame loop on stop
EA_TEST_TELEMETRY_DIES_AFTER=S  the telemetry thread raises S seconds after its first send attempt
EA_TEST_TELEMETRY_FAILURES=N    ... N times only (default: every time from then on)

The product code has no test hooks: the faults are patched in here, from outside.
"""

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import edge_agent.agent  # noqa: E402
import edge_agent.pipeline  # noqa: E402
import edge_agent.service  # noqa: E402
import edge_agent.telemetry.sink  # noqa: E402
from edge_agent.cli import main  # noqa: E402


def _slow_build(steps: int) -> None:
    real = edge_agent.agent.prepare_model

    def prepare_model(config, progress=None, force=False):
        for step in range(steps):
            if progress is not None:
                progress("building engine", step / steps)
            time.sleep(0.3)
        return real(config, progress=progress, force=force)

    edge_agent.agent.prepare_model = prepare_model


def _stall_after(frames: int) -> None:
    real = edge_agent.pipeline.Pipeline._finish
    never = threading.Event()

    def _finish(self, batch, outputs):
        if self.frames >= frames:
            print("harness: stalling the frame loop after {} frames".format(self.frames), file=sys.stderr,
                  flush=True)
            never.wait()
        real(self, batch, outputs)

    edge_agent.pipeline.Pipeline._finish = _finish


def _telemetry_dies_after(seconds: float, failures: int) -> None:
    real = edge_agent.telemetry.sink.Telemetry._send
    first = []
    raised = []

    def _send(self):
        first.append(time.monotonic())
        if time.monotonic() - first[0] >= seconds and len(raised) < failures:
            raised.append(1)
            print("harness: killing the telemetry thread", file=sys.stderr, flush=True)
            raise RuntimeError("harness: injected telemetry failure")
        real(self)

    edge_agent.telemetry.sink.Telemetry._send = _send


if __name__ == "__main__":
    if os.environ.get("EA_TEST_SLOW_BUILD"):
        _slow_build(int(os.environ["EA_TEST_SLOW_BUILD"]))
    if os.environ.get("EA_TEST_STALL_AFTER"):
        _stall_after(int(os.environ["EA_TEST_STALL_AFTER"]))
    if os.environ.get("EA_TEST_DRAIN_TIMEOUT"):
        edge_agent.service.DRAIN_TIMEOUT_S = float(os.environ["EA_TEST_DRAIN_TIMEOUT"])
    if os.environ.get("EA_TEST_TELEMETRY_DIES_AFTER"):
        _telemetry_dies_after(float(os.environ["EA_TEST_TELEMETRY_DIES_AFTER"]),
                              int(os.environ.get("EA_TEST_TELEMETRY_FAILURES", "1000000")))
    sys.exit(main(sys.argv[1:]))
