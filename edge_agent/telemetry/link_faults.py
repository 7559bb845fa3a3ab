"""What the broker link's failures mean, so that none of them repeats forever in silence.

- `PacketGuard`: a queued message larger than the configured cap or the broker's announced
  maximum packet size (MQTT v5 CONNACK) can never be delivered; sending it gets the connection
  closed, and the outbox would resend it first on every reconnect. The guard names such rows
  before they are sent, and a row that was in flight each time the broker closed the connection
  for a size or protocol reason (brokers that enforce a limit without announcing it).
- `FlapDetector`: connections that the broker closes seconds after accepting them, again and
  again. The usual cause is a second client with the same client id (two agents with the same
  device.id take the session from each other); the broker says nothing more than "connection lost".
- `LinkTrouble`: the link's state in words, for the health line and the log: one warning per
  distinct problem, not one per retry, and a diagnosis (`BrokerLink.diagnose`) when a connection
  fails without a reason (paho's on_connect_fail does not fire once TCP connected).
"""

import collections
import logging
import threading
import time
from typing import Any, Deque, Dict, Optional

log = logging.getLogger(__name__)

PUBLISH_OVERHEAD = 16  # fixed header, remaining length, topic length, packet id, v5 property length
STRIKES = 2  # size/protocol disconnects with the same row in flight before it is moved aside
SIZE_REASONS = ("packet too large", "protocol error", "malformed packet", "quota exceeded")
BIRTH_ROW = -1  # the birth message is not an outbox row; the guard tracks it under this id
FLAP_WINDOW_S = 60.0
FLAP_SHORT_S = 10.0  # a connection lost sooner than this after it was made counts as a flap
FLAP_COUNT = 3


def size_reason(reason: str) -> bool:
    """A disconnect reason brokers give for a packet they will not take."""
    return any(word in reason.lower() for word in SIZE_REASONS)


def packet_size(topic: str, payload: bytes) -> int:
    return len(topic.encode("utf-8")) + len(payload) + PUBLISH_OVERHEAD


class PacketGuard:
    def __init__(self, cap_bytes: int) -> None:
        self.cap_bytes = cap_bytes
        self.broker_max: Optional[int] = None
        self.learned_max: Optional[int] = None  # learned from size disconnects (see `disconnected`)
        self.largest_acked = 0
        self._sizes: Dict[int, int] = {}  # row id -> packet size, while in flight
        self._strikes: Dict[int, int] = {}

    @property
    def limit(self) -> int:
        return min(x for x in (self.cap_bytes, self.broker_max, self.learned_max) if x)

    def too_large(self, topic: str, payload: bytes) -> Optional[str]:
        """Why this message can never be sent, or None."""
        size = packet_size(topic, payload)
        if size <= self.limit:
            return None
        if self.learned_max and self.learned_max == self.limit:
            return ("{} bytes is more than the broker took so far ({} bytes) and it closes the connection for "
                    "larger packets (an unannounced size limit)".format(size, self.learned_max))
        if self.broker_max and self.broker_max < self.cap_bytes:
            return "{} bytes is more than the broker's maximum packet size of {} bytes".format(size, self.broker_max)
        return "{} bytes is more than mqtt.max_message_kb ({} bytes)".format(size, self.cap_bytes)

    def connected(self, broker_max: Optional[int]) -> None:
        self.broker_max = broker_max or None
        self._sizes.clear()

    def sent(self, row_id: int, size: int) -> None:
        self._sizes[row_id] = size

    def done(self, row_id: int) -> None:
        """Acknowledged: a packet of this size passes."""
        self.largest_acked = max(self.largest_acked, self._sizes.pop(row_id, 0))
        self._strikes.pop(row_id, None)

    def disconnected(self, reason: str) -> Optional[int]:
        """The row to move aside after this disconnect, if the broker keeps refusing it."""
        suspect = None
        if self._sizes and size_reason(reason):
            suspect = max(self._sizes, key=lambda row_id: self._sizes[row_id])
            self._strikes[suspect] = self._strikes.get(suspect, 0) + 1
            if self._strikes[suspect] < STRIKES:
                suspect = None
            else:
                self._strikes.pop(suspect)
                # What is at least this large will not pass either. The limit lies between the largest
                # packet acknowledged and this one: take the safe end (a little too strict at worst,
                # every rejection logged and counted) so that one lesson stops the reconnect storm.
                size = self._sizes[suspect] - 1
                if self.largest_acked >= 1024:
                    size = min(size, self.largest_acked)
                self.learned_max = min(self.learned_max or size, size)
        self._sizes.clear()
        return suspect


