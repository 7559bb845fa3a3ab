"""Health: what is wrong with the agent right now, as reasons that its components report.

A component reports a problem under its own key and clears it when the problem is gone; the
agent's state is `online` while no problem is reported and `degraded` while any is. Anyone may
report: a source that cannot be opened, the supervisor of background threads, the sanity watch on
model outputs, telemetry's own checks (pipeline stalled, outbox filling). Readers (the MQTT status
message, the Prometheus endpoint) take a snapshot; writers never wait on them.

    health.report("source cam0", "cannot open /dev/video0; retrying in 4 s")
    health.clear("source cam0")
"""

import threading
from typing import Dict, List, NamedTuple, Optional

ONLINE = "online"
DEGRADED = "degraded"


class Snapshot(NamedTuple):
    state: str  # online / degraded
    reasons: List[str]  # "key: reason", sorted by key
    version: int  # changes whenever a problem is reported, changed or cleared


class Health:
    def __init__(self) -> None:
        self._problems: Dict[str, str] = {}
        self._version = 0
        self._lock = threading.Lock()

    def report(self, key: str, reason: Optional[str]) -> None:
        """Set the problem of `key` (a short component name); None or "" clears it."""
        with self._lock:
            if not reason:
                if self._problems.pop(key, None) is not None:
                    self._version += 1
            elif self._problems.get(key) != reason:
                self._problems[key] = reason
                self._version += 1

    def clear(self, key: str) -> None:
        self.report(key, None)

    def snapshot(self) -> Snapshot:
        with self._lock:
            reasons = ["{}: {}".format(key, self._problems[key]) for key in sorted(self._problems)]
            return Snapshot(DEGRADED if reasons else ONLINE, reasons, self._version)
