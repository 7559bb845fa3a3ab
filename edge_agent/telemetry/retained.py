"""Retained states between the agent and its fleet tools, both ways:

- `RetainedStates`: what other components publish through telemetry (rollout's `deployment`):
  each change is sent in order while connected, and the latest one again at every connection.
- `DesiredStates`: what the fleet tools want (`{base}/desired/{name}`, rollout's `deployment`),
  routed to the component that registered for it.
"""

import logging
import threading
from typing import Callable, Dict, List, Optional, Tuple

log = logging.getLogger(__name__)

PENDING_MAX = 100  # a long outage needs only the latest state per topic


class RetainedStates:
    def __init__(self) -> None:
        self._latest: Dict[str, bytes] = {}  # topic -> latest payload (re-sent on connect)
        self._pending: List[Tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def put(self, topic: str, data: bytes) -> None:
        """Any thread."""
        with self._lock:
            self._latest[topic] = data
            self._pending.append((topic, data))
            del self._pending[:-PENDING_MAX]

    def take(self) -> List[Tuple[str, bytes]]:
        """What to send now (the telemetry thread, while connected)."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def reconnected(self) -> None:
        """A new connection: the latest state of every topic is sent again."""
        with self._lock:
            self._pending = list(self._latest.items())


class DesiredStates:
    """The retained desired state arrives at connection, usually before the component (the
    pipeline's rollout) that handles it exists: the latest one is handed over at registration."""

    def __init__(self) -> None:
        self._handlers: Dict[str, Callable[[bytes], None]] = {}
        self._last: Dict[str, bytes] = {}

    def set_handler(self, name: str, handler: Optional[Callable[[bytes], None]]) -> None:
        if handler is None:
            self._handlers.pop(name, None)
            return
        self._handlers[name] = handler
        last = self._last.get(name)
        if last is not None:
            handler(last)

    def received(self, name: str, payload: bytes) -> None:
        """The telemetry thread: whatever the handler does with it, that thread goes on."""
        if not payload:  # an empty retained payload clears the desired state
            return
        self._last[name] = payload
        handler = self._handlers.get(name)
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:
            log.exception("telemetry: desired state %s: the handler failed", name)
