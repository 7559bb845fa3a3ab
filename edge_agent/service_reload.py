"""SIGHUP: a new config is tried out in full before anything of the running one is torn down.

A config can pass the schema and still be unusable: a truncated model, a model of another input
size, a memory limit the model does not fit, a TLS CA or password file that is missing. Tearing
down first and finding out afterwards used to exit the service (and under systemd, loop). So the
dry run opens every resource the new config names while the old pipeline keeps inspecting:

- the broker settings: TLS context built (CA, client certificate and key read), password read,
  state directory writable (the outbox lives there);
- the model: prepared (an engine build runs here, in its child process, with progress), its
  memory plan admitted against the new budget, the backend opened and warmed up, then tried on a
  few sample images (edge_agent.trial: NaN, logits read as probabilities, a normalization mistake).

The opened backend is handed to the new pipeline, so the model is not loaded twice. Both models
are in memory during the swap: on a board too small for that, the reload is refused with the
budget's reason and a restart applies the new config.

A reload that leaves the model alone (thresholds, sources, broker, sinks ...) keeps the loaded
backend: nothing is built, admitted or opened twice, the new pipeline starts on the same session,
and such a reload also works on a board with room for one model only.
"""

import logging
import os
from typing import Optional, Tuple

from edge_agent.agent import load_backend
from edge_agent.backends.base import Backend
from edge_agent.config import AgentConfig
from edge_agent.engine import Progress
from edge_agent.errors import ConfigError
from edge_agent.paths import state_dir
from edge_agent.trial import verify_outputs

log = logging.getLogger(__name__)


def check_telemetry_settings(config: AgentConfig) -> None:
    """Everything `open_telemetry` reads from disk, read now; ConfigError with the reason."""
    if not config.mqtt.enabled:
        return
    from edge_agent.telemetry.link import read_password, tls_context

    tls_context(config.mqtt)
    if config.mqtt.username:
        read_password(config.mqtt)
    folder = state_dir(config)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("paths.state_dir {}: cannot create it ({}); the telemetry outbox lives there.".format(
            folder, exc.strerror or exc)) from None
    if not os.access(str(folder), os.W_OK | os.X_OK):
        raise ConfigError("paths.state_dir {}: not writable by this user; the telemetry outbox lives there.".format(
            folder))


ModelStamp = Tuple[int, int, int]  # size, mtime_ns, inode of the model file


def model_stamp(config: AgentConfig) -> Optional[ModelStamp]:
    """What tells a model file replaced in place (same path) from the loaded one; None: unreadable."""
    try:
        info = os.stat(str(config.model.path))
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns, info.st_ino


def same_backend(loaded: AgentConfig, stamp: Optional[ModelStamp], new: AgentConfig) -> bool:
    """True when `new` (a serving config) would load exactly what `loaded` has loaded: the same model
    file, unchanged on disk since (`stamp`), with the same input/output handling, backend, engine
    and memory settings and batch size. Thresholds are the postprocessor's, not the backend's."""
    return (stamp is not None and model_stamp(new) == stamp and
            loaded.model.model_dump(exclude={"thresholds"}) == new.model.model_dump(exclude={"thresholds"}) and
            (loaded.backend, loaded.engine, loaded.memory, loaded.pipeline.max_batch, loaded.paths.cache_dir) ==
            (new.backend, new.engine, new.memory, new.pipeline.max_batch, new.paths.cache_dir))


def dry_run(config: AgentConfig, serving: AgentConfig, progress: Optional[Progress] = None) -> Backend:
    """Open what `config` needs while the running pipeline goes on (the model of `serving`: the
    config with an active rollout applied); returns the opened backend (the caller hands it to the
    new pipeline or closes it). Raises EdgeAgentError with the reason."""
    check_telemetry_settings(config)
    backend = load_backend(serving, progress)
    try:
        verify_outputs(serving, backend)
    except BaseException:
        backend.close()
        raise
    return backend
