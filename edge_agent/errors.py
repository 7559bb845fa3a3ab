"""Errors a user can act on: the CLI prints their text (no traceback) and exits non-zero."""


class EdgeAgentError(Exception):
    """Base for problems caused by input or environment, with a message that says how to fix them."""

    exit_code = 1


class ConfigError(EdgeAgentError):
    """The configuration is invalid; the message names the key, the value and what is allowed."""

    exit_code = 2


class ModelError(EdgeAgentError):
    """The model file cannot be loaded or does not match the configuration."""


class BackendUnavailable(EdgeAgentError):
    """The selected backend cannot run here (a missing library or device)."""


class EngineError(EdgeAgentError):
    """Preparing or building a model failed (calibration, quantization, TensorRT build, cache)."""


class StopRequested(EdgeAgentError):
    """A stop (SIGTERM/SIGINT) arrived during a long step such as an engine build: not a failure."""

    exit_code = 0
