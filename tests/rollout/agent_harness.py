"""Test-only entry point: `edge-agent` with a frame log and injected faults, patched from outside.

    python tests/rollout/agent_harness.py run --config FILE

EA_TEST_FRAME_LOG=PATH   every processed frame appends "source index model-file" to PATH (flushed
                         every 0.2 s): the tests count frames before, during and after a swap
EA_TEST_CRASH_MODEL=STEM inference raises once a model whose file name starts with STEM has run
                         20 batches (a model that breaks at run time, after passing its gate)

The product code has no test hooks: the sink is added by wrapping `running_pipeline`.
"""

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import edge_agent.agent  # noqa: E402
import edge_agent.service  # noqa: E402
from edge_agent.cli import main  # noqa: E402


class FrameLog:
    def __init__(self, path: str) -> None:
        self.handle = open(path, "a", buffering=1 << 16)
        self.pipeline = None
        self.last = time.monotonic()

    def on_result(self, result) -> None:
        self.handle.write("{} {} {}\n".format(result.frame.source, result.frame.index,
                                              self.pipeline.backend.model.source.name))
        if time.monotonic() - self.last > 0.2:
            self.handle.flush()
            self.last = time.monotonic()


def _frame_log(path: str) -> None:
    real = edge_agent.agent.running_pipeline

    @contextlib.contextmanager
    def running_pipeline(config, registry, sinks=(), progress=None, backend=None, release=None):
        log = FrameLog(path)
        with real(config, registry, list(sinks) + [log], progress, backend=backend, release=release) as pipeline:
            log.pipeline = pipeline
            try:
                yield pipeline
            finally:
                log.handle.flush()

    edge_agent.service.running_pipeline = running_pipeline
    edge_agent.agent.running_pipeline = running_pipeline


def _crash_model(stem: str) -> None:
    from edge_agent.backends.onnxruntime import OnnxRuntimeBackend

    real = OnnxRuntimeBackend.wait
    counts = {}
    lock = threading.Lock()

    def wait(self):
        if self.model.source.name.startswith(stem):
            with lock:
                counts[id(self)] = counts.get(id(self), 0) + 1
                if counts[id(self)] > 20:
                    raise RuntimeError("harness: injected inference failure of {}".format(self.model.source.name))
        return real(self)

    OnnxRuntimeBackend.wait = wait


if __name__ == "__main__":
    if os.environ.get("EA_TEST_FRAME_LOG"):
        _frame_log(os.environ["EA_TEST_FRAME_LOG"])
    if os.environ.get("EA_TEST_CRASH_MODEL"):
        _crash_model(os.environ["EA_TEST_CRASH_MODEL"])
    sys.exit(main(sys.argv[1:]))