class FlapDetector:
    def __init__(self) -> None:
        self._connected_at: Optional[float] = None
        self._short: Deque[float] = collections.deque()

    def connected(self) -> None:
        self._connected_at = time.monotonic()

    def lost(self) -> bool:
        """True when connections keep being closed right after they were made."""
        now = time.monotonic()
        if self._connected_at is not None and now - self._connected_at < FLAP_SHORT_S:
            self._short.append(now)
        self._connected_at = None
        while self._short and now - self._short[0] > FLAP_WINDOW_S:
            self._short.popleft()
        return len(self._short) >= FLAP_COUNT


class LinkTrouble:
    def __init__(self, link: Any, wake: threading.Event, reconnect_max_s: float, client_id: str,
                 device_id: str) -> None:
        self.link = link  # the BrokerLink: its address, events queue and diagnose()
        self.state = "starting"
        self.problem: Optional[str] = None
        self._wake = wake
        self._reconnect_max_s = reconnect_max_s
        self._client_id = client_id
        self._device_id = device_id
        self._flaps = FlapDetector()

    def describe(self) -> str:
        return self.problem or self.state

    def report(self, text: str) -> None:
        """One log line per distinct problem, not one per retry."""
        if text != self.problem:
            log.warning("telemetry: %s", text)
        self.problem = text

    def solved(self) -> None:
        self.problem = None

    def connected(self) -> None:
        self._flaps.connected()
        self.state = "connected"
        self.problem = None

    def refused(self, reason: str) -> None:
        self.report("broker {} refused the connection: {} (check mqtt.username and the password, and the "
                    "broker's ACL)".format(self.link.address, reason))

    def connect_failed(self) -> None:
        self.state = "connect failed"
        if self.problem is None:
            self._diagnose("connecting")

    def diagnosed(self, why: str) -> None:
        self.report("cannot connect to broker {}: {}; retrying with backoff up to {:.0f} s".format(
            self.link.address, why, self._reconnect_max_s))

    def lost(self, reason: str, was_up: bool, queued: int) -> None:
        """The connection closed (or the handshake after TCP failed: `was_up` False)."""
        self.state = "disconnected"
        if self._flaps.lost() and not size_reason(reason):
            self.report("broker {} keeps closing the connection right after accepting it ({}): most often another "
                        "client uses the same client id '{}' (two agents with device.id '{}'?). Give every board "
                        "its own device.id or mqtt.client_id".format(self.link.address, reason, self._client_id,
                                                                      self._device_id))
        elif was_up:
            log.warning("telemetry: lost the broker %s (%s); %d queued, reconnecting", self.link.address, reason,
                        queued)
        elif self.problem is None or self.problem == "connecting":
            # TCP worked but the MQTT handshake did not (a TLS port, a silent port): paho's
            # on_connect_fail does not fire, so find out why and say it once
            self._diagnose("diagnosing")

    def _diagnose(self, meanwhile: str) -> None:
        self.problem = meanwhile
        threading.Thread(target=self._run_diagnosis, name="telemetry-diagnose", daemon=True).start()

    def _run_diagnosis(self) -> None:
        self.link.events.put(("diagnosis", self.link.diagnose()))
        self._wake.set()
