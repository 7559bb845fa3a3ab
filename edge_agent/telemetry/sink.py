"""The telemetry sink: the frame loop appends defect records to a bounded deque; one thread turns
them and the metrics registry into messages, stores them in the outbox and sends them.

Frame loop  --on_result-->  deque (bounded, O(1))  -->  telemetry thread  -->  SQLite outbox
                                                          |  ^ acks (paho thread, via queue)
                                                          v  |
                                                      paho client  -->  broker
"""

import collections
import json
import logging
import platform
import queue
import threading
import time
import uuid
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.engine.cache import file_sha256
from edge_agent.metrics import Registry
from edge_agent.paths import state_dir
from edge_agent.pipeline import InferenceResult, ResultSink
from edge_agent.supervisor import SUPERVISOR, Task
from edge_agent.telemetry.crops import copy_crop, encode_crop
from edge_agent.telemetry.link import BrokerLink
from edge_agent.telemetry.link_faults import BIRTH_ROW, FlapDetector, PacketGuard, packet_size, size_reason
from edge_agent.telemetry.outbox import KIND_EVENT, KIND_METRICS, KIND_REPLY, NewMessage, Outbox
from edge_agent.telemetry.payloads import (
    CatalogueEntry,
    DefectRecord,
    Envelope,
    MetricsWindow,
    Topics,
    defect_payload,
    encode,
    now_ms,
    with_replay,
)
from edge_agent.telemetry.probe import SystemProbe

log = logging.getLogger(__name__)

