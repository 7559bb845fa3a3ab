"""systemd's notify protocol over the plain Unix datagram socket (no python-systemd needed).

systemd passes the socket path in $NOTIFY_SOCKET (a leading "@" means the abstract namespace) and,
when `WatchdogSec=` is set, the watchdog period in $WATCHDOG_USEC for the process $WATCHDOG_PID.
Outside systemd (a terminal, a test without the variable) every call is a no-op, so the daemon
runs the same everywhere. See sd_notify(3).
"""

import logging
import os
import socket
import threading
from typing import Dict, Optional

log = logging.getLogger(__name__)


class Notifier:
    """Sends `KEY=value` datagrams to the service manager; thread-safe; never raises on send."""

    def __init__(self, address: Optional[str], watchdog_usec: Optional[int] = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._socket: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_environment(cls) -> "Notifier":
        """Reads $NOTIFY_SOCKET and $WATCHDOG_USEC (honoured only when $WATCHDOG_PID is unset or ours)."""
        address = os.environ.get("NOTIFY_SOCKET") or None
        if address is not None and not (address.startswith("/") or address.startswith("@")):
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket; not notifying systemd", address)
            address = None
        watchdog: Optional[int] = None
        pid = os.environ.get("WATCHDOG_PID")
        text = os.environ.get("WATCHDOG_USEC")
        if text and (not pid or pid == str(os.getpid())):
            try:
                watchdog = int(text)
            except ValueError:
                log.warning("WATCHDOG_USEC=%r is not an integer; the watchdog is not fed", text)
            else:
                watchdog = watchdog if watchdog > 0 else None
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> Optional[float]:
        """How often to send WATCHDOG=1: half the period systemd waits, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, **fields: object) -> bool:
        """One datagram with one `KEY=value` line per field; True when it was sent."""
        if self.address is None:
            return False
        message = "\n".join("{}={}".format(k, str(v).replace("\n", " ")) for k, v in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.sendto(message.encode("utf-8"), target)
            except OSError as exc:
                # systemd gone (shutdown) or the socket vanished: say it once, keep running.
                if not self._warned:
                    log.warning("cannot notify systemd at %s: %s", self.address, exc)
                    self._warned = True
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def extend_timeout(self, seconds: float, status: Optional[str] = None) -> bool:
        """Ask for `seconds` more before the start (or stop) timeout fires, e.g. during an engine build."""
        fields: Dict[str, object] = {"EXTEND_TIMEOUT_USEC": int(seconds * 1e6)}
        if status is not None:
            fields["STATUS"] = status
        return self.send(**fields)

    def reloading(self, status: str) -> bool:
        return self.send(RELOADING=1, STATUS=status)

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
