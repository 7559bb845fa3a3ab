"""Build progress for people: a redrawn bar on a terminal, a log line every few seconds otherwise."""

import logging
import time
from typing import IO, Any, Optional

log = logging.getLogger("edge_agent.engine")


class ProgressPrinter:
    def __init__(self, stream: IO[str], interval: float = 5.0, width: int = 30) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = interval
        self.width = width
        self._last_log = 0.0
        self._last_text = ""

    def __call__(self, text: str, fraction: Optional[float]) -> None:
        if self.tty:
            if fraction is None:
                bar = "[" + "." * self.width + "]"
            else:
                done = int(round(max(0.0, min(1.0, fraction)) * self.width))
                bar = "[" + "#" * done + "." * (self.width - done) + "] {:3.0f}%".format(100 * fraction)
            self.stream.write("\r\x1b[2K{} {}".format(bar, text)[:200])
            self.stream.flush()
            return
        now = time.monotonic()
        # a log file gets a line per new phase and at most one every `interval` s within a phase
        if now - self._last_log >= self.interval or text.split(":")[0] != self._last_text.split(":")[0]:
            log.info("%s%s", text, "" if fraction is None else " ({:.0%})".format(fraction))
            self._last_log = now
        self._last_text = text

    def __enter__(self) -> "ProgressPrinter":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
