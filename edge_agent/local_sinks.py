"""The local sinks a run opens besides MQTT, in the order the frame loop calls them: the evidence
store (it names the evidence file that the MQTT event and the jsonl line carry), then the caller's
telemetry, the jsonl file and the live view. Shared by `run` and `demo`. Their threads are
supervised (edge_agent.supervisor), which reports a failing one in the agent's health."""

import logging
from typing import Any, Callable, List, Optional

from edge_agent.config import AgentConfig
from edge_agent.metrics import Registry
from edge_agent.paths import state_dir
from edge_agent.pipeline import ResultSink

log = logging.getLogger(__name__)


class LocalSinks:
    def __init__(self) -> None:
        self.evidence: Any = None
        self.jsonl: Any = None
        self.view: Any = None

    def ordered(self, telemetry: Optional[ResultSink]) -> List[ResultSink]:
        return [s for s in (self.evidence, telemetry, self.jsonl, self.view) if s is not None]

    def close(self) -> None:
        for sink in (self.view, self.jsonl, self.evidence):
            if sink is not None:
                try:
                    sink.close()
                except Exception:  # one sink failing to close must not keep the others open
                    log.exception("closing %s failed", type(sink).__name__)


def open_local_sinks(config: AgentConfig, registry: Registry,
                     view_state: Optional[Callable[[], Any]] = None) -> LocalSinks:
    """Start what the config enables; on a failure, close what was started and re-raise."""
    sinks = LocalSinks()
    folder = state_dir(config)
    try:
        if config.evidence.enabled:
            from edge_agent.evidence import EvidenceStore

            sinks.evidence = EvidenceStore(config.evidence, config.evidence.path or folder / "evidence",
                                           config.model.output.defect_classes, registry).start()
        if config.sinks.jsonl.enabled:
            from edge_agent.inspection import JsonlSink

            sinks.jsonl = JsonlSink(config.sinks.jsonl, config.sinks.jsonl.path or folder / "results.jsonl",
                                    registry).start()
        if config.view.listen:
            from edge_agent.view import LiveView

            sinks.view = LiveView(config.view, [s.name for s in config.sources], config.model.output.defect_classes,
                                  registry, config.view.calibration_dir or folder / "calibration", view_state).start()
    except BaseException:
        sinks.close()
        raise
    return sinks
