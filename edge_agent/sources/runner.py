"""Source threads: open, grab, pace, shed or decode, hand off; retry with backoff on failure.

A source that reads a file as fast as the pipeline takes it (no `fps`, not live) decodes every
frame and waits for its slot, so nothing is lost. A live or paced source grabs every frame on
time but decodes only the frames the batcher asked for (board.py); a grab that a newer grab
replaces before anyone asked for it is dropped undecoded and counted as `shed`. Decoding happens
under the board's bounded `decode_slots`, in threads whose CPU priority may be lowered
(`pipeline.decode_nice`) so that decoding yields to inference.
"""

import logging
import os
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

from edge_agent.metrics import Registry
from edge_agent.sources.board import Frame, FrameBoard
from edge_agent.sources.readers import EndOfStream, Reader, SourceError, UndecodableFrame, open_reader
from edge_agent.supervisor import SUPERVISOR, Supervisor, Task

log = logging.getLogger(__name__)


class _Grab(NamedTuple):
    grabbed: Any  # what the reader's retrieve() decodes
    index: int
    timestamp: float
    captured: float


class SourceRunner:
    """Runs one reader in a named thread: open, read, pace, hand off; on failure retry with backoff."""

    def __init__(self, config: Any, board: FrameBoard, registry: Registry,
                 reader_factory: Callable[[Any], Reader] = open_reader, nice: int = 0,
                 supervisor: Optional[Supervisor] = None) -> None:
        self.config = config
        self.name = config.name
        self.state = "starting"
        self.reason = ""
        self._board = board
        self._reader_factory = reader_factory
        self._supervisor = supervisor if supervisor is not None else SUPERVISOR
        self._stop = threading.Event()
        self._task: Optional[Task] = None
        self._index = 0
        self._nice = nice
        self._niced = False
        self._health = registry.health
        self._captured = registry.counter("frames_captured", source=self.name)
        self._decoded = registry.counter("frames_decoded", source=self.name)
        self._failures = registry.counter("source_failures", source=self.name)
        self._capture_ms = registry.histogram("capture_ms", source=self.name)
        self._decode_ms = registry.histogram("decode_ms", source=self.name)
        self._shed = board.dropped(self.name, "shed")
        self._undecodable = board.dropped(self.name, "undecodable")

    def start(self) -> None:
        # A bug in a reader (anything but SourceError) is the supervisor's: logged, counted and
        # restarted with the source's own backoff, while the other sources keep going.
        self._task = self._supervisor.spawn("source-" + self.name, self._run, self.config.retry_initial_s,
                                            self.config.retry_max_s, on_exit=self._ended)

    def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.stop()
        self._board.wake(self.name)

    def join(self, timeout: float = 5.0) -> None:
        if self._task is not None:
            self._task.join(timeout)

    def _run(self, _stop: threading.Event) -> None:
        delay = self.config.retry_initial_s
        if not self._niced:  # once per thread: a restart runs in the same thread
            _lower_priority(self._nice)
            self._niced = True
        while not self._stop.is_set():
            reader = self._reader_factory(self.config)
            try:
                reader.open()
                self._board.set_away(self.name, False)
                self._set_state("running", "")
                delay = self.config.retry_initial_s
                self._index = self._deliver(reader, self._index)
                if not self._stop.is_set():
                    self._set_state("finished", "end of input")
                return
            except SourceError as exc:
                self._board.set_away(self.name, True)  # not asked for frames while it retries
                self._failures.inc()
                self._set_state("retrying", "{}; retrying in {:.0f} s".format(exc, delay))
            except Exception as exc:
                self._board.set_away(self.name, True)
                self._failures.inc()
                self._set_state("restarting", "crashed ({}: {}); see the log".format(type(exc).__name__, exc))
                raise
            finally:
                reader.close()
            self._stop.wait(delay)
            delay = min(delay * 2, self.config.retry_max_s)

    def _ended(self) -> None:
        if self.state != "finished":
            self._set_state("stopped", "")
        self._board.close_source(self.name)

    def _deliver(self, reader: Reader, index: int) -> int:
        period = 1.0 / self.config.fps if self.config.fps > 0 else 0.0
        keep_all = not reader.live and period == 0.0
        next_due = time.monotonic()
        pending: Optional[_Grab] = None  # the newest grab, not decoded yet
        try:
            while not self._stop.is_set():
                if period:
                    delay = next_due - time.monotonic()
                    if delay > 0:
                        # until the next frame is due, serve a request with the frame in hand
                        if pending is not None:
                            if self._board.wait_wanted(self.name, delay, self._stop):
                                self._decode_and_put(reader, pending, wait=False)
                                pending = None
                        else:
                            self._stop.wait(delay)
                        continue
                    next_due = max(next_due + period, time.monotonic() - period)
                grab = self._grab(reader, index)
                index += 1
                if keep_all:
                    self._decode_and_put(reader, grab, wait=True)
                    continue
                if pending is not None:
                    self._shed.inc()  # replaced before anyone asked for it: never decoded
                pending = grab
                if self._board.wants(self.name):
                    self._decode_and_put(reader, pending, wait=False)
                    pending = None
        except EndOfStream:
            pass
        finally:
            if pending is not None:
                self._shed.inc()
        return index

    def _grab(self, reader: Reader, index: int) -> _Grab:
        started = time.monotonic()
        grabbed = reader.grab()
        captured = time.monotonic()
        self._capture_ms.observe((captured - started) * 1000.0)
        self._captured.inc()
        return _Grab(grabbed, index, time.time(), captured)

    def _decode_and_put(self, reader: Reader, grab: _Grab, wait: bool) -> None:
        with self._board.decode_slots:
            started = time.monotonic()
            try:
                image, truth = reader.retrieve(grab.grabbed)
            except UndecodableFrame as exc:
                self._undecodable.inc()
                log.warning("source %s: %s", self.name, exc)
                return
            seconds = time.monotonic() - started
            self._decode_ms.observe(seconds * 1000.0)
        self._board.decoded(seconds)
        self._decoded.inc()
        frame = Frame(self.name, grab.index, grab.timestamp, grab.captured, image, truth, reader.origin(grab.grabbed))
        self._board.put(frame, wait, self._stop)

    def _set_state(self, state: str, reason: str) -> None:
        if (state, reason) != (self.state, self.reason):
            level = logging.WARNING if state in ("retrying", "restarting") else logging.INFO
            log.log(level, "source %s: %s%s", self.name, state, " (" + reason + ")" if reason else "")
        self.state, self.reason = state, reason
        # A failing source degrades the agent (status, Prometheus) until it delivers again.
        self._health.report("source " + self.name, "down: " + reason if state in ("retrying", "restarting") else None)


def _lower_priority(nice: int) -> None:
    """Raise this thread's nice value (Linux schedules threads by their own nice value), so that
    decoding yields the CPU to inference; elsewhere, or without permission, keep the priority."""
    if nice <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        thread_id = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread_id, os.getpriority(os.PRIO_PROCESS, thread_id) + nice)
    except OSError as exc:
        log.debug("cannot lower the priority of %s: %s", threading.current_thread().name, exc)
