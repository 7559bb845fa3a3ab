"""When to ask the sources for the next batch's frames: as late as lets them be ready in time.

A frame's latency is counted from its grab. Asked as soon as the previous batch is taken, a frame
waits in its slot while one batch runs, then while the batch before it runs, then runs itself:
about three inference periods. Asked `lead` seconds before the running batch is expected to end
(its decode and preprocessing time), it waits for nothing but its own batch: about one period
plus the lead. When the lead is as long as a period (decoding is the bottleneck), asking early is
what keeps the backend busy, so the board asks at the take as before.

The same estimates bound the batch: a frame's latency is about the lead (or the running batch,
if longer) plus its own batch's inference and postprocessing, so the batch holds at most the
rows that keep that within `pipeline.latency_target_ms`.

Estimates are exponentially weighted. A batch's inference time is its end as the backend
recorded it (ONNX Runtime's worker thread does), else learnt from `wait()` calls that blocked
(the batch was still running, so the return time is its end); a call that did not block only
gives an upper bound, used to lower the estimate.
"""

import math
import time
from typing import Any, Dict, Optional, Tuple

from edge_agent.signal_event import StopEvent

WEIGHT = 0.2  # of a new sample in an estimate
MARGIN_S = 0.004  # scheduling slack added to the lead
BLOCKED_S = 0.0003  # a wait() longer than this blocked on the running batch


def _blend(old: Optional[float], sample: float) -> float:
    return sample if old is None else old + WEIGHT * (sample - old)


class AskTiming:
    """Estimates for one frame loop (its thread only)."""

    def __init__(self, decoders: int) -> None:
        self.decoders = max(1, decoders)
        self._infer_s: Dict[int, float] = {}  # by input rows
        self._preprocess_s: Optional[float] = None  # per frame
        self._finish_s: Optional[float] = None  # postprocess and sinks, per batch

    def batch_ended(self, rows: int, submitted: float, waited_from: float, returned: float,
                    finished_at: Optional[float] = None) -> None:
        """`wait()` for a batch of `rows` submitted at `submitted` was called at `waited_from` and
        returned at `returned` (monotonic seconds); `finished_at`: when the backend says it ended."""
        old = self._infer_s.get(rows)
        if finished_at is not None and finished_at >= submitted:
            self._infer_s[rows] = _blend(old, finished_at - submitted)
            return
        sample = returned - submitted
        if returned - waited_from > BLOCKED_S or (old is not None and sample < old):
            self._infer_s[rows] = _blend(old, sample)

    def preprocessed(self, frames: int, seconds: float) -> None:
        if frames:
            self._preprocess_s = _blend(self._preprocess_s, seconds / frames)

    def finished(self, seconds: float) -> None:
        self._finish_s = _blend(self._finish_s, seconds)

    def lead_s(self, frames: int, decode_s: Optional[float]) -> Optional[float]:
        """Seconds from asking `frames` sources to their frames preprocessed; None until measured."""
        if decode_s is None or self._preprocess_s is None:
            return None
        return decode_s * math.ceil(frames / self.decoders) + self._preprocess_s * frames + MARGIN_S

    def infer_s(self, rows: int) -> Optional[float]:
        """Estimated inference time of `rows` rows: measured, else scaled from the nearest measured size."""
        if rows in self._infer_s:
            return self._infer_s[rows]
        if not self._infer_s:
            return None
        nearest = min(self._infer_s, key=lambda known: abs(known - rows))
        return self._infer_s[nearest] * rows / nearest

    def batch_limit(self, max_rows: int, rows_per_frame: int, target_s: float, decode_s: Optional[float]) -> int:
        """The most rows (a multiple of `rows_per_frame`, at least one frame) whose frames are expected
        back within `target_s` of their grab; `max_rows` while nothing is measured or with no target."""
        if target_s <= 0:
            return max_rows
        rows = max_rows - max_rows % rows_per_frame
        while rows > rows_per_frame:
            infer_s = self.infer_s(rows)
            lead = self.lead_s(rows // rows_per_frame, decode_s)
            if infer_s is None or lead is None:
                return rows
            if max(lead, infer_s) + infer_s + (self._finish_s or 0.0) <= target_s:
                return rows
            rows -= rows_per_frame
        return max(rows, rows_per_frame)

    def expected_end(self, rows: int, submitted: float) -> Optional[float]:
        infer_s = self._infer_s.get(rows)
        return None if infer_s is None else submitted + infer_s

    def ask_at(self, rows: int, submitted: float, frames: int, decode_s: Optional[float]) -> Optional[float]:
        """When to ask for the next `frames` frames while a batch of `rows` runs since `submitted`;
        None: ask at the take (too little is known, or the lead is as long as the batch)."""
        end = self.expected_end(rows, submitted)
        lead = self.lead_s(frames, decode_s)
        if end is None or lead is None:
            return None
        if lead + (self._finish_s or 0.0) >= end - submitted:
            return None
        return end - lead

    def ask(self, board: Any, running: Optional[Tuple[int, float]], frames: int, max_wait_s: float,
            stop: StopEvent) -> Optional[float]:
        """Ask `board` (a FrameBoard) for the next `frames` frames: at once, or, while a batch of
        `running` = (rows, submitted) runs, one lead before its expected end. Returns how long the
        take may wait for them (until that end, at least `max_wait_s`); None when `stop` came first."""
        at = None if running is None else self.ask_at(running[0], running[1], frames, board.decode_s)
        board.auto_ask = at is None
        wait_s = max_wait_s
        if at is not None:
            delay = at - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return None
            wait_s = max(max_wait_s, (self.expected_end(*running) or 0.0) - time.monotonic())
        board.ask()
        return wait_s
