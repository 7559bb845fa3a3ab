"""Per-image inspection results: one JSON line per frame (file, size, verdict, regions in image pixels,
latency), an annotated overlay image, and the `jsonl` sink that writes those lines from `run`.

The line format is the same for `edge-agent inspect` (results.jsonl in --out) and the running
daemon (`sinks.jsonl`), so one script reads both:

    {"file": "a.png", "source": "images", "index": 0, "ts": 1764504000.123, "width": 640,
     "height": 480, "verdict": "NG", "defects": 1, "latency_ms": 12.3,
     "regions": [{"class": "scratch", "area_px": 812, "bbox": [x, y, w, h],
                  "score_max": 0.98, "score_mean": 0.91}]}

plus "evidence": "<day>/<stem>.jpg" when the evidence store kept the frame (edge_agent.evidence).
"""

import collections
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from edge_agent.inspection_config import JsonlSinkConfig
from edge_agent.metrics import Registry
from edge_agent.pipeline import InferenceResult, ResultSink
from edge_agent.supervisor import SUPERVISOR, Task
from edge_agent.write_faults import WriteFaults

log = logging.getLogger(__name__)

# BGR colours for defect classes, in class order (background excluded); repeats past the end
PALETTE = [(40, 40, 230), (0, 200, 255), (230, 120, 0), (200, 0, 200), (0, 180, 0), (255, 255, 0),
           (120, 60, 200), (0, 120, 255)]


def verdict(regions: Sequence[Any]) -> str:
    """NG when the frame holds at least one reported defect, else OK."""
    return "NG" if regions else "OK"


def result_record(result: InferenceResult) -> Dict[str, Any]:
    """The per-image line (see the module docstring) for one pipeline result."""
    frame = result.frame
    height, width = frame.image.shape[:2]
    record = {"file": frame.origin, "source": frame.source, "index": frame.index, "ts": round(frame.timestamp, 3),
              "width": int(width), "height": int(height), "verdict": verdict(result.regions),
              "defects": len(result.regions), "latency_ms": round(result.latency_ms, 2),
              "regions": [r.as_dict() for r in result.regions]}
    if result.notes and "evidence" in result.notes:
        record["evidence"] = result.notes["evidence"]
    return record


def class_colours(classes: Sequence[str]) -> Dict[str, Tuple[int, int, int]]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(classes)}


def draw_overlay(image: np.ndarray, regions: Sequence[Any], colours: Dict[str, Tuple[int, int, int]],
                 mask: Optional[np.ndarray] = None, status: Optional[str] = None) -> np.ndarray:
    """A copy of `image` with the defect mask tinted, each region's box, and its class and score."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if mask is not None and mask.any():
        tint = out.copy()
        tint[mask > 0] = (0, 0, 255)
        cv2.addWeighted(tint, 0.45, out, 0.55, 0, dst=out)
    scale = max(0.35, min(out.shape[:2]) / 600.0)
    thickness = max(1, int(round(scale * 2)))
    for region in regions:
        x, y, w, h = region.bbox
        colour = colours.get(region.cls, PALETTE[0])
        cv2.rectangle(out, (x, y), (x + max(w, 1) - 1, y + max(h, 1) - 1), colour, thickness)
        label = "{} {:.2f}".format(region.cls, region.score_max)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y - th - base - 2 if y - th - base - 2 >= 0 else min(out.shape[0] - th - base, y + h + 2)
        cv2.rectangle(out, (x, top), (x + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(out, label, (x + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    if status:
        cv2.putText(out, status, (6, 6 + int(22 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, status, (6, 6 + int(22 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


class RotatingLines:
    """Appends text lines to a file and rotates it at a size: file -> file.1 -> ... -> file.<keep>
    (the oldest deleted). Each line is written whole with one write() and flushed, so a kill leaves
    at most the line being written incomplete, never an earlier one."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        self._file: Any = None

    def open(self) -> "RotatingLines":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(str(self.path), "a", encoding="utf-8")
        return self

    def write(self, line: str) -> None:
        if self._file is None or self._file.closed:  # closed: a rotation that failed half-way
            self.open()
        if self._file.tell() > 0 and self._file.tell() + len(line) + 1 > self.max_bytes:
            self._rotate()
        self._file.write(line + "\n")
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        oldest = self.path.with_name("{}.{}".format(self.path.name, self.keep))
        if oldest.exists():
            oldest.unlink()
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name("{}.{}".format(self.path.name, n))
            if older.exists():
                os.replace(str(older), str(self.path.with_name("{}.{}".format(self.path.name, n + 1))))
        os.replace(str(self.path), str(self.path.with_name(self.path.name + ".1")))
        self.rotations += 1
        self._file = open(str(self.path), "a", encoding="utf-8")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class JsonlSink(ResultSink):
    """`sinks.jsonl`: the frame loop appends a small record to a bounded deque (O(1), never waits);
    a supervised writer thread ("jsonl-sink") turns records into lines in a size-rotated file. A line
    the disk refuses is lost, counted and reported (write_faults.py); any other failure restarts the
    writer with backoff. Needs no broker."""

    def __init__(self, config: JsonlSinkConfig, path: Path, registry: Registry) -> None:
        self.config = config
        self.path = path
        self._records: Deque[Dict[str, Any]] = collections.deque()
        self._dropped = registry.counter("jsonl_dropped")
        self._written = registry.counter("jsonl_lines")
        self._faults = WriteFaults("jsonl", str(path), registry)
        self._wake = threading.Event()
        self._lines = RotatingLines(path, int(config.max_mb * 2**20), config.keep)
        self._task: Optional[Task] = None

    def start(self) -> "JsonlSink":
        self._lines.open()
        self._task = SUPERVISOR.spawn("jsonl-sink", self._run)
        log.info("per-frame results to %s (rotated at %.0f MB, %d kept)", self.path, self.config.max_mb,
                 self.config.keep)
        return self

    def on_result(self, result: InferenceResult) -> None:
        if self.config.defects_only and not result.regions:
            return
        if len(self._records) >= self.config.queue_size:
            self._dropped.inc()
            return
        self._records.append(result_record(result))
        self._wake.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the writer and close the file."""
        if self._task is not None:
            self._task.stop()
            self._wake.set()
            self._task.join(timeout_s)
        self._lines.close()

    def _run(self, stop: threading.Event) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            self._drain()
            if stop.is_set():
                self._drain()
                return

    def _drain(self) -> None:
        while self._records:
            try:
                self._lines.write(json.dumps(self._records.popleft(), separators=(",", ":")))
            except OSError as exc:  # the disk's fault (full, read-only): the line is lost and counted
                self._faults.failed(exc)
                continue
            self._faults.succeeded()
            self._written.inc()


def read_results(path: Path) -> List[Dict[str, Any]]:
    """The lines of a results.jsonl (an incomplete last line, from a kill mid-write, is skipped)."""
    rows = []
    with open(str(path), encoding="utf-8") as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows

