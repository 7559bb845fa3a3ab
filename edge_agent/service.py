"""Daemon lifecycle for `edge-agent run`: ordered start, signal-driven stop, reverse teardown."""

import logging
import signal
import threading
from typing import Any

from edge_agent.agent import running_pipeline
from edge_agent.config import AgentConfig
from edge_agent.status import StatusLine
from edge_agent.telemetry.metrics import Registry
from edge_agent.telemetry.sink import attach_telemetry

log = logging.getLogger(__name__)


def run_daemon(config: AgentConfig) -> int:
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    telemetry = None
    try:
        registry = Registry()
        with running_pipeline(config, registry) as pipeline, StatusLine(registry, interval=30.0):
            telemetry = attach_telemetry(config, registry, pipeline)  # None unless mqtt.enabled
            log.info("running: %d source(s), backend %s", len(pipeline.runners), pipeline.backend.name)
            pipeline.run(stop)
        log.info("stopped after %d frames", pipeline.frames)
        return 0
    finally:
        if telemetry is not None:  # after the pipeline stopped: flushes what the last frames produced
            telemetry.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