LOOP_S = 0.05
HEALTH_STALL_S = 10.0  # a telemetry loop quiet this long (it iterates every LOOP_S) counts as stuck
COMMANDS = ("rebirth", "publish-now")
RETAINED_PENDING_MAX = 100
PROBE_UNITS = {"pct": "%", "mb": "MB", "c": "degC", "mw": "mW", "mhz": "MHz", "1m": "load"}
OWN_CATALOGUE = {
    "outbox_messages": CatalogueEntry("count", "gauge", "messages waiting in the on-disk outbox"),
    "outbox_size_kb": CatalogueEntry("kB", "gauge", "payload bytes waiting in the outbox"),
    "outbox_dropped_metrics_total": CatalogueEntry("count", "counter", "metrics dropped because the outbox was full"),
    "outbox_dropped_events_total": CatalogueEntry("count", "counter", "events dropped because the outbox was full"),
    "mqtt_connected": CatalogueEntry("bool", "gauge", "1 while connected to the broker"),
    "mqtt_connects_total": CatalogueEntry("count", "counter", "successful broker connections this session"),
    "messages_acked_total": CatalogueEntry("count", "counter", "outbox messages acknowledged by the broker"),
    "outbox_rejected_total": CatalogueEntry("count", "counter", "messages moved aside: larger than the broker takes"),
    "outbox_lost_events_total": CatalogueEntry("count", "counter", "events lost: the disk refused writes too long"),
    "outbox_lost_metrics_total": CatalogueEntry("count", "counter", "metrics lost: the disk refused writes too long"),
    "outbox_spilled_messages": CatalogueEntry("count", "gauge", "messages held in memory while the disk refuses"),
}


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
        self._publish_ms = registry.histogram("stage_ms", stage="publish")
        self._wake = threading.Event()
        self._rebirth = threading.Event()
        self._stop = threading.Event()
        self._task: Optional[Task] = None
        self._heartbeat = time.monotonic()
        self._guard = PacketGuard(self.mqtt.max_message_kb * 1024)
        self._flaps = FlapDetector()
        self._birth_refused = False  # too large for the limit known before sending: not sent this connection
        self._birth_blocked = False  # the broker dropped us each time it was sent: not sent again
        self._birth_mid: Optional[int] = None
        self._flush_deadline = 0.0
        self._link_up = False
        self._state = "starting"
        self._problem: Optional[str] = None
        self._inflight: Dict[int, Tuple[int, float]] = {}  # mid -> (row id, sent at)
        self._resent: set = set()  # row ids sent on an earlier connection: replayed when sent again
        self._paused_until = 0.0
        self._refusal_backoff = 0.0
        self._connects = 0
        self._acked = 0
        self._status_mid: Optional[int] = None
        self._catalogue: Dict[str, CatalogueEntry] = {}
        self._birth_keys: frozenset = frozenset()
        self.outbox: Optional[Outbox] = None
        self.link: Optional[BrokerLink] = None
        self.probe: Optional[SystemProbe] = None
        self.metrics_window = MetricsWindow(registry)
        # extensions (rollout): command name -> handler(request dict) -> (ok, text), called on the
        # telemetry thread (must only enqueue); desired-state name -> handler(raw payload)
        self.command_handlers: Dict[str, Callable[[Dict[str, Any]], Tuple[bool, str]]] = {}
        self.desired_handlers: Dict[str, Callable[[bytes], None]] = {}
        self._retained: Dict[str, bytes] = {}  # topic -> latest retained payload (re-sent on connect)
        self._retained_pending: List[Tuple[str, bytes]] = []
        self._retained_lock = threading.Lock()

    # ---- public API -------------------------------------------------------------------------
    def start(self) -> "Telemetry":
        folder = state_dir(self.config)
        self.outbox = Outbox(folder / "outbox.sqlite", int(self.mqtt.outbox_max_mb * 2**20)).open()
        self.provenance = self._provenance()
        self.probe = SystemProbe(self.mqtt.metrics_interval_s, folder, self._memory_facts()).start()
        self.link = BrokerLink(self.mqtt, self.client_id, self.topics.command_prefix,
                               (self.topics.status, self._status("offline", seq=0)), self._wake)
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
        self.provenance = self._provenance()
        if self.probe is not None:
            self.probe.memory_facts = self._memory_facts()
        self._rebirth.set()
        self._wake.set()

    def publish_retained(self, kind: str, payload: Dict[str, Any]) -> None:
        """Any thread: publish `payload` retained on `{base}/{kind}`: in order while connected (each
        state change is seen), and the latest one again at every connection (it is a state)."""
        topic = self.topics.base + "/" + kind
        data = encode(self.envelope.stamp(kind, payload))
        with self._retained_lock:
            self._retained[topic] = data
            self._retained_pending.append((topic, data))
            del self._retained_pending[:-RETAINED_PENDING_MAX]  # a long outage needs only the latest
        self._wake.set()

    def _send_retained(self) -> None:
        with self._retained_lock:
            pending, self._retained_pending = self._retained_pending, []
        for topic, data in pending:
            self.link.publish(topic, data, retain=True)

    def on_result(self, result: InferenceResult) -> None:
        """Frame-loop thread: O(1) append; never waits (a full queue is counted and skipped)."""
        if not result.regions:
            return
        if len(self._records) >= self.mqtt.event_queue_size:
            self._queue_dropped.inc()
            return
        frame = result.frame
        crops = None
        if self.mqtt.crop.enabled:
            crops = [copy_crop(frame.image, region.bbox, self.mqtt.crop) for region in result.regions]
        self._records.append(DefectRecord(frame.source, frame.index, frame.timestamp, frame.image.shape[1],
                                          frame.image.shape[0], result.latency_ms, list(result.regions), crops))

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
        return True, "broker unreachable: {}, {} queued{}".format(self._problem or self._state, queued, disk)

    @property
    def messages_acked(self) -> int:
        """Outbox messages the broker acknowledged this session."""
        return self._acked

    def close(self, flush_timeout_s: float = 5.0) -> None:
        """Publish retained "stopped", send what is queued within the bound, disconnect."""
        self._flush_deadline = time.monotonic() + flush_timeout_s
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            self._task.join(flush_timeout_s + 10.0)
            self._task.stop()  # also ends a restart backoff
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
            if self._link_up:
                self._send_retained()
            self._send()
            self._wake.wait(LOOP_S)
            self._wake.clear()
        self._store([self._metrics_message()])  # the last frames' counts
        self._flush()

    def _flush(self) -> None:
        if not self._link_up:
            return
        self._status_mid = self.link.publish(self.topics.status, self._status("stopped"), retain=True)
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
                self._state = "disconnected"
                self._resent.update(row_id for row_id, _ in self._inflight.values())
                self._inflight.clear()
            elif kind == "refused":
                self._report("broker {} refused the connection: {} (check mqtt.username and the password, "
                             "and the broker's ACL)".format(self.link.address, event[1]))
            elif kind == "connect_failed":
                self._state = "connect failed"
                if self._problem is None:
                    threading.Thread(target=self._diagnose, name="telemetry-diagnose", daemon=True).start()
                    self._problem = "connecting"
            elif kind == "diagnosis":
                self._report("cannot connect to broker {}: {}; retrying with backoff up to {:.0f} s".format(
                    self.link.address, event[1], self.mqtt.reconnect_max_s))
            elif kind == "suback" and event[1]:
                log.warning("telemetry: broker refused the subscription to %s (%s): commands will not work; "
                            "grant read access in the broker ACL", self.topics.commands, ", ".join(event[1]))
            elif kind == "command":
                self._on_command(event[1], event[2])
            elif kind == "desired":
                handler = self.desired_handlers.get(event[1])
                if handler is not None and event[2]:  # an empty retained payload clears the desired state
                    handler(event[2])
        self.outbox.delete(acked)

    def _diagnose(self) -> None:
        self.link.events.put(("diagnosis", self.link.diagnose()))
        self._wake.set()

    def _report(self, text: str) -> None:
        """One log line per distinct problem, not one per retry."""
        if text != self._problem:
            log.warning("telemetry: %s", text)
        self._problem = text

    def _on_disconnected(self, reason: str) -> None:
        poison = self._guard.disconnected(reason)
        if poison == BIRTH_ROW:
            self._birth_blocked = True
            log.error("telemetry: the broker %s closed the connection (%s) each time the birth message was sent: "
                      "it is larger than the broker accepts. It is not sent again; status, metrics and events "
                      "still are. Raise the broker's message size limit", self.link.address, reason)
        elif poison is not None:
            self.outbox.move_aside(poison, "the broker closed the connection ({}) each time it was sent: larger than "
                                           "the broker accepts (its message size limit)".format(reason))
        if self._flaps.lost() and not size_reason(reason):
            self._report("broker {} keeps closing the connection right after accepting it ({}): most often another "
                         "client uses the same client id '{}' (two agents with device.id '{}'?). Give every board "
                         "its own device.id or mqtt.client_id".format(self.link.address, reason, self.client_id,
                                                                       self.config.device.id))
        elif self._link_up:
            log.warning("telemetry: lost the broker %s (%s); %d queued, reconnecting", self.link.address,
                        reason, self.outbox.rows)
        elif self._problem is None or self._problem == "connecting":
            # TCP worked but the MQTT handshake did not (a TLS port, a silent port): paho's
            # on_connect_fail does not fire, so find out why and say it once
            self._state = "handshake failed: " + reason
            self._problem = "diagnosing"
            threading.Thread(target=self._diagnose, name="telemetry-diagnose", daemon=True).start()

    def _on_connected(self, broker_max: Optional[int] = None) -> None:
        self._guard.connected(broker_max)
        self._flaps.connected()
        self._birth_refused = False
        self._connects += 1
        self._link_up = True
        self._state = "connected"
        self._problem = None
        self._resent.update(row_id for row_id, _ in self._inflight.values())
        self._inflight.clear()
        log.info("telemetry: connected to broker %s; %d queued message(s) to send", self.link.address,
                 self.outbox.rows)
        self.link.publish(self.topics.status, self._status("online"), retain=True)
        self._publish_birth()
        with self._retained_lock:
            self._retained_pending = list(self._retained.items())
        self.link.subscribe_commands()

    def _on_ack(self, mid: int, failure: Optional[str], acked: List[int]) -> None:
        if mid == self._status_mid:
            self._status_mid = None
        if mid == self._birth_mid:
            self._guard.done(BIRTH_ROW)
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # status/birth, or a message of an earlier connection (already resent)
        row_id, sent = entry
        self._guard.done(row_id)
        if failure is not None:
            # MQTT v5 tells us the broker did not accept it (e.g. ACL): keep the row, back off.
            self._resent.add(row_id)
            self._refusal_backoff = min(max(self._refusal_backoff * 2, self.mqtt.reconnect_min_s),
                                        self.mqtt.reconnect_max_s)
            self._paused_until = time.monotonic() + self._refusal_backoff
            self._report("broker {} refused a publish: {}; the message stays queued and is retried every "
                         "{:.0f} s at most. Grant this client write access to {}/# in the broker ACL".format(
                             self.link.address, failure, self.mqtt.reconnect_max_s, self.topics.base))
            return
        if self._refusal_backoff:
            self._refusal_backoff = 0.0
            self._problem = None
        self._publish_ms.observe((time.monotonic() - sent) * 1000.0)
        self._resent.discard(row_id)
        self._acked += 1
        acked.append(row_id)

    def _send(self) -> None:
        room = self.mqtt.inflight_max - len(self._inflight)
        if not self._link_up or room <= 0 or time.monotonic() < self._paused_until:
            return
        if self.outbox.rows <= len(self._inflight):
            return
        exclude = [row_id for row_id, _ in self._inflight.values()]
        for row in self.outbox.pending(room, exclude):
            replay = row.queued_offline or row.session != self.session or row.id in self._resent
            payload = with_replay(row.payload, replay)
            too_large = self._guard.too_large(row.topic, payload)
            if too_large is not None:  # sending it would only get us disconnected, again and again
                self.outbox.move_aside(row.id, too_large)
                continue
            mid = self.link.publish(row.topic, payload)
            self._inflight[mid] = (row.id, time.monotonic())
            self._guard.sent(row.id, packet_size(row.topic, payload))

    def _store(self, messages: List[NewMessage]) -> None:
        if messages:
            self.outbox.add(messages, self.session, offline=not self._link_up)

    # ---- messages -----------------------------------------------------------------------------
    def _defect_messages(self) -> List[NewMessage]:
        messages: List[NewMessage] = []
        while self._records:
            record = self._records.popleft()
            for index, region in enumerate(record.regions):
                payload = defect_payload(record, region, self.provenance)
                score, area = self.config.model.thresholds.for_class(region.cls)
                payload["threshold_score"] = score
                payload["threshold_min_area_px"] = area
                if record.crops is not None:
                    payload.update(encode_crop(record.crops[index][0], record.crops[index][1], self.mqtt.crop))
                stamped = self.envelope.stamp("defect", payload)
                stamped["event_id"] = "{}-{}-{}".format(self.config.device.id, self.session, stamped["seq"])
                messages.append(NewMessage(KIND_EVENT, self.topics.defect, encode(stamped)))
        return messages

    def _metrics_message(self) -> NewMessage:
        own: Dict[str, float] = {
            "outbox_messages": self.outbox.rows,
            "outbox_size_kb": round(self.outbox.size_bytes / 1024, 1),
            "outbox_dropped_metrics_total": self.outbox.dropped_metrics,
            "outbox_dropped_events_total": self.outbox.dropped_events,
            "mqtt_connected": int(self._link_up),
            "mqtt_connects_total": self._connects,
            "messages_acked_total": self._acked,
            "outbox_rejected_total": self.outbox.rejected,
            "outbox_lost_events_total": self.outbox.lost_events,
            "outbox_lost_metrics_total": self.outbox.lost_metrics,
            "outbox_spilled_messages": self.outbox.spilled,
        }
        own.update(self.probe.latest if self.probe is not None else {})
        values, catalogue = self.metrics_window.collect(own, self._probe_catalogue(own))
        self._catalogue = catalogue
        if self._link_up and not frozenset(catalogue) <= self._birth_keys:
            self._publish_birth()  # new metric keys (a new source, drop reason...): tell consumers
        return NewMessage(KIND_METRICS, self.topics.metrics, encode(self.envelope.stamp("metrics", values)))

    def _probe_catalogue(self, values: Dict[str, float]) -> Dict[str, CatalogueEntry]:
        catalogue = dict(OWN_CATALOGUE)
        for key in values:
            if key not in catalogue:
                unit = PROBE_UNITS.get(key.rsplit("_", 1)[-1], "count" if key == "process_threads" else "")
                catalogue[key] = CatalogueEntry(unit, "probe", "system probe: " + key.replace("_", " "))
        return catalogue

    def _status(self, state: str, seq: Optional[int] = None) -> bytes:
        payload = {"state": state}
        if seq is None:
            return encode(self.envelope.stamp("status", payload))
        # The Last Will is stored by the broker at connect time and sent by it later: seq 0.
        return encode({"schema": 1, "session": self.session, "seq": seq, "ts": now_ms(), "state": state})

    def _publish_birth(self) -> None:
        if not self._catalogue:
            self._catalogue = MetricsWindow(self.registry).collect({}, self._probe_catalogue(
                dict(OWN_CATALOGUE, **(self.probe.latest if self.probe else {}))))[1]
        self._birth_keys = frozenset(self._catalogue)
        birth = {
            "agent_version": __version__,
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "hostname": platform.node(),
            "device": self.config.device.id,
            "site": self.config.device.site,
            "line": self.config.device.line,
            "client_id": self.client_id,
            "mqtt_protocol": self.mqtt.protocol,
            "metrics_interval_s": self.mqtt.metrics_interval_s,
            "probe_providers": self.probe.providers if self.probe else [],
            "probe_facts": self.probe.facts() if self.probe else {},
            "provenance": self.provenance,
            "describe": _jsonable(self.describe),
            "commands": self._command_names(),
            "catalogue": {k: {"unit": e.unit, "type": e.kind, "description": e.description}
                          for k, e in sorted(self._catalogue.items())},
        }
        payload = encode(self.envelope.stamp("birth", birth))
        too_large = self._guard.too_large(self.topics.birth, payload)
        if self._birth_blocked:
            return
        if too_large is not None:  # it would get the connection closed at every connect
            if not self._birth_refused:
                log.error("telemetry: the birth message is not sent: %s. Raise the broker's limit (or "
                          "mqtt.max_message_kb); status, metrics and events are still sent", too_large)
            self._birth_refused = True
            return
        self._birth_mid = self.link.publish(self.topics.birth, payload, retain=True)
        self._guard.sent(BIRTH_ROW, packet_size(self.topics.birth, payload))

    def _on_command(self, name: str, payload: bytes) -> None:
        request_id = None
        try:
            request = json.loads(payload.decode("utf-8")) if payload else {}
            request_id = request.get("request_id") if isinstance(request, dict) else None
        except (UnicodeDecodeError, ValueError):
            request = None
        if name == "rebirth":
            self._publish_birth()
            ok, text = True, "birth published"
        elif name == "publish-now":
            self._store([self._metrics_message()])
            ok, text = True, "metrics published"
        elif name in self.command_handlers:
            ok, text = self.command_handlers[name](request if isinstance(request, dict) else {})
        else:
            ok, text = False, "unknown command {!r}; known: {}".format(name, ", ".join(self._command_names()))
        log.info("telemetry: command %s: %s", name, text)
        reply = {"command": name, "ok": ok, "message": text}
        if isinstance(request_id, (str, int)):
            reply["request_id"] = request_id
        self._store([NewMessage(KIND_REPLY, self.topics.reply(name), encode(self.envelope.stamp("reply", reply)))])

    def _command_names(self) -> List[str]:
        return list(COMMANDS) + sorted(self.command_handlers)

    # ---- facts ------------------------------------------------------------------------------
    def _provenance(self) -> Dict[str, Any]:
        describe = self.describe
        model_path = self.config.model.path
        sha = describe.get("model_sha256") or file_sha256(model_path)
        provenance = {
            "device": self.config.device.id,
            "model": str(describe.get("model_path", model_path.name)).rsplit("/", 1)[-1],
            "model_sha256": sha,
            "backend": str(describe.get("backend", self.config.backend.type)),
            "precision": str(describe.get("precision", self.config.backend.precision)),
            "agent_version": __version__,
        }
        if describe.get("engine_fingerprint"):
            provenance["engine_fingerprint"] = str(describe["engine_fingerprint"])
        return provenance

    def _memory_facts(self) -> Dict[str, float]:
        facts = {"memory_budget_mb": float(self.config.memory.limit_mb)}
        for key, name in (("backend_host_bytes", "backend_host_mb"), ("backend_device_bytes", "backend_device_mb"),
                          ("buffer_bytes", "buffers_mb")):
            if isinstance(self.describe.get(key), (int, float)):
                facts[name] = round(self.describe[key] / 2**20, 2)
        return facts


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def pipeline_facts(config: AgentConfig, pipeline: Any) -> Dict[str, Any]:
    """Birth-message facts about a running pipeline: model, backend, precision, engine, memory."""
    backend = pipeline.backend
    memory = backend.memory()
    return {
        "model_path": str(config.model.path),
        "model_sha256": file_sha256(config.model.path),
        "backend": backend.name,
        "precision": backend.model.precision,
        "engine_fingerprint": backend.model.fingerprint,
        "thresholds": config.model.thresholds.model_dump(mode="json"),
        "backend_host_bytes": memory.host_bytes,
        "backend_device_bytes": memory.device_bytes,
        "sources": [s.name for s in config.sources],
    }
