"""Logging to stderr, read by a person in a terminal or by journald under systemd.

Under systemd, stderr is a journal stream (systemd names it in $JOURNAL_STREAM). Each line then starts
with its syslog priority, "<3>" for an error, so that `journalctl -p err -u edge-agent` finds errors,
and carries no timestamp: journald stamps every line itself.
"""

import logging
import os
import sys
from typing import IO, Optional, Union

# Python level -> syslog priority (sd-daemon(3)): CRITICAL 2, ERROR 3, WARNING 4, INFO 6, DEBUG 7
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def journal_priority(levelno: int) -> int:
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return 7


class JournalFormatter(logging.Formatter):
    """Prefixes every line with the record's priority: a traceback's lines are separate journal entries
    and must keep the error's priority too."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = "<{}>".format(journal_priority(record.levelno))
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def is_journal_stream(stream: IO[str]) -> bool:
    """True when `stream` is the journal stream systemd passed ($JOURNAL_STREAM is "device:inode")."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def setup_logging(level: Union[str, int], tag: str = "", stream: Optional[IO[str]] = None) -> None:
    """Log at `level` ("info", "debug", ...) to stderr; `tag` marks a child process's lines (e.g. "[build]")."""
    stream = stream or sys.stderr
    if is_journal_stream(stream):
        formatter: logging.Formatter = JournalFormatter("%(levelname)s %(name)s" + tag + ": %(message)s")
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s" + tag + ": %(message)s")
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()) if isinstance(level, str) else level)
