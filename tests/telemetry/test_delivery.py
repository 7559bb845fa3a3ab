"""Delivery's bookkeeping against a real SQLite outbox: the in-flight window, replays after a
connection change, a refusal's backoff, and rows too large for the broker. The broker side runs
for real in test_mqtt_messages.py and tests/faults/test_broker_faults.py."""

import json
import time

from edge_agent.metrics import Histogram
from edge_agent.telemetry.config import MqttConfig
from edge_agent.telemetry.delivery import ACCEPTED_AGAIN, REFUSED, Delivery
from edge_agent.telemetry.outbox import KIND_EVENT, NewMessage, Outbox


class RecordingLink:
    """What BrokerLink.publish does for Delivery: hand out a new message id per publish."""

    def __init__(self):
        self.sent = []  # (mid, topic, payload)

    def publish(self, topic, payload):
        mid = len(self.sent) + 1
        self.sent.append((mid, topic, json.loads(payload)))
        return mid


def outbox_with(tmp_path, count, size=10):
    outbox = Outbox(tmp_path / "outbox.sqlite", 2**20).open()
    outbox.add([NewMessage(KIND_EVENT, "t/event", json.dumps({"n": n, "pad": "x" * size}).encode())
                for n in range(count)], "s1", offline=False)
    return outbox


def test_rows_go_out_within_the_window_and_are_replays_after_a_connection_change(tmp_path):
    outbox = outbox_with(tmp_path, 5)
    delivery = Delivery(MqttConfig(inflight_max=3), "s1", Histogram())
    link = RecordingLink()
    delivery.send(outbox, link)
    assert [p["n"] for _, _, p in link.sent] == [0, 1, 2]  # oldest first, three in flight
    assert not any(p["replay"] for _, _, p in link.sent)
    delivery.send(outbox, link)
    assert len(link.sent) == 3  # the window is full
    acked = []
    assert delivery.ack(1, None, acked) is None
    assert len(acked) == 1
    outbox.delete(acked)
    assert outbox.rows == 4
    delivery.link_changed()  # rows 1 and 2 were in flight: no acknowledgement will come for them
    delivery.send(outbox, link)
    resent = {p["n"]: p["replay"] for _, _, p in link.sent[3:]}
    assert resent == {1: True, 2: True, 3: False}
    assert delivery.acked == 1
    outbox.close()


def test_a_refusal_keeps_the_row_and_pauses_sending(tmp_path):
    outbox = outbox_with(tmp_path, 2)
    delivery = Delivery(MqttConfig(inflight_max=1, reconnect_min_s=0.3, reconnect_max_s=0.3), "s1", Histogram())
    link = RecordingLink()
    delivery.send(outbox, link)
    acked = []
    assert delivery.ack(1, "Not authorized", acked) == REFUSED
    assert acked == [] and outbox.rows == 2
    delivery.send(outbox, link)
    assert len(link.sent) == 1  # paused for the backoff
    time.sleep(0.35)
    delivery.send(outbox, link)
    assert link.sent[1][2] == {"n": 0, "pad": "x" * 10, "replay": True}  # the same row again, as a replay
    assert delivery.ack(2, None, acked) == ACCEPTED_AGAIN
    assert delivery.ack(3, None, acked) is None  # not a row in flight: nothing happens
    assert len(acked) == 1 and delivery.acked == 1
    outbox.close()


def test_a_row_larger_than_the_broker_takes_is_moved_aside_unsent(tmp_path):
    outbox = outbox_with(tmp_path, 1, size=3000)
    outbox.add([NewMessage(KIND_EVENT, "t/event", b'{"n":1}')], "s1", offline=False)
    delivery = Delivery(MqttConfig(max_message_kb=256), "s1", Histogram())
    delivery.guard.connected(broker_max=1024)  # what the broker announced in its CONNACK
    link = RecordingLink()
    delivery.send(outbox, link)
    assert [p["n"] for _, _, p in link.sent] == [1]
    assert outbox.rejected == 1 and outbox.rows == 1
    outbox.close()
