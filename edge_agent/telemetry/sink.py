"""The telemetry sink: the frame loop appends defect records to a bounded deque; one thread turns
them and the metrics registry into messages, stores them in the outbox and sends them.

Frame loop  --on_result-->  deque (bounded, O(1))  -->  telemetry thread  -->  SQLite outbox
                                                          |  ^ acks (paho thread, via queue)
                                                          v  |
                                                      paho client  -->  broker

This module runs the telemetry thread (reconnects, births and status, flush on stop); payloads
are built by `messages.py`, outbox rows are sent and acknowledged by `delivery.py`, and commands
are read and answered by `commands.py`.
"""

import collections
import logging
import os
import queue
import threading
import time
import uuid
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from edge_agent.config import AgentConfig
from edge_agent.metrics import Registry
from edge_agent.paths import state_dir
from edge_agent.pipeline import InferenceResult, ResultSink
from edge_agent.supervisor import SUPERVISOR, Task
from edge_agent.telemetry.availability import AvailabilityLink
from edge_agent.telemetry.checks import TelemetryChecks
from edge_agent.telemetry.commands import Action, run_command
from edge_agent.telemetry.crops import copy_crop
from edge_agent.telemetry.delivery import ACCEPTED_AGAIN, REFUSED, Delivery
from edge_agent.telemetry.discovery import discovery_payload, discovery_topic
from edge_agent.telemetry.link import BrokerLink, reply_properties, valid_response_topic
from edge_agent.telemetry.link_faults import BIRTH_ROW, LinkTrouble, packet_size
from edge_agent.telemetry.messages import MessageBuilder
from edge_agent.telemetry.outbox import KIND_REPLY, NewMessage, Outbox
from edge_agent.telemetry.payloads import DefectRecord, Envelope, Topics, encode, with_replay
from edge_agent.telemetry.probe import SystemProbe
from edge_agent.telemetry.retained import DesiredStates, RetainedStates

log = logging.getLogger(__name__)

LOOP_S = 0.05
HEALTH_STALL_S = 10.0  # a telemetry loop quiet this long (it iterates every LOOP_S) counts as stuck


