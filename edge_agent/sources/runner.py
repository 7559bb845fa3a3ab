"""Source threads and the latest-frame slots they hand frames to.

Each source owns one slot on a shared `FrameBoard`. A live source (camera, stream, or any source
paced by `fps`) overwrites an unconsumed frame and counts it as dropped, so the pipeline always
sees the newest frame; a source that reads as fast as it can (a file, a folder, the synthetic
camera with fps 0) waits for its slot instead, so no frame of a file is lost. The batcher takes
up to `max_batch` frames from different slots at once.
"""

import logging
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import numpy as np

from edge_agent.metrics import Registry
from edge_agent.sources.readers import EndOfStream, Reader, SourceError, open_reader
from edge_agent.supervisor import SUPERVISOR, Supervisor, Task

log = logging.getLogger(__name__)


class Frame(NamedTuple):
    source: str
    index: int  # per source, from 0
    timestamp: float  # wall clock at capture, seconds since the epoch
    captured: float  # time.monotonic() at capture
    image: np.ndarray  # BGR uint8
    truth: Optional[np.ndarray]  # ground-truth class mask (synthetic frames only)


class FrameBoard:
    """One latest-frame slot per source, and the batcher's view across them."""

    def __init__(self, names: List[str], registry: Registry) -> None:
        self._slots: Dict[str, Optional[Frame]] = {name: None for name in names}
        self._order = list(names)  # round robin start, so no source starves in a partial batch
        self._cond = threading.Condition()
        self._open = set(names)
        self._dropped = {name: registry.counter("frames_dropped", source=name, reason="overwritten")
                         for name in names}

    def put(self, frame: Frame, wait: bool, stop: threading.Event) -> None:
        with self._cond:
            if wait:
                while self._slots[frame.source] is not None and not stop.is_set():
                    self._cond.wait(0.1)
            if self._slots[frame.source] is not None:
                self._dropped[frame.source].inc()
            self._slots[frame.source] = frame
            self._cond.notify_all()

    def close_source(self, name: str) -> None:
        """The source will deliver nothing more (end of file, or stopped)."""
        with self._cond:
            self._open.discard(name)
            self._cond.notify_all()

    @property
    def exhausted(self) -> bool:
        """Every source has finished and every delivered frame was taken."""
        with self._cond:
            return not self._open and all(f is None for f in self._slots.values())

    def take(self, max_batch: int, max_wait_s: float, timeout_s: float, out: List[Frame]) -> int:
        """Fill `out` with up to max_batch frames from distinct sources; returns how many.

        Waits up to `timeout_s` for a first frame, then up to `max_wait_s` for more sources to
        fill the batch (only while other sources are still open)."""
        out.clear()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._open and not self._ready()):
                    return 0
                self._cond.wait(remaining)
            if max_batch > 1 and max_wait_s > 0:
                fill_deadline = time.monotonic() + max_wait_s
                while self._ready() < min(max_batch, len(self._open) or 1):
                    remaining = fill_deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            for name in list(self._order):
                frame = self._slots[name]
                if frame is not None and len(out) < max_batch:
                    out.append(frame)
                    self._slots[name] = None
                    self._order.remove(name)
                    self._order.append(name)
            self._cond.notify_all()
        return len(out)

    def _ready(self) -> int:
        return sum(1 for f in self._slots.values() if f is not None)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class SourceRunner:
    """Runs one reader in a named thread: open, read, pace, hand off; on failure retry with backoff."""

    def __init__(self, config: Any, board: FrameBoard, registry: Registry,
                 reader_factory: Callable[[Any], Reader] = open_reader,
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
        self._captured = registry.counter("frames_captured", source=self.name)
        self._failures = registry.counter("source_failures", source=self.name)
        self._capture_ms = registry.histogram("capture_ms", source=self.name)

    def start(self) -> None:
        # A bug in a reader (anything but SourceError) is the supervisor's: logged, counted and
        # restarted with the source's own backoff, while the other sources keep going.
        self._task = self._supervisor.spawn("source-" + self.name, self._run, self.config.retry_initial_s,
                                            self.config.retry_max_s, on_exit=self._ended)

    def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.stop()
        self._board.wake()

    def join(self, timeout: float = 5.0) -> None:
        if self._task is not None:
            self._task.join(timeout)

    def _run(self, _stop: threading.Event) -> None:
        delay = self.config.retry_initial_s
        while not self._stop.is_set():
            reader = self._reader_factory(self.config)
            try:
                reader.open()
                self._set_state("running", "")
                delay = self.config.retry_initial_s
                self._index = self._deliver(reader, self._index)
                if not self._stop.is_set():
                    self._set_state("finished", "end of input")
                return
            except SourceError as exc:
                self._failures.inc()
                self._set_state("retrying", "{}; retrying in {:.0f} s".format(exc, delay))
            except Exception as exc:
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
        wait_for_slot = not reader.live and period == 0.0
        next_due = time.monotonic()
        while not self._stop.is_set():
            if period:
                delay = next_due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_due = max(next_due + period, time.monotonic() - period)
            started = time.monotonic()
            try:
                image, truth = reader.read()
            except EndOfStream:
                return index
            captured = time.monotonic()
            self._capture_ms.observe((captured - started) * 1000.0)
            self._captured.inc()
            frame = Frame(self.name, index, time.time(), captured, image, truth)
            self._board.put(frame, wait_for_slot, self._stop)
            index += 1
        return index

    def _set_state(self, state: str, reason: str) -> None:
        if (state, reason) != (self.state, self.reason):
            level = logging.WARNING if state in ("retrying", "restarting") else logging.INFO
            log.log(level, "source %s: %s%s", self.name, state, " (" + reason + ")" if reason else "")
        self.state, self.reason = state, reason
