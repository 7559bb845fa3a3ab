"""Agent lifecycle: one ordered start-up and its mirror-image teardown, shared by run and demo."""

import contextlib
import logging
from typing import Callable, Iterator, Optional, Sequence

from edge_agent.backends import create_backend
from edge_agent.backends.base import Backend, PreparedModel
from edge_agent.budget import MemoryBudget
from edge_agent.config import AgentConfig
from edge_agent.engine import Progress, prepare_model
from edge_agent.metrics import Registry
from edge_agent.modelcheck import verify
from edge_agent.pipeline import Pipeline, ResultSink
from edge_agent.trial import verify_outputs

log = logging.getLogger(__name__)


def load_backend(config: AgentConfig, progress: Optional[Progress] = None,
                 prepared: Optional[PreparedModel] = None) -> Backend:
    """Prepare the model for the configured precision (unless `prepared` is given), admit its memory
    plan against the budget (BudgetExceeded before anything is allocated), open the backend; the
    caller closes it. The model is compared with the config first (modelcheck): a mismatch is one
    ModelError line per problem, before anything is built or loaded."""
    verify(config.model)
    if prepared is None:
        prepared = prepare_model(config, progress=progress)
    backend = create_backend(prepared, config)
    backend.slots = config.memory.slots
    backend.budget = MemoryBudget(config.memory.limit_mb, config.memory.margin_mb)
    report = backend.budget.admit(backend.memory_plan())
    log.info("memory plan admitted: %.1f MB of %d MB (%.1f MB available)", report.total_bytes / 2**20,
             config.memory.limit_mb, report.available_bytes / 2**20)
    try:
        backend.open()
    except BaseException:
        backend.close()  # a half-open backend (e.g. the warm-up failed) gives back what it holds
        raise
    return backend


@contextlib.contextmanager
def open_backend(config: AgentConfig, progress: Optional[Progress] = None) -> Iterator[Backend]:
    """`load_backend` that closes the backend on exit."""
    backend = load_backend(config, progress)
    try:
        yield backend
    finally:
        backend.close()


@contextlib.contextmanager
def running_pipeline(config: AgentConfig, registry: Registry, sinks: Sequence[ResultSink] = (),
                     progress: Optional[Progress] = None, backend: Optional[Backend] = None,
                     release: Optional[Callable[[Backend], None]] = None) -> Iterator[Pipeline]:
    """Backend open, sources started; yields the pipeline ready for `run`. Sinks stay the caller's:
    telemetry must outlive the pipeline to flush what the last frames produced. A `backend` already
    opened for this config (a reload's dry run, which ran the trial, or the previous pipeline's) is
    used instead of a new one. At the end the backend goes to `release` (default: closed), which may
    keep it for the next pipeline. A new backend is first tried on a few sample images
    (edge_agent.trial): a failing finding is a ModelError, the same line `edge-agent check` prints."""
    with contextlib.ExitStack() as stack:
        opened = backend is None
        if opened:
            backend = load_backend(config, progress)
        stack.callback(release or Backend.close, backend)
        if opened:
            verify_outputs(config, backend)
        memory = backend.memory()
        log.info("model %s loaded on %s (%s): %.1f MB host, %.1f MB device", config.model.path.name,
                 backend.name, backend.model.precision, memory.host_bytes / 2**20, memory.device_bytes / 2**20)
        if backend.budget is not None:
            backend.budget.publish(registry)
        pipeline = Pipeline(config, backend, registry, sinks)
        pipeline.start()
        try:
            yield pipeline
        finally:
            pipeline.stop()
            if pipeline.backend is not backend:  # a rollout swapped another one in: it is ours to close
                pipeline.backend.close()
