"""The sources' slots and the batcher's fair, demand-driven take across them.

Each source owns one slot. The batcher does not let every source decode every frame: it *asks*
for frames. The board keeps `demand` sources (normally `pipeline.max_batch`) asked at any time,
chosen round-robin, the longest unserved first; only an asked source decodes its newest grabbed
frame into its slot, the others drop their grabs undecoded (runner.py counts them as `shed`). A
take returns the ready frames in the same round-robin order and asks the next sources, so no
camera is starved however many there are. A source that reads a file as fast as it can (no
`fps`, not live) fills its slot whenever it is empty and loses nothing.

Decoding is bounded: a source holds `decode_slots` while it decodes, so at most that many frames
are decoded at once and the frame loop keeps its share of the CPU.

When the asks happen is the frame loop's choice: by default a take asks for the next frames at
once; with `auto_ask` off the loop calls `ask()` itself, just in time (batch_timing.py), so that
frames are grabbed as late as they can be and still be ready.
"""

import threading
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

import numpy as np

from edge_agent.metrics import Counter, Registry


class Frame(NamedTuple):
    source: str
    index: int  # per source, from 0 (gaps where frames were dropped)
    timestamp: float  # wall clock at capture, seconds since the epoch
    captured: float  # time.monotonic() at capture (the grab, not the decode)
    image: np.ndarray  # BGR uint8
    truth: Optional[np.ndarray]  # ground-truth class mask (synthetic frames only)
    origin: Optional[str] = None  # the image file it came from (folder sources), for per-image results


