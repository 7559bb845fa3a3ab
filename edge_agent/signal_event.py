"""An event that signal handlers may set: `threading.Event` is not one.

A Python signal handler runs on the main thread between two bytecodes, possibly while that thread
is inside `Event.wait()` or `Event.clear()` and holds the event's internal lock. `Event.set()` in
the handler then waits for that lock forever, and every later signal stacks another waiting
handler. Seen in the soak (`scripts/soak.py`): after a burst of SIGHUPs, `edge-agent run` logged
each "received SIGHUP" but applied no reload, and the SIGTERM at the end did not stop it.

`SignalSafeEvent.set()` takes no lock: it sets a flag and writes a byte to a non-blocking pipe;
`wait()` polls the pipe (`poll`, not `select`: select cannot watch a descriptor numbered 1024 or
above, which a process with many cameras and sockets may reach). Any thread may set it too (the
frame loop wakes the daemon's main thread when it ends); one thread waits on it.
"""

import math
import os
import select
import threading
import time
import weakref
from typing import Optional, Union


class SignalSafeEvent:
    def __init__(self) -> None:
        self._flag = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._poll = select.poll()
        self._poll.register(self._read, select.POLLIN)
        # closed with the object: a late set() from another thread never writes to a closed fd
        weakref.finalize(self, _close, self._read, self._write)

    def set(self) -> None:
        self._flag = True
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:  # the pipe is full: a wake-up is pending anyway
            pass

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        self._flag = False
        self._drain()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once set; False when `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._flag:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            ready = self._poll.poll(None if remaining is None else max(1, math.ceil(remaining * 1000)))
            if ready:  # a set() (the flag is checked again after the drain) or a byte left by a clear() race
                self._drain()
        return True

    def _drain(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass


StopEvent = Union[threading.Event, SignalSafeEvent]  # what a loop that is told to stop waits on


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)
