"""Rollouts beside a running pipeline: what `run` and `demo` share."""

import contextlib
from typing import Any, Iterator, Optional

from edge_agent.config import AgentConfig
from edge_agent.pipeline import Pipeline
from edge_agent.rollout.controller import Rollout
from edge_agent.rollout.store import effective_config

__all__ = ["effective_config", "rollout_session"]


@contextlib.contextmanager
def rollout_session(base: AgentConfig, serving: AgentConfig, pipeline: Pipeline,
                    telemetry: Any = None) -> Iterator[Optional[Rollout]]:
    """A started rollout thread for `pipeline` (None when rollout.enabled is false); closed on exit,
    before the pipeline stops, so no swap races the teardown."""
    if not base.rollout.enabled:
        yield None
        return
    rollout = Rollout(base, serving, pipeline, telemetry).start()
    try:
        yield rollout
    finally:
        rollout.close()
