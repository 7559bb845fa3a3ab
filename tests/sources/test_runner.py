"""Load shedding: a source decodes only the frames the batcher asked for, counts every other
grab as dropped, and decodes within the board's bounded concurrency."""

import threading
import time

import cv2
import numpy as np

from edge_agent.metrics import Registry
from edge_agent.sources import Frame, FrameBoard, Reader, SourceRunner
from edge_agent.sources.config import SyntheticSourceConfig, VideoSourceConfig
from edge_agent.sources.readers import open_reader


class CountingReader(Reader):
    """A live camera whose decode costs `decode_s` and records how many run at once."""

    live = True
    lock = threading.Lock()
    active = 0
    most_active = 0

    def __init__(self, decode_s=0.0, period_s=0.002):
        self.decode_s = decode_s
        self.period_s = period_s
        self.grabs = 0
        self.retrieved = []

    def grab(self):
        time.sleep(self.period_s)  # the camera's frame interval
        self.grabs += 1
        return self.grabs

    def retrieve(self, grabbed):
        cls = type(self)
        with cls.lock:
            cls.active += 1
            cls.most_active = max(cls.most_active, cls.active)
        time.sleep(self.decode_s)
        with cls.lock:
            cls.active -= 1
        self.retrieved.append(grabbed)
        return np.zeros((4, 4, 3), np.uint8), None


def _consume(board, seconds, interval_s, batch=1):
    """A slow batcher: one take every interval_s."""
    taken = []
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if board.take(batch, 0.0, 0.05, out):
            taken.extend((f.source, f.index) for f in out)
        time.sleep(interval_s)
    return taken


def test_a_live_source_decodes_only_what_the_batcher_takes_and_counts_the_rest():
    registry = Registry()
    board = FrameBoard(["cam"], registry, demand=1)
    reader = CountingReader()
    runner = SourceRunner(SyntheticSourceConfig(name="cam"), board, registry, reader_factory=lambda c: reader)
    runner.start()
    try:
        taken = _consume(board, 0.6, 0.03)
    finally:
        runner.stop()
        runner.join()
    board.discard_unserved()
    captured = registry.counter("frames_captured", source="cam").value
    shed = registry.counter("frames_dropped", source="cam", reason="shed").value
    stopped = registry.counter("frames_dropped", source="cam", reason="stopped").value
    assert captured == reader.grabs > 3 * len(taken)  # the camera ran far faster than the batcher
    assert len(reader.retrieved) == len(taken) + stopped <= len(taken) + 1  # no decode wasted
    assert registry.counter("frames_decoded", source="cam").value == len(reader.retrieved)
    assert captured == len(taken) + shed + stopped  # every grab accounted for
    assert [i for _, i in taken] == sorted(i for _, i in taken)


def test_a_paced_source_serves_a_request_with_the_frame_in_hand():
    """At 5 fps a request must not wait for the next frame (200 ms): the grabbed one is decoded."""
    registry = Registry()
    board = FrameBoard(["other", "cam"], registry, demand=1)  # "cam" is asked only after "other"
    config = SyntheticSourceConfig(name="cam", width=32, height=32, fps=5)
    runner = SourceRunner(config, board, registry)
    runner.start()
    try:
        time.sleep(0.1)  # cam has grabbed its first frame but nobody asked for it
        assert registry.counter("frames_decoded", source="cam").value == 0
        other = Frame("other", 0, time.time(), time.monotonic(), np.zeros((4, 4, 3), np.uint8), None)
        board.put(other, False, threading.Event())
        out = []
        assert board.take(1, 0.0, 0.1, out) == 1 and out[0].source == "other"  # now cam is asked
        started = time.monotonic()
        assert board.take(1, 0.0, 1.0, out) == 1 and out[0].source == "cam"
        assert time.monotonic() - started < 0.15
    finally:
        runner.stop()
        runner.join()


def test_decoding_is_bounded_across_sources():
    registry = Registry()
    names = ["c{}".format(i) for i in range(6)]
    board = FrameBoard(names, registry, demand=6, decode_threads=2)
    CountingReader.most_active = 0
    runners = [SourceRunner(SyntheticSourceConfig(name=n), board, registry,
                            reader_factory=lambda c: CountingReader(decode_s=0.02)) for n in names]
    for runner in runners:
        runner.start()
    try:
        taken = _consume(board, 0.6, 0.0, batch=6)
    finally:
        for runner in runners:
            runner.stop()
        for runner in runners:
            runner.join()
    assert len(taken) > 10
    assert CountingReader.most_active == 2


def test_mjpg_video_is_grabbed_as_packets_and_decoded_on_demand(tmp_path):
    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (96, 64))
    frames = [np.full((64, 96, 3), 40 * i, np.uint8) for i in range(4)]
    for frame in frames:
        writer.write(frame)
    writer.release()
    reader = open_reader(VideoSourceConfig(name="v", path=path, loop=True))
    reader.open()
    try:
        packets = [reader.grab() for _ in range(5)]  # past the end: loops
        assert all(p.dtype == np.uint8 and p.ndim <= 2 and bytes(p.ravel()[:2]) == b"\xff\xd8" for p in packets)
        image, _ = reader.retrieve(packets[2])  # any packet, in any order: each is a whole JPEG
        assert image.shape == (64, 96, 3) and abs(int(image.mean()) - 80) <= 3
        image, _ = reader.retrieve(packets[4])
        assert abs(int(image.mean()) - 0) <= 3
    finally:
        reader.close()
