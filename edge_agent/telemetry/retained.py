"""Retained state messages other components publish through telemetry (rollout's `deployment`):
each change is sent in order while connected, and the latest one again at every connection."""

import threading
from typing import Dict, List, Tuple

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