class Telemetry(ResultSink):
    def __init__(self, config: AgentConfig, registry: Registry, describe: Dict[str, Any]) -> None:
        self.config = config
        self.mqtt = config.mqtt
        self.registry = registry
        self.describe = dict(describe)
        device = config.device
        self.topics = Topics(self.mqtt.topic_root, device.site, device.line, device.id)
        self.session = uuid.uuid4().hex[:16]
        self.envelope = Envelope(self.session)
        self.client_id = self.mqtt.client_id or "edge-agent-" + device.id
        self._records: Deque[DefectRecord] = collections.deque()
        self._queue_dropped = registry.counter("telemetry_queue_dropped")
        self.delivery = Delivery(self.mqtt, self.session, registry.histogram("stage_ms", stage="publish"))
        self._wake = threading.Event()
        self._rebirth = threading.Event()
        self._stop = threading.Event()
        self._task: Optional[Task] = None
        self._heartbeat = time.monotonic()
        self._birth_refused = False  # too large for the limit known before sending: not sent this connection
        self._birth_blocked = False  # the broker dropped us each time it was sent: not sent again
        self._birth_mid: Optional[int] = None
        self._flush_deadline = 0.0
        self._link_up = False
        self._connects = 0
        self._status_mid: Optional[int] = None
        self._birth_keys: frozenset = frozenset()
        self._status_version = -1  # the agent health version the last published status showed
        self._checks = TelemetryChecks(registry, registry.health, self.mqtt.event_queue_size)
        self.outbox: Optional[Outbox] = None
        self.link: Optional[BrokerLink] = None
        self.trouble: Optional[LinkTrouble] = None
        self.availability: Optional[AvailabilityLink] = None
        self.probe: Optional[SystemProbe] = None
        self.messages = MessageBuilder(config, registry, self.topics, self.envelope, self.client_id, describe)
        self._commands: Dict[str, Action] = {"rebirth": self._command_rebirth,
                                             "publish-now": self._command_publish_now}
        # extensions (rollout): command name -> handler(request dict) -> (ok, text), called on the
        # telemetry thread (must only enqueue); desired-state name -> handler(raw payload)
        self.command_handlers: Dict[str, Callable[[Dict[str, Any]], Tuple[bool, str]]] = {}
        self._desired = DesiredStates()
        self._retained = RetainedStates()

    # ---- public API -------------------------------------------------------------------------
    def start(self) -> "Telemetry":
        folder = state_dir(self.config)
        self.outbox = Outbox(folder / "outbox.sqlite", int(self.mqtt.outbox_max_mb * 2**20)).open()
        self.messages.update_facts(self.describe)
        self.probe = SystemProbe(self.mqtt.metrics_interval_s, folder, self.messages.memory_facts()).start()
        self.link = BrokerLink(self.mqtt, self.client_id, self.topics.command_prefix,
                               (self.topics.status, self.messages.will()), self._wake)
        self.trouble = LinkTrouble(self.link, self._wake, self.mqtt.reconnect_max_s, self.client_id,
                                   self.config.device.id)
        self.availability = AvailabilityLink(self.mqtt, self.client_id, self.topics.availability)
        # supervised: a crash of the loop is logged, counted and the loop restarted with backoff
        self._task = SUPERVISOR.spawn("telemetry", self._work, stall_s=HEALTH_STALL_S, start=False)
        self._task.start()
        self.link.start()
        log.info("telemetry to %s as %s (MQTT %s), topics %s/#, session %s", self.link.address, self.client_id,
                 self.mqtt.protocol, self.topics.base, self.session)
        return self

    def update_facts(self, describe: Dict[str, Any]) -> None:
        """What runs changed (the model loaded, a reload): new provenance and memory, and a new birth."""
        self.describe = dict(describe)
        self.messages.update_facts(self.describe)
        if self.probe is not None:
            self.probe.memory_facts = self.messages.memory_facts()
        self._rebirth.set()
        self._wake.set()

    def set_desired_handler(self, name: str, handler: Optional[Callable[[bytes], None]]) -> None:
        """Route `{base}/desired/{name}` to `handler` (None: stop); the latest one received is
        handed over now."""
        self._desired.set_handler(name, handler)

    def publish_retained(self, kind: str, payload: Dict[str, Any]) -> None:
        """Any thread: publish `payload` retained on `{base}/{kind}`: in order while connected (each
        state change is seen), and the latest one again at every connection (it is a state)."""
        self._retained.put(self.topics.base + "/" + kind, encode(self.envelope.stamp(kind, payload)))
        self._wake.set()

    def on_result(self, result: InferenceResult) -> None:
        """Frame-loop thread: O(1) append; never waits (a full queue is counted and skipped)."""
        if not result.regions and self.config.telemetry.verdicts != "all":
            return
        if len(self._records) >= self.mqtt.event_queue_size:
            self._queue_dropped.inc()
            return
        frame = result.frame
        crops = None
        if self.mqtt.crop.enabled:
            crops = [copy_crop(frame.image, region.bbox, self.mqtt.crop) for region in result.regions]
        origin = getattr(frame, "origin", None)
        evidence = result.notes.get("evidence") if result.notes else None
        self._records.append(DefectRecord(frame.source, frame.index, frame.timestamp, frame.image.shape[1],
                                          frame.image.shape[0], result.latency_ms, list(result.regions), crops,
                                          os.path.basename(origin) if origin else None, evidence))

    def health(self) -> Tuple[bool, str]:
        """(publisher alive, a status line). An unreachable broker is healthy: the outbox keeps the
        messages and paho reconnects, and restarting the service would not bring the network back.
        Only a dead or stuck telemetry thread is a failure (the watchdog then withholds its pings)."""
        queued = self.outbox.rows if self.outbox is not None else 0
        if self._stop.is_set():  # close() is flushing or done; the thread ends on purpose
            return True, "telemetry closing, {} queued".format(queued)
        task = self._task.status() if self._task is not None else None
        if task is None or task.recovery_failed or not self._task.alive:
            return False, "telemetry thread {}: {}, {} queued".format(
                task.state if task else "not started", task.reason if task else "", queued)
        if task.state == "restarting":
            return True, "telemetry restarting after a failure ({}), {} queued".format(task.reason, queued)
        disk = ""
        if self.outbox.write_error is not None:
            disk = "; outbox cannot write ({}), {} in memory".format(self.outbox.write_error, self.outbox.spilled)
        if self._link_up:
            return True, "broker connected, {} queued{}".format(queued, disk)
        return True, "broker unreachable: {}, {} queued{}".format(self.trouble.describe(), queued, disk)

    @property
    def messages_acked(self) -> int:
        """Outbox messages the broker acknowledged this session."""
        return self.delivery.acked

    def close(self, flush_timeout_s: float = 5.0) -> None:
        """Publish retained "stopped", send what is queued within the bound, disconnect."""
        self._flush_deadline = time.monotonic() + flush_timeout_s
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            self._task.join(flush_timeout_s + 10.0)
            self._task.stop()  # also ends a restart backoff
        if self.availability is not None:
            self.availability.stop()
        if self.link is not None:
            self.link.stop()
        if self.probe is not None:
            self.probe.close()
        if self.outbox is not None:
            if self.outbox.rows:
                log.info("telemetry: %d message(s) stay in the outbox for the next start", self.outbox.rows)
            self.outbox.close()

    # ---- the telemetry thread -----------------------------------------------------------------
    def _work(self, _stop: threading.Event) -> None:
        """The supervised body: close() ends it through self._stop after the flush."""
        self._loop()

    def _loop(self) -> None:
        next_metrics = time.monotonic() + self.mqtt.metrics_interval_s
        next_retry = 0.0
        while True:
            self._heartbeat = time.monotonic()
            self._task.beat()
            if self.outbox.write_error is not None and self._heartbeat >= next_retry:
                self.outbox.retry()  # a full disk: store what waits in memory once space is back
                next_retry = self._heartbeat + 1.0
            self._handle_link_events()
            self._checks.run(self.outbox, len(self._records), self._link_up, self._heartbeat)
            if self._link_up and self.registry.health.snapshot().version != self._status_version:
                self._publish_status()
            if self._rebirth.is_set():
                self._rebirth.clear()
                if self._link_up:  # otherwise the next connection publishes the birth anyway
                    self._publish_birth()
            self._store(self._defect_messages())
            if self._heartbeat >= next_metrics:
                self._store([self._metrics_message()])
                next_metrics = max(next_metrics + self.mqtt.metrics_interval_s, self._heartbeat)
            if self._stop.is_set():
                break
            for topic, data in self._retained.take() if self._link_up else ():
                self.link.publish(topic, data, retain=True)
            self._send()
            self._wake.wait(LOOP_S)
            self._wake.clear()
        self._store([self._metrics_message()])  # the last frames' counts
        self._flush()

    def _flush(self) -> None:
        if not self._link_up:
            return
        self._status_mid = self.link.publish(self.topics.status, self.messages.status("stopped", []), retain=True)
        while time.monotonic() < self._flush_deadline and self._link_up:
            self._send()
            if self._status_mid is None and not self.outbox.rows:
                return
            self._wake.wait(LOOP_S)
            self._wake.clear()
            self._handle_link_events()
        log.warning("telemetry: flush bound reached with %d message(s) unsent", self.outbox.rows)

    def _handle_link_events(self) -> None:
        acked: List[int] = []
        while True:
            try:
                event = self.link.events.get_nowait()
            except queue.Empty:
                break
            kind = event[0]
            if kind == "ack":
                self._on_ack(event[1], event[2], acked)
            elif kind == "connected":
                self._on_connected(event[1])
            elif kind == "disconnected":
                self._on_disconnected(event[1])
                self._link_up = False
                self.delivery.link_changed()
            elif kind == "refused":
                self.trouble.refused(event[1])
            elif kind == "connect_failed":
                self.trouble.connect_failed()
            elif kind == "diagnosis":
                self.trouble.diagnosed(event[1])
            elif kind == "suback" and event[1]:
                log.warning("telemetry: broker refused the subscription to %s (%s): commands will not work; "
                            "grant read access in the broker ACL", self.topics.commands, ", ".join(event[1]))
            elif kind == "command":
                self._on_command(*event[1:])
            elif kind == "desired":
                self._desired.received(event[1], event[2])
        self.outbox.delete(acked)

    def _on_disconnected(self, reason: str) -> None:
        poison = self.delivery.guard.disconnected(reason)
        if poison == BIRTH_ROW:
            self._birth_blocked = True
            log.error("telemetry: the broker %s closed the connection (%s) each time the birth message was sent: "
                      "it is larger than the broker accepts. It is not sent again; status, metrics and events "
                      "still are. Raise the broker's message size limit", self.link.address, reason)
        elif poison is not None:
            self.outbox.move_aside(poison, "the broker closed the connection ({}) each time it was sent: larger than "
                                           "the broker accepts (its message size limit)".format(reason))
        self.trouble.lost(reason, self._link_up, self.outbox.rows)

    def _on_connected(self, broker_max: Optional[int] = None) -> None:
        self.delivery.guard.connected(broker_max)
        self.trouble.connected()
        self._birth_refused = False
        self._connects += 1
        self._link_up = True
        self.delivery.link_changed()
        log.info("telemetry: connected to broker %s; %d queued message(s) to send", self.link.address,
                 self.outbox.rows)
        self._publish_status()
        self._publish_birth()
        if not self.availability.started:  # after the main link works: one set of retries, one error
            self.availability.start()
        self._retained.reconnected()
        self.link.subscribe_commands()

    def _on_ack(self, mid: int, failure: Optional[str], acked: List[int]) -> None:
        if mid == self._status_mid:
            self._status_mid = None
        if mid == self._birth_mid:
            self.delivery.guard.done(BIRTH_ROW)
        verdict = self.delivery.ack(mid, failure, acked)
        if verdict == REFUSED:
            self.trouble.report("broker {} refused a publish: {}; the message stays queued and is retried every "
                                "{:.0f} s at most. Grant this client write access to {}/# in the broker "
                                "ACL".format(self.link.address, failure, self.mqtt.reconnect_max_s, self.topics.base))
        elif verdict == ACCEPTED_AGAIN:
            self.trouble.solved()

    def _send(self) -> None:
        if self._link_up:
            self.delivery.send(self.outbox, self.link)

    def _store(self, messages: List[NewMessage]) -> None:
        if messages:
            self.outbox.add(messages, self.session, offline=not self._link_up)

    # ---- messages ---------------------------------------------------------------------------
    def _defect_messages(self) -> List[NewMessage]:
        messages: List[NewMessage] = []
        while self._records:
            messages.extend(self.messages.defects(self._records.popleft()))
        return messages

    def _metrics_message(self) -> NewMessage:
        own: Dict[str, float] = {
            "outbox_messages": self.outbox.rows,
            "outbox_size_kb": round(self.outbox.size_bytes / 1024, 1),
            "outbox_dropped_metrics_total": self.outbox.dropped_metrics,
            "outbox_dropped_events_total": self.outbox.dropped_events,
            "mqtt_connected": int(self._link_up),
            "mqtt_connects_total": self._connects,
            "messages_acked_total": self.delivery.acked,
            "outbox_rejected_total": self.outbox.rejected,
            "outbox_lost_events_total": self.outbox.lost_events,
            "outbox_lost_metrics_total": self.outbox.lost_metrics,
            "outbox_spilled_messages": self.outbox.spilled,
        }
        own.update(self.probe.latest if self.probe is not None else {})
        message = self.messages.metrics(own)
        if self._link_up and not frozenset(self.messages.catalogue) <= self._birth_keys:
            self._publish_birth()  # new metric keys (a new source, drop reason...): tell consumers
        return message

    def _publish_status(self) -> None:
        """online, or degraded with the reasons the agent's components reported (retained)."""
        snapshot = self.registry.health.snapshot()
        self._status_version = snapshot.version
        self.link.publish(self.topics.status, self.messages.status(snapshot.state, snapshot.reasons), retain=True)

    def _publish_birth(self) -> None:
        payload = self.messages.birth(self.probe, self._command_names())
        self._birth_keys = frozenset(self.messages.catalogue)
        if self._birth_blocked:
            return
        too_large = self.delivery.guard.too_large(self.topics.birth, payload)
        if too_large is not None:  # it would get the connection closed at every connect
            if not self._birth_refused:
                log.error("telemetry: the birth message is not sent: %s. Raise the broker's limit (or "
                          "mqtt.max_message_kb); status, metrics and events are still sent", too_large)
            self._birth_refused = True
            return
        self._birth_mid = self.link.publish(self.topics.birth, payload, retain=True)
        self.delivery.guard.sent(BIRTH_ROW, packet_size(self.topics.birth, payload))
        discovery = self.mqtt.homeassistant
        if discovery.enabled:  # generated from the same catalogue, so it follows new keys as well
            self.link.publish(discovery_topic(discovery.prefix, self.config.device.id), encode(discovery_payload(
                self.topics, self.config.device, self.messages.catalogue, [s.name for s in self.config.sources])),
                retain=True)

    # ---- commands -----------------------------------------------------------------------------
    def _on_command(self, name: str, payload: bytes, response_topic: Optional[str] = None,
                    correlation: Optional[bytes] = None) -> None:
        reply = run_command(name, payload, self._commands, self.command_handlers)
        if response_topic is not None and not valid_response_topic(response_topic):
            reply["ok"] = False
            reply["message"] = "refused: response topic {!r} cannot be published to (empty, wildcards or over " \
                               "65535 bytes); replied on {}".format(response_topic[:80], self.topics.reply(name))
            response_topic = None
        encoded = encode(self.envelope.stamp("reply", reply))
        if response_topic is not None:
            # MQTT v5 request/response: the requester waits on its own topic now, so the reply goes
            # there directly, with the correlation data it sent (a backlog replay would answer nobody).
            self.link.publish(response_topic, with_replay(encoded, False), properties=reply_properties(correlation))
        else:
            self._store([NewMessage(KIND_REPLY, self.topics.reply(name), encoded)])

    def _command_names(self) -> List[str]:
        return list(self._commands) + sorted(self.command_handlers)

    def _command_rebirth(self) -> str:
        self._publish_birth()
        return "birth published"

    def _command_publish_now(self) -> str:
        self._store([self._metrics_message()])
        return "metrics published"
