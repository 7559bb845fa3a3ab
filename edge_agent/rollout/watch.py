"""What a rollout watches on the running line: recent frames for the gate, and the line's fps while
the candidate builds (pausing the build when it costs too much). A fresh model's outputs are the
pipeline's sanity watch's to judge (edge_agent.sanity; the controller reads its findings).

The frames are copied on the frame loop's thread (a few, only while armed) and read from the
rollout thread; the fps is sampled by the governor's own supervised thread.
"""

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import psutil

from edge_agent.pipeline import InferenceResult, ResultSink
from edge_agent.supervisor import SUPERVISOR, Task


class RecentFrames(ResultSink):
    """Copies the next `n` frames the line processes, only while a rollout asks for them."""

    def __init__(self) -> None:
        self._wanted = 0
        self._frames: List[np.ndarray] = []
        self._full = threading.Event()
        self._lock = threading.Lock()

    def on_result(self, result: InferenceResult) -> None:
        if not self._wanted:
            return
        with self._lock:
            if len(self._frames) < self._wanted:
                self._frames.append(result.frame.image.copy())  # the image is only valid during this call
                if len(self._frames) >= self._wanted:
                    self._wanted = 0
                    self._full.set()

    def collect(self, n: int, timeout_s: float) -> List[np.ndarray]:
        """Up to `n` frames from now on (fewer when the line is slower than `timeout_s` allows)."""
        if n <= 0:
            return []
        with self._lock:
            self._frames, self._wanted = [], n
            self._full.clear()
        self._full.wait(timeout_s)
        with self._lock:
            frames, self._frames, self._wanted = self._frames, [], 0
        return frames


def save_frames(frames: List[np.ndarray], path: Any) -> None:
    np.savez(path, **{"frame_{}".format(i): f for i, f in enumerate(frames)})


MIN_MEASURED_S = 0.5  # a shorter build gets no fps figure: too few frames to say anything
# The governor pauses the build once the drop reaches this fraction of the bound, so that one
# period's overshoot before it reacts stays within the bound.
PAUSE_AT = 0.5


class BuildGovernor:
    """Keeps the build child from costing the line more than `max_drop` of its fps.

    The baseline is the line's fps just before the build. Every `period_s` the fps of the last
    period and the fps over the whole build so far are compared with it; when either fell by more
    than half the bound (PAUSE_AT), the child (and its own children, e.g. a TensorRT build) is
    suspended for one period, then resumed. Watching the whole build's fps makes the pauses add up
    to what the line needs: the drop reported is the line's fps over the whole build, pauses
    included, which is what the line lost. The child already
    runs at a high niceness; this is the guarantee when niceness is not enough (other processes,
    a GPU-bound build). Figures are kept for the report."""

    def __init__(self, pipeline: Any, max_drop: float, period_s: float = 0.5) -> None:
        self.pipeline = pipeline
        self.max_drop = max_drop
        self.period_s = period_s
        self.baseline_fps: Optional[float] = None
        self.samples: List[float] = []  # fps of each period the build ran (not paused)
        self.during_fps: Optional[float] = None  # over the whole build, pauses included
        self.pauses = 0
        self._pid: Optional[int] = None
        self._attached: Optional[Tuple[int, float]] = None  # (frames, time) when the build started
        self._task: Optional[Task] = None

    def measure_baseline(self, seconds: float) -> float:
        start_frames, start = self.pipeline.frames, time.monotonic()
        time.sleep(seconds)
        self.baseline_fps = (self.pipeline.frames - start_frames) / max(time.monotonic() - start, 1e-6)
        return self.baseline_fps

    def attach(self, pid: int) -> None:
        """Run-isolated's on_start: the child exists now."""
        self._pid = pid
        self._attached = (self.pipeline.frames, time.monotonic())
        if self._task is None:
            self._task = SUPERVISOR.spawn("rollout-governor", self._run)

    def close(self) -> None:
        if self._task is not None:
            self._task.stop()
            self._task.join(5)
        self._resume()
        if self._attached is not None:
            frames, at = self._attached
            elapsed = time.monotonic() - at
            if elapsed >= MIN_MEASURED_S:  # a shorter build says nothing about the line's fps
                self.during_fps = (self.pipeline.frames - frames) / elapsed

    def figures(self) -> Dict[str, Any]:
        during = self.during_fps
        figures: Dict[str, Any] = {"fps_before": _round(self.baseline_fps), "fps_during_build": _round(during),
                                   "max_fps_drop": self.max_drop, "build_pauses": self.pauses}
        if during is not None and self.baseline_fps:
            figures["fps_drop"] = round(max(0.0, 1.0 - during / self.baseline_fps), 4)
        return figures

    def _run(self, stop: threading.Event) -> None:
        frames, at = self.pipeline.frames, time.monotonic()
        try:
            while not stop.wait(self.period_s):
                now, count = time.monotonic(), self.pipeline.frames
                fps = (count - frames) / max(now - at, 1e-6)
                frames, at = count, now
                self.samples.append(fps)
                start_frames, start = self._attached or (count, now)
                overall = (count - start_frames) / max(now - start, 1e-6)
                floor = (1.0 - PAUSE_AT * self.max_drop) * (self.baseline_fps or 0.0)
                if self.baseline_fps and min(fps, overall) < floor:
                    self.pauses += 1
                    self._suspend()
                    stop.wait(self.period_s)
                    self._resume()
                    frames, at = self.pipeline.frames, time.monotonic()  # the pause itself is not a sample
        finally:
            self._resume()  # a failure (the supervisor restarts this loop) never leaves the build suspended

    def terminate(self) -> None:
        """End the build child and its children (the agent is stopping)."""
        self._resume()
        for process in self._tree():
            try:
                process.terminate()
            except psutil.Error:
                pass

    def _tree(self) -> List[psutil.Process]:
        if self._pid is None:
            return []
        try:
            parent = psutil.Process(self._pid)
            return [parent] + parent.children(recursive=True)
        except psutil.Error:
            return []

    def _suspend(self) -> None:
        for process in self._tree():
            try:
                process.suspend()
            except psutil.Error:
                pass

    def _resume(self) -> None:
        for process in self._tree():
            try:
                process.resume()
            except psutil.Error:
                pass


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)
