"""The evidence store: NG frames (and every Nth OK frame) saved with their overlay and verdict JSON,
so a quality engineer can review what the agent decided. Size-capped: the oldest items are deleted
first, and counted (`evidence_deleted`).

One item is three files sharing a stem, under <store>/<YYYY-MM-DD>/:
  <stem>.jpg (the frame as captured), <stem>.overlay.jpg (mask tint, boxes, classes, scores),
  <stem>.json (the per-image result line of edge_agent.inspection; its "evidence" names <stem>.jpg).
The stem is `<HHMMSS.mmm>-<source>-<index>-<NG|OK>`. The frame loop only copies the frame into a
bounded queue and names the item (`result.notes["evidence"]`, which the MQTT event carries); a
supervised writer thread ("evidence") draws, encodes and writes each file atomically (temporary
name, then rename). A write the disk refuses (full, read-only) loses that item, counted and
reported in the agent's health until writes succeed again (write_faults.py); any other failure is
a bug: the writer restarts with backoff (edge_agent.supervisor: logged, counted, in the health).
"""

import collections
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Deque, Dict, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from edge_agent.inspection import class_colours, draw_overlay, result_record
from edge_agent.inspection_config import EvidenceConfig
from edge_agent.metrics import Registry
from edge_agent.pipeline import InferenceResult, ResultSink
from edge_agent.postprocess import mask_in_frame
from edge_agent.supervisor import SUPERVISOR, Task
from edge_agent.write_faults import WriteFaults

log = logging.getLogger(__name__)

SUFFIXES = (".jpg", ".overlay.jpg", ".json")


class _Item(NamedTuple):
    name: str  # relative to the store: <day>/<stem>
    image: np.ndarray
    mask: Optional[np.ndarray]  # at the model output's resolution; mapped to the frame by the writer
    geometry: Any
    record: Dict[str, Any]
    regions: List[Any]


class EvidenceStore(ResultSink):
    def __init__(self, config: EvidenceConfig, folder: Path, classes: List[str], registry: Registry) -> None:
        self.config = config
        self.folder = Path(folder)
        self.max_bytes = int(config.max_mb * 2**20)
        self.colours = class_colours(classes)
        self._queue: Deque[_Item] = collections.deque()
        self._ok_seen: Dict[str, int] = {}
        self._saved = registry.counter("evidence_saved")
        self._deleted = registry.counter("evidence_deleted")
        self._skipped = registry.counter("evidence_skipped")
        self._bytes = registry.gauge("evidence_size_mb", "MB")
        self._faults = WriteFaults("evidence", str(folder), registry)
        self._items: Deque[Tuple[str, int]] = collections.deque()  # (name, bytes), oldest first
        self.size = 0
        self._wake = threading.Event()
        self._task: Optional[Task] = None

    def start(self) -> "EvidenceStore":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._scan()
        self._trim()
        self._task = SUPERVISOR.spawn("evidence", self._run)
        log.info("evidence store %s: %d item(s), %.1f of %.0f MB", self.folder, len(self._items),
                 self.size / 2**20, self.config.max_mb)
        return self

    # ---- frame loop ---------------------------------------------------------------------------
    def on_result(self, result: InferenceResult) -> None:
        frame = result.frame
        if not result.regions:
            every = self.config.ok_sample_every
            seen = self._ok_seen.get(frame.source, 0)
            self._ok_seen[frame.source] = seen + 1
            if not every or seen % every:
                return
        if len(self._queue) >= self.config.queue_size:
            self._skipped.inc()
            return
        stamp = time.localtime(frame.timestamp)
        stem = "{}{:03d}-{}-{}-{}".format(time.strftime("%H%M%S.", stamp), int(frame.timestamp * 1000) % 1000,
                                          frame.source, frame.index, "NG" if result.regions else "OK")
        name = "{}/{}".format(time.strftime("%Y-%m-%d", stamp), stem)
        mask = result.defect_mask.copy() if result.regions and result.defect_mask is not None else None
        if result.notes is not None:
            result.notes["evidence"] = name + ".jpg"
        record = result_record(result)
        record["evidence"] = name + ".jpg"
        self._queue.append(_Item(name, frame.image.copy(), mask, result.mask_geometry, record, list(result.regions)))
        self._wake.set()

    # ---- writer thread ------------------------------------------------------------------------
    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._task is not None:
            self._task.stop()
            self._wake.set()
            self._task.join(timeout_s)

    def _run(self, stop: threading.Event) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            while self._queue:
                try:
                    self._write(self._queue.popleft())
                except OSError as exc:  # the disk's fault (full, read-only): the item is lost and counted
                    self._faults.failed(exc)
                else:
                    self._faults.succeeded()
            if stop.is_set():
                return

    def _write(self, item: _Item) -> None:
        quality = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        mask = mask_in_frame(item.mask, item.geometry) if item.mask is not None else None
        overlay = draw_overlay(item.image, item.regions, self.colours, mask)
        blobs = [cv2.imencode(".jpg", item.image, quality)[1].tobytes(),
                 cv2.imencode(".jpg", overlay, quality)[1].tobytes(),
                 json.dumps(item.record, indent=1).encode("utf-8")]
        base = self.folder / item.name
        base.parent.mkdir(parents=True, exist_ok=True)
        total = 0
        for suffix, blob in zip(SUFFIXES, blobs):
            _write_atomically(Path(str(base) + suffix), blob)
            total += len(blob)
        self._items.append((item.name, total))
        self.size += total
        self._saved.inc()
        self._trim()

    def _trim(self) -> None:
        while self.size > self.max_bytes and self._items:
            name, nbytes = self._items.popleft()
            for suffix in SUFFIXES:
                try:
                    os.unlink(str(self.folder / name) + suffix)
                except FileNotFoundError:
                    pass
            self.size -= nbytes
            self._deleted.inc()
            day = (self.folder / name).parent
            if day != self.folder and not any(day.iterdir()):
                day.rmdir()
        self._bytes.set(round(self.size / 2**20, 3))

    def _scan(self) -> None:
        """What an earlier run left, oldest first (names sort by day, then time of day)."""
        items: Dict[str, int] = {}
        for path in self.folder.glob("*/*"):
            if path.name.endswith(".tmp"):
                path.unlink()  # a write cut short by a kill
                continue
            for suffix in SUFFIXES[::-1]:
                if path.name.endswith(suffix):
                    name = str(path.relative_to(self.folder))[:-len(suffix)]
                    items[name] = items.get(name, 0) + path.stat().st_size
                    break
        for name in sorted(items):
            self._items.append((name, items[name]))
            self.size += items[name]


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = Path(str(path) + ".tmp")
    try:
        with open(str(tmp), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(str(tmp), str(path))
    except OSError:
        try:  # a full disk must not also keep the half-written file
            tmp.unlink()
        except OSError:
            pass
        raise
