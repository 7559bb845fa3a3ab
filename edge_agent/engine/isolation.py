"""Run one long preparation step (TensorRT build, INT8 calibration) in a child process.

A TensorRT crash or an out-of-memory kill then ends only the child: the caller gets an
EngineError that names the cause, and stays responsive meanwhile: it reports progress at least
every `heartbeat` seconds (the service turns that into STATUS= / EXTEND_TIMEOUT_USEC=). The child
is started with "spawn", so it inherits no threads or CUDA context from the caller. The step
writes only to the temporary path it is given; the cache deletes that file on any failure.
"""

import importlib
import io
import logging
import multiprocessing
import os
import queue
import signal
import sys
import time
from typing import Any, Callable, Dict, Optional

from edge_agent.engine import Progress
from edge_agent.errors import EdgeAgentError, EngineError

log = logging.getLogger(__name__)


class BuildFailed(EngineError):
    """A preparation step failed in its child process (TensorRT build, quantization, calibration,
    out of memory, crash): the preparation chain falls back to the next precision and, when
    `remember` is true, records the failure under the step's fingerprint so a restart does not
    try again. A child stopped by the caller's own shutdown (SIGTERM, SIGINT) is not remembered."""

    remember = True

# the child was stopped from outside (a service stop), not failed by its own work
_NOT_REMEMBERED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_SIGNAL_HINTS = {
    signal.SIGKILL: "killed by SIGKILL: usually the kernel's out-of-memory killer (see `journalctl -k | grep -i "
                    "oom`). Lower backend.workspace_mb or memory.limit_mb, or stop other programs during the build",
    signal.SIGSEGV: "crashed with a segmentation fault inside the native library",
    signal.SIGABRT: "aborted by the native library (see the log lines above)",
    signal.SIGTERM: "terminated by SIGTERM",
}


def run_isolated(target: str, kwargs: Dict[str, Any], what: str, progress: Progress,
                 heartbeat: float = 5.0, on_start: Optional[Callable[[int], None]] = None,
                 nested: bool = False) -> Any:
    """Call `module:function(report=..., **kwargs)` in a child; return its result or raise BuildFailed.
    `on_start(pid)` lets a caller watch or throttle the child (a rollout bounds its CPU share).
    `nested`: the step itself runs isolated steps (a rollout's candidate builds its variants), so the
    child cannot be a daemonic process; it is still ended here whenever the caller is interrupted."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    child = context.Process(target=_child_main, args=(target, kwargs, messages, logging.getLogger().level),
                            name="edge-agent-" + what.replace(" ", "-"), daemon=not nested)
    started = time.monotonic()
    last_text, last_fraction = what, None
    outcome = None
    progress(what + ": starting", None)
    child.start()
    try:
        if on_start is not None:
            on_start(child.pid)
        while outcome is None:
            try:
                message = messages.get(timeout=heartbeat)
            except queue.Empty:
                if not child.is_alive():
                    outcome = _drain(messages)
                    break
                progress("{} ({:.0f} s)".format(last_text, time.monotonic() - started), last_fraction)
                continue
            if message[0] == "progress":
                last_text, last_fraction = message[1], message[2]
                progress(last_text, last_fraction)
            else:
                outcome = message
        child.join()
    finally:
        if child.is_alive():  # the caller was interrupted: never leave a build running behind
            child.terminate()
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join()
    seconds = time.monotonic() - started
    if outcome is None:
        failed = BuildFailed("{} failed after {:.0f} s: the child process {}.".format(
            what, seconds, _exit_cause(child.exitcode)))
        failed.remember = child.exitcode is None or -child.exitcode not in _NOT_REMEMBERED
        raise failed
    if outcome[0] == "error":
        _, kind, message, exit_code, falls_back = outcome
        # an input problem found in the child (an unreadable calibration image) is the user's to fix,
        # not a failed build: a plain EngineError, which stops the preparation instead of falling back
        error = (BuildFailed if falls_back else EngineError)(
            "{} failed: {}".format(what, message) if kind != "EdgeAgentError" else message)
        error.exit_code = exit_code
        raise error
    return outcome[1]


def _drain(messages: Any) -> Optional[Any]:
    while True:
        try:
            message = messages.get(timeout=0.5)
        except queue.Empty:
            return None
        if message[0] != "progress":
            return message


def _exit_cause(code: Optional[int]) -> str:
    if code is None:
        return "did not report an exit status"
    if code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "signal {}".format(number)
        return _SIGNAL_HINTS.get(number, "was killed by {}".format(name))
    return "exited with status {} without a result".format(code)


class _LogWriter(io.TextIOBase):
    """sys.stdout of the child: what a library prints ("Collecting tensor data ...") becomes debug log
    lines, so stdout stays the parent's (one JSON document with --json)."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                logging.getLogger("edge_agent.engine.library").debug("%s", line.rstrip())
        return len(text)


def _child_main(target: str, kwargs: Dict[str, Any], messages: Any, level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s[build]: %(message)s")
    module_name, function_name = target.split(":")
    # native libraries (TensorRT's builder) write to descriptor 1 directly: point it at stderr (the log)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = _LogWriter()

    def report(text: str, fraction: Optional[float] = None) -> None:
        messages.put(("progress", text, fraction))

    try:
        function = getattr(importlib.import_module(module_name), function_name)
        messages.put(("result", function(report=report, **kwargs)))
    except EdgeAgentError as exc:
        messages.put(("error", "EdgeAgentError", str(exc), exc.exit_code, getattr(exc, "falls_back", True)))
    except Exception as exc:  # anything else still reaches the parent with its type, not a silent exit
        log.exception("%s failed", target)
        messages.put(("error", type(exc).__name__, "{}: {}".format(type(exc).__name__, exc), 1, True))
    messages.close()
    messages.join_thread()