class FrameBoard:
    """One slot per source, the batcher's outstanding requests, and a round-robin take."""

    def __init__(self, names: List[str], registry: Registry, demand: int = 1, decode_threads: int = 1) -> None:
        self._slots: Dict[str, Optional[Frame]] = {name: None for name in names}
        self._order = list(names)  # round robin: the longest unserved source first
        self._wanted: Set[str] = set()
        # one signal per source: an ask wakes only the source asked, not every source thread
        self._asked = {name: threading.Event() for name in names}
        self._open = set(names)  # not finished
        self._away: Set[str] = set()  # retrying after a failure
        self._cond = threading.Condition()
        self._registry = registry
        self._drops: Dict[Tuple[str, str], Counter] = {}
        self.demand = max(1, demand)
        self.auto_ask = True
        self.decode_s: Optional[float] = None  # one frame's decode time, weighted average
        self.decode_slots = threading.BoundedSemaphore(max(1, decode_threads))
        with self._cond:
            self._rearm()

    def dropped(self, name: str, reason: str) -> Counter:
        """The counter of frames from `name` dropped for `reason` (shed, undecodable, overwritten)."""
        counter = self._drops.get((name, reason))
        if counter is None:
            counter = self._drops[(name, reason)] = self._registry.counter(
                "frames_dropped", source=name, reason=reason)
        return counter

    def decoded(self, seconds: float) -> None:
        """A source decoded a frame in `seconds` (under its decode slot)."""
        with self._cond:
            self.decode_s = seconds if self.decode_s is None else self.decode_s + 0.2 * (seconds - self.decode_s)

    def ask(self) -> None:
        """Ask the longest-unserved sources for frames until `demand` are ready or on their way."""
        with self._cond:
            self._rearm(explicit=True)

    def wants(self, name: str) -> bool:
        """Whether the batcher asked `name` for a frame that it has not delivered yet."""
        with self._cond:
            return name in self._wanted and self._slots[name] is None

    def wait_wanted(self, name: str, timeout_s: float, stop: threading.Event) -> bool:
        """Wait up to `timeout_s` for the batcher to ask `name` for a frame (or for `wake`)."""
        return self._asked[name].wait(timeout_s) and not stop.is_set() and self.wants(name)

    def put(self, frame: Frame, wait: bool, stop: threading.Event) -> None:
        """Deliver a decoded frame. `wait`: hold until the slot is free (nothing lost); otherwise a
        frame still in the slot is replaced and counted as overwritten."""
        with self._cond:
            if wait:
                while self._slots[frame.source] is not None and not stop.is_set():
                    self._cond.wait(0.1)
            if self._slots[frame.source] is not None:
                self.dropped(frame.source, "overwritten").inc()
            self._slots[frame.source] = frame
            self._unask(frame.source)
            self._cond.notify_all()

    def set_away(self, name: str, away: bool) -> None:
        """A failing source (retrying) is not asked for frames until it opens again."""
        with self._cond:
            if away:
                self._away.add(name)
                self._unask(name)
            else:
                self._away.discard(name)
            self._rearm()
            self._cond.notify_all()

    def close_source(self, name: str) -> None:
        """The source will deliver nothing more (end of file, or stopped)."""
        with self._cond:
            self._open.discard(name)
            self._unask(name)
            self._rearm()
            self._cond.notify_all()

    @property
    def exhausted(self) -> bool:
        """Every source has finished and every delivered frame was taken."""
        with self._cond:
            return not self._open and all(f is None for f in self._slots.values())

    def take(self, max_batch: int, max_wait_s: float, timeout_s: float, out: List[Frame],
             cost: Optional[Callable[[Frame], int]] = None, capacity: Optional[int] = None) -> int:
        """Fill `out` with up to max_batch frames from distinct sources, round-robin; returns how many.

        Waits up to `timeout_s` for a first frame, then up to `max_wait_s` for the other asked
        sources to deliver: the batch is as large as the load makes it within that wait. With
        `cost` (input rows a frame needs, e.g. its tiles) the frames' costs stay within `capacity`;
        a frame that does not fit stays in its slot and keeps its turn."""
        out.clear()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._open:
                    return 0
                self._cond.wait(remaining)
            if max_batch > 1 and max_wait_s > 0:
                fill_deadline = time.monotonic() + max_wait_s
                while self._ready() < min(max_batch, self._outstanding()):
                    remaining = fill_deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            used = 0
            for name in list(self._order):
                frame = self._slots[name]
                if frame is not None and len(out) < max_batch:
                    rows = 1 if cost is None else cost(frame)
                    if capacity is not None and used + rows > capacity:
                        continue
                    used += rows
                    out.append(frame)
                    self._slots[name] = None
                    self._order.remove(name)
                    self._order.append(name)
            self._rearm()
            self._cond.notify_all()
        return len(out)

    def _ready(self) -> int:
        return sum(1 for f in self._slots.values() if f is not None)

    def _outstanding(self) -> int:
        """Frames in slots plus frames asked of open sources."""
        return sum(1 for n, f in self._slots.items() if f is not None or n in self._wanted)

    def _rearm(self, explicit: bool = False) -> None:
        """Ask the longest-unserved open sources until `demand` frames are ready or on their way
        (with `auto_ask` off, only when the frame loop asks)."""
        if not (self.auto_ask or explicit):
            return
        outstanding = self._outstanding()
        for name in self._order:
            if outstanding >= self.demand:
                break
            if (name in self._open and name not in self._away and name not in self._wanted
                    and self._slots[name] is None):
                self._wanted.add(name)
                self._asked[name].set()
                outstanding += 1

    def _unask(self, name: str) -> None:
        self._wanted.discard(name)
        self._asked[name].clear()

    def discard_unserved(self) -> int:
        """At shutdown, after the sources stopped: frames still in slots are counted as dropped
        (`stopped`), so captured = processed + dropped holds for every run."""
        with self._cond:
            names = [n for n, f in self._slots.items() if f is not None]
            for name in names:
                self._slots[name] = None
                self.dropped(name, "stopped").inc()
            return len(names)

    def wake(self, name: Optional[str] = None) -> None:
        """Wake the threads waiting on the board; with `name`, also that source if it waits to be
        asked (it is stopping)."""
        with self._cond:
            self._cond.notify_all()
        if name is not None:
            self._asked[name].set()
