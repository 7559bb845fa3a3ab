"""The batcher's side of the sources: who is asked to decode, fair round-robin takes, adaptive batches."""

import threading
import time
from collections import Counter

import numpy as np

from edge_agent.metrics import Registry
from edge_agent.sources import Frame, FrameBoard

IMAGE = np.zeros((4, 4, 3), np.uint8)


def _frame(name, index=0):
    return Frame(name, index, time.time(), time.monotonic(), IMAGE, None)


def _serve_asked(board, names, stop):
    """Every source the board asks delivers a frame at once (as decoding sources would)."""
    for name in names:
        if board.wants(name):
            board.put(_frame(name), wait=False, stop=stop)


def test_only_demand_sources_are_asked_and_takes_rotate_fairly():
    names = ["cam{}".format(i) for i in range(10)]
    board = FrameBoard(names, Registry(), demand=4)
    stop = threading.Event()
    assert [n for n in names if board.wants(n)] == names[:4]  # not all ten decode
    served = Counter()
    out = []
    for _ in range(25):
        _serve_asked(board, names, stop)
        assert sum(1 for n in names if board.wants(n)) == 0  # asked ones delivered, nobody else decodes
        assert board.take(4, 0.0, 0.1, out) == 4
        served.update(f.source for f in out)
        assert len({f.source for f in out}) == 4  # distinct sources in a batch
    assert set(served) == set(names)
    assert max(served.values()) - min(served.values()) <= 1  # 100 frames over 10 cameras: 10 each


def test_a_slow_source_does_not_hold_the_batch_beyond_max_wait():
    names = ["a", "b", "slow"]
    board = FrameBoard(names, Registry(), demand=3)
    stop = threading.Event()
    board.put(_frame("a"), False, stop)
    board.put(_frame("b"), False, stop)
    out = []
    started = time.monotonic()
    assert board.take(3, 0.05, 1.0, out) == 2  # partial batch after max_wait, not after the timeout
    assert 0.04 <= time.monotonic() - started < 0.5
    assert board.wants("slow")  # still asked: it is served first once it delivers
    board.put(_frame("slow"), False, stop)
    assert board.take(3, 0.0, 0.1, out) == 1 and out[0].source == "slow"


def test_batch_fills_as_soon_as_every_asked_source_delivered():
    names = ["a", "b"]
    board = FrameBoard(names, Registry(), demand=2)
    stop = threading.Event()
    board.put(_frame("a"), False, stop)
    late = threading.Timer(0.05, lambda: board.put(_frame("b"), False, stop))
    late.start()
    out = []
    started = time.monotonic()
    assert board.take(2, 2.0, 1.0, out) == 2
    assert time.monotonic() - started < 1.0  # did not sit out the whole max_wait
    late.join()


def test_a_retrying_source_is_not_asked_and_frees_its_turn():
    names = ["a", "b", "c"]
    board = FrameBoard(names, Registry(), demand=2)
    assert board.wants("a") and board.wants("b") and not board.wants("c")
    board.set_away("a", True)
    assert not board.wants("a") and board.wants("c")
    assert not board.exhausted  # a retrying camera keeps the agent running
    board.set_away("a", False)
    board.close_source("b")
    assert board.wants("a") and board.wants("c")


def test_frames_left_in_slots_at_shutdown_are_counted():
    registry = Registry()
    board = FrameBoard(["a", "b"], registry, demand=2)
    board.put(_frame("a"), False, threading.Event())
    assert board.discard_unserved() == 1
    assert registry.counter("frames_dropped", source="a", reason="stopped").value == 1


def test_without_auto_ask_a_take_asks_nobody_until_the_frame_loop_asks():
    names = ["cam{}".format(i) for i in range(6)]
    board = FrameBoard(names, Registry(), demand=2)
    stop = threading.Event()
    board.auto_ask = False
    _serve_asked(board, names, stop)
    out = []
    assert board.take(2, 0.0, 0.1, out) == 2
    assert not any(board.wants(n) for n in names)  # the next frames are not grabbed yet
    board.ask()
    assert [n for n in names if board.wants(n)] == names[2:4]  # the longest unserved, as many as demand
    board.decoded(0.010)
    board.decoded(0.020)
    assert 0.010 < board.decode_s < 0.020
