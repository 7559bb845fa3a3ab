"""Topics and payloads, exactly as docs/mqtt.md and docs/schemas/ describe them.

Payloads are JSON objects: numbers at the top level with the unit in the key name, `ts` in integer
UTC epoch milliseconds, `schema`, `session` and `seq` in every message. A value that is not known
(no samples in the window, an absent sensor) is left out, never sent as a sentinel or null.
The metrics message is built by `window.py`.
"""

import json
import re
import time
from typing import Any, Dict, List, NamedTuple, Optional

SCHEMA_VERSION = 2  # 2: labelled metrics in arrays, status with reasons, verdicts (docs/mqtt.md)
def now_ms() -> int:
    return int(time.time() * 1000)


def encode(payload: Dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def with_replay(payload: bytes, replay: bool) -> bytes:
    """Append the `replay` flag to a stored flat JSON object without re-parsing it."""
    return payload[:-1] + (b',"replay":true}' if replay else b',"replay":false}')


def key_part(value: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", value.lower()).strip("_") or "none"


class Topics:
    """Fixed-depth topics: {root}/v1/{site}/{line}/{device}/{kind}."""

    def __init__(self, root: str, site: str, line: str, device: str) -> None:
        self.base = "/".join((root, "v1", site, line, device))
        self.status = self.base + "/status"
        self.availability = self.base + "/availability"
        self.birth = self.base + "/birth"
        self.metrics = self.base + "/metrics"
        self.defect = self.base + "/events/defect"
        self.verdict = self.base + "/events/verdict"
        self.commands = self.base + "/cmd/+"
        self.command_prefix = self.base + "/cmd/"

    def reply(self, command: str) -> str:
        return self.base + "/reply/" + (re.sub(r"[^a-z0-9_-]+", "_", command.lower()) or "none")


class Envelope:
    """Session id and per-topic sequence numbers shared by every message of this process."""

    def __init__(self, session: str) -> None:
        self.session = session
        self._seq: Dict[str, int] = {}

    def stamp(self, stream: str, payload: Dict[str, Any], ts: Optional[int] = None) -> Dict[str, Any]:
        seq = self._seq.get(stream, 0) + 1
        self._seq[stream] = seq
        head = {"schema": SCHEMA_VERSION, "session": self.session, "seq": seq, "ts": now_ms() if ts is None else ts}
        head.update(payload)
        return head


class CatalogueEntry(NamedTuple):
    unit: str
    kind: str  # counter, gauge, histogram, probe, derived
    description: str


class DefectRecord(NamedTuple):
    """What the frame loop hands over per inspected frame that telemetry reports (copied, the frame
    is reused): frames with defects, and every frame when telemetry.verdicts is `all`."""

    source: str
    frame_index: int
    capture_ts: float  # epoch seconds
    frame_width: int
    frame_height: int
    latency_ms: float
    regions: List[Any]  # DefectRegion
    crops: Optional[List[Any]]  # np.ndarray per region, or None when crops are off
    file: Optional[str] = None  # the image's file name, for sources that read files
    evidence: Optional[str] = None  # the evidence store's frame file, relative to the store


def frame_id(device: str, session: str, record: DefectRecord) -> str:
    """Unique per inspected frame, across boards and restarts; events and the verdict share it."""
    return "{}-{}-{}-{}".format(device, session, record.source, record.frame_index)


def verdict_payload(record: DefectRecord, frame: str, provenance: Dict[str, Any]) -> Dict[str, Any]:
    counts: Dict[str, int] = {}
    for region in record.regions:
        counts[region.cls] = counts.get(region.cls, 0) + 1
    payload = {
        "verdict": "NG" if record.regions else "OK",
        "source": record.source,
        "frame_index": record.frame_index,
        "frame_id": frame,
        "capture_ts": int(record.capture_ts * 1000),
        "defect_count": len(record.regions),
        "defects": counts,
        "latency_ms": round(record.latency_ms, 3),
    }
    if record.file:
        payload["file"] = record.file
    if record.evidence is not None:
        payload["evidence"] = record.evidence
    payload.update(provenance)
    return payload


def defect_payload(record: DefectRecord, region: Any, index: int, frame: str,
                   provenance: Dict[str, Any]) -> Dict[str, Any]:
    x, y, w, h = region.bbox
    payload = {
        "source": record.source,
        "frame_index": record.frame_index,
        "frame_id": frame,
        "region_index": index,
        "capture_ts": int(record.capture_ts * 1000),
        "class": region.cls,
        "area_px": region.area_px,
        "bbox_x_px": x,
        "bbox_y_px": y,
        "bbox_w_px": w,
        "bbox_h_px": h,
        "frame_width_px": record.frame_width,
        "frame_height_px": record.frame_height,
        "score_max": round(region.score_max, 4),
        "score_mean": round(region.score_mean, 4),
        "latency_ms": round(record.latency_ms, 3),
    }
    if record.file is not None:
        payload["file"] = record.file
    if record.evidence is not None:
        payload["evidence"] = record.evidence
    payload.update(provenance)
    return payload
