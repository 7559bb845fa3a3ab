"""The outbox rows on their way to the broker: which are in flight, which the broker acknowledged
or refused, and which it can never take.

The telemetry thread owns one `Delivery` per sink. It sends at most `mqtt.inflight_max` rows at a
time, oldest first; a row that was in flight when the connection changed is sent again marked as a
replay (`replay: true`, the consumer may have it already). A refusal in the acknowledgement (MQTT
v5 reason code, e.g. the broker's ACL) keeps the row queued and pauses sending with a backoff
between `mqtt.reconnect_min_s` and `mqtt.reconnect_max_s`. A row larger than the broker takes
(`PacketGuard`) is moved aside before it is sent: resending it would only close the connection.
"""

import time
from typing import Dict, List, Optional, Set, Tuple

from edge_agent.metrics import Histogram
from edge_agent.telemetry.config import MqttConfig
from edge_agent.telemetry.link import BrokerLink
from edge_agent.telemetry.link_faults import PacketGuard, packet_size
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.payloads import with_replay

REFUSED = "refused"
ACCEPTED_AGAIN = "accepted again"


class Delivery:
    def __init__(self, mqtt: MqttConfig, session: str, publish_ms: Histogram) -> None:
        self.mqtt = mqtt
        self.session = session
        self.guard = PacketGuard(mqtt.max_message_kb * 1024)
        self.acked = 0  # rows the broker acknowledged this session
        self._publish_ms = publish_ms
        self._inflight: Dict[int, Tuple[int, float]] = {}  # mid -> (row id, sent at)
        self._resent: Set[int] = set()  # row ids sent on an earlier connection: replayed when sent again
        self._paused_until = 0.0
        self._refusal_backoff = 0.0

    def link_changed(self) -> None:
        """Connected or lost: no acknowledgement comes for what was in flight; it is sent again."""
        self._resent.update(row_id for row_id, _ in self._inflight.values())
        self._inflight.clear()

    def send(self, outbox: Outbox, link: BrokerLink) -> None:
        """Send the oldest rows not in flight, as many as the in-flight window has room for."""
        room = self.mqtt.inflight_max - len(self._inflight)
        if room <= 0 or time.monotonic() < self._paused_until or outbox.rows <= len(self._inflight):
            return
        exclude = [row_id for row_id, _ in self._inflight.values()]
        for row in outbox.pending(room, exclude):
            replay = row.queued_offline or row.session != self.session or row.id in self._resent
            payload = with_replay(row.payload, replay)
            too_large = self.guard.too_large(row.topic, payload)
            if too_large is not None:  # sending it would only get us disconnected, again and again
                outbox.move_aside(row.id, too_large)
                continue
            mid = link.publish(row.topic, payload)
            self._inflight[mid] = (row.id, time.monotonic())
            self.guard.sent(row.id, packet_size(row.topic, payload))

    def ack(self, mid: int, failure: Optional[str], acked: List[int]) -> Optional[str]:
        """The broker answered message `mid`. An acknowledged row's id goes into `acked` (to delete
        from the outbox). Returns REFUSED when the broker did not accept the row (it stays queued,
        sending pauses), ACCEPTED_AGAIN for the first acceptance after refusals, else None."""
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return None  # status/birth, or a message of an earlier connection (already resent)
        row_id, sent = entry
        self.guard.done(row_id)
        if failure is not None:
            self._resent.add(row_id)
            self._refusal_backoff = min(max(self._refusal_backoff * 2, self.mqtt.reconnect_min_s),
                                        self.mqtt.reconnect_max_s)
            self._paused_until = time.monotonic() + self._refusal_backoff
            return REFUSED
        self._publish_ms.observe((time.monotonic() - sent) * 1000.0)
        self._resent.discard(row_id)
        self.acked += 1
        acked.append(row_id)
        if self._refusal_backoff:
            self._refusal_backoff = 0.0
            return ACCEPTED_AGAIN
        return None
