"""The sanity watch: warnings while running when the model's outputs look wrong.

Checked on the frame loop at the cost of two reductions per frame (max and min of the output,
no allocation): NaN or Inf in the output; scores outside [0, 1] after the activation (raw logits
read as probabilities); defects covering most of the frame for many frames in a row (a
normalization or `scale` mistake); nothing found for a long window on a line that found defects
before. Each warning is logged (at most once per `warn_interval_s`), counted in the registry
(`sanity_warnings{kind}`), reported to the agent's health (key `sanity <kind>`: the MQTT status
reasons, state `degraded`) when it starts and cleared when it ends (or when another model is
swapped in), and listed in `active()`. A rollout's probation rolls a new model back on its findings
(edge_agent.rollout.controller).
"""

import logging
import math
import time
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from edge_agent.config import ModelConfig
from edge_agent.inspection_config import SanityConfig
from edge_agent.metrics import Registry

log = logging.getLogger(__name__)

SCORE_SLACK = 1e-3  # float rounding around 0 and 1


def reads_probabilities(model: ModelConfig) -> bool:
    """True when the raw output is taken as probabilities (no activation applied): only then can it
    leave [0, 1]; after softmax or sigmoid it cannot."""
    return model.output.kind == "scores" and model.output.activation == "none"


def output_range(output: np.ndarray) -> Tuple[float, float]:
    """(lowest, highest) value of one output row: two reductions, no allocation."""
    return float(output.min()), float(output.max())


def finite(low: float, high: float) -> bool:
    """False when the row holding these extremes has a NaN or Inf anywhere."""
    return math.isfinite(high) and math.isfinite(low)


def outside_unit(low: float, high: float) -> bool:
    return low < -SCORE_SLACK or high > 1 + SCORE_SLACK


def covers_frame(regions: Sequence[Any], frame_area: int, coverage: float) -> bool:
    """True when the regions cover `coverage` (a share) or more of a frame of `frame_area` pixels."""
    return bool(frame_area) and sum(r.area_px for r in regions) >= coverage * frame_area


class SanityWarning(NamedTuple):
    kind: str  # nan | score_range | coverage | quiet
    text: str
    since: float  # time.monotonic() when it started


class SanityWatch:
    def __init__(self, config: SanityConfig, model: ModelConfig, registry: Registry) -> None:
        self.config = config
        self.model = model
        self._registry = registry
        self._counters: Dict[str, Any] = {}  # kind -> counter, made on first use
        self._active: Dict[str, SanityWarning] = {}
        self._logged: Dict[str, float] = {}
        self._reads_probabilities = reads_probabilities(model)
        self._floats = model.output.kind == "scores"
        self.frames = 0
        self.defect_frames = 0
        self.nonfinite_frames = 0
        self._covered_run = 0
        self._quiet_run = 0
        self._score_low = math.inf
        self._score_high = -math.inf

    def observe(self, output: np.ndarray, regions: Sequence[Any], frame_area: int) -> None:
        """One frame: its raw output row, its reported regions, the frame's pixel count."""
        if not self.config.enabled:
            return
        self.frames += 1
        if self._floats:
            low, high = output_range(output)
            if not finite(low, high):
                self.nonfinite_frames += 1
                self._raise("nan", "the model's output holds NaN or Inf ({} of {} frames so far): check the model "
                                   "export and model.input scale/mean/std".format(self.nonfinite_frames, self.frames))
            elif self._reads_probabilities:
                self._score_low, self._score_high = min(self._score_low, low), max(self._score_high, high)
                if outside_unit(low, high):
                    self._raise("score_range", "scores range {:.3g}..{:.3g}, outside 0-1, with "
                                "model.output.activation: none: the output holds logits; set activation: softmax "
                                "(several channels) or sigmoid (one)".format(self._score_low, self._score_high))
        if regions:
            self.defect_frames += 1
            self._quiet_run = 0
            self._clear("quiet")
        else:
            self._quiet_run += 1
            if self.defect_frames and self._quiet_run >= self.config.quiet_frames:
                self._raise("quiet", "no defect found in the last {} frames although {} earlier frames had some: "
                                     "check the camera, lighting and model.input normalization".format(
                                         self._quiet_run, self.defect_frames))
        if covers_frame(regions, frame_area, self.config.coverage):
            self._covered_run += 1
            if self._covered_run >= self.config.coverage_frames:
                self._raise("coverage", "defects cover {:.0%} or more of the frame in {} frames in a row: check "
                                        "model.input scale/mean/std against the model's training (scale 1 instead "
                                        "of 1/255?)".format(self.config.coverage, self._covered_run))
        else:
            self._covered_run = 0
            self._clear("coverage")

    def active(self) -> List[str]:
        """The warnings that hold now, one line each."""
        return [w.text for w in self.warnings()]

    def warnings(self) -> List[SanityWarning]:
        """The warnings that hold now; any thread may ask (a rollout's probation does)."""
        return list(self._active.values())  # one C-level copy: safe while the frame loop adds to it

    def close(self) -> None:
        """The model it watched is no longer served (a swap): its warnings leave the agent's health."""
        for kind in list(self._active):
            self._clear(kind)

    def summary(self) -> List[str]:
        """End of a finite run (`inspect`): what held at any time, plus 'nothing found at all'."""
        lines = self.active()
        if self.frames and not self.defect_frames:
            lines.append("no defect found in any of the {} image(s): if they show defects, check model.input "
                         "scale/mean/std (the model's training normalization) and thresholds.score".format(self.frames))
        return lines

    def _raise(self, kind: str, text: str) -> None:
        now = time.monotonic()
        since = self._active[kind].since if kind in self._active else now
        if kind not in self._active:
            self._counter(kind).inc()
            self._registry.health.report("sanity " + kind, text)  # status reasons and MQTT health
        self._active[kind] = SanityWarning(kind, text, since)
        last = self._logged.get(kind)
        if last is None or now - last >= self.config.warn_interval_s:
            self._logged[kind] = now
            log.warning("sanity: %s", text)

    def _clear(self, kind: str) -> None:
        if self._active.pop(kind, None) is not None:
            self._registry.health.clear("sanity " + kind)
            log.info("sanity: %s warning cleared", kind)

    def _counter(self, kind: str) -> Any:
        counter = self._counters.get(kind)
        if counter is None:
            counter = self._counters[kind] = self._registry.counter("sanity_warnings", kind=kind)
        return counter

