"""Build progress for people: a redrawn bar on a terminal, a few log lines otherwise.

A log (a journal, a file, a pipe) gets one line when a phase starts, one per 25 % of it, and one
every `interval` s while a phase without a fraction (a TensorRT build) goes on, never a line per
image.
"""

import logging
import time
from typing import IO, Any, Optional

log = logging.getLogger("edge_agent.engine")


class ProgressLog:
    """Progress as log lines: at a new phase, at each 25 % step, else at most every `interval` s."""

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self._last_log = 0.0
        self._phase: Optional[str] = None
        self._quarter: Optional[int] = None

    def __call__(self, text: str, fraction: Optional[float]) -> None:
        now = time.monotonic()
        phase = text.split(":")[0]
        quarter = None if fraction is None else int(max(0.0, min(1.0, fraction)) * 4)
        if phase != self._phase or quarter != self._quarter or now - self._last_log >= self.interval:
            log.info("%s%s", text, "" if fraction is None else " ({:.0%})".format(fraction))
            self._last_log = now
        self._phase, self._quarter = phase, quarter


class ProgressPrinter:
    def __init__(self, stream: IO[str], interval: float = 30.0, width: int = 30) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.width = width
        self._log = ProgressLog(interval)

    def __call__(self, text: str, fraction: Optional[float]) -> None:
        if not self.tty:
            self._log(text, fraction)
            return
        if fraction is None:
            bar = "[" + "." * self.width + "]"
        else:
            done = int(round(max(0.0, min(1.0, fraction)) * self.width))
            bar = "[" + "#" * done + "." * (self.width - done) + "] {:3.0f}%".format(100 * fraction)
        self.stream.write("\r\x1b[2K{} {}".format(bar, text)[:200])
        self.stream.flush()

    def __enter__(self) -> "ProgressPrinter":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
