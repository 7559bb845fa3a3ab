"""Topics and payloads, exactly as docs/mqtt.md and docs/schemas/ describe them.

Payloads are flat JSON objects: numbers at the top level with the unit in the key name, `ts` in
integer UTC epoch milliseconds, `schema`, `session` and `seq` in every message. A value that is
not known (no samples in the window, an absent sensor) is left out, never sent as a sentinel.
"""

import json
import re
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from edge_agent.metrics import Labels, Registry

SCHEMA_VERSION = 1
HISTOGRAM_STATS = ("p50", "p95", "p99", "max")

DESCRIPTIONS = {
    "frames_captured": "frames grabbed from the source",
    "frames_decoded": "frames decoded (only those the batcher asked for)",
    "frames_processed": "frames that went through the model",
    "frames_dropped": "frames not processed, by reason (shed: dropped undecoded, the pipeline was busy; undecodable: "
                      "corrupt; overwritten: a newer decoded frame replaced it; stopped: left at shutdown)",
    "batches": "inference calls by batch size",
    "source_failures": "times a source failed and was reopened",
    "defects": "defect regions reported",
    "inference_batches": "inference calls",
    "inference_items": "frames inferred (sum of batch sizes)",
    "stage": "time spent per pipeline stage (publish: hand-off to broker acknowledgement)",
    "latency": "capture to result, per frame",
    "capture": "time to grab one frame from the source",
    "decode": "time to decode one grabbed frame",
    "truth_intersection": "defect pixels matching ground truth (synthetic sources only)",
    "truth_union": "defect pixels in prediction or ground truth (synthetic sources only)",
}


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
        self.birth = self.base + "/birth"
        self.metrics = self.base + "/metrics"
        self.defect = self.base + "/events/defect"
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


def _base_name(name: str, unit: str) -> str:
    suffix = "_" + unit
    return name[: -len(suffix)] if unit and name.endswith(suffix) else name


def _label_part(labels: Labels) -> str:
    """Label values in the key, the source first: frames_dropped{reason, source} -> _cam0_overwritten."""
    ordered = sorted(labels, key=lambda item: (item[0] != "source", item[0]))
    return "".join("_" + key_part(value) for _, value in ordered)


class MetricsWindow:
    """Turns the registry into one flat metrics payload per reporting window.

    Counters are cumulative since the agent started (robust to a lost message); histograms give
    p50/p95/p99/max over the samples added since the previous window only."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cursors: Dict[Tuple[str, Labels], int] = {}
        self._last_time = time.monotonic()
        self._last_processed = registry.counter_total("frames_processed")

    def collect(self, extra: Dict[str, float],
                extra_catalogue: Dict[str, CatalogueEntry]) -> Tuple[Dict[str, Any], Dict[str, CatalogueEntry]]:
        values: Dict[str, Any] = {}
        catalogue: Dict[str, CatalogueEntry] = {}
        now = time.monotonic()
        window = max(now - self._last_time, 1e-6)
        processed = self.registry.counter_total("frames_processed")
        values["window_s"] = round(window, 3)
        values["throughput_fps"] = round((processed - self._last_processed) / window, 3)
        catalogue["window_s"] = CatalogueEntry("s", "derived", "length of the window this message covers")
        catalogue["throughput_fps"] = CatalogueEntry("fps", "derived", "frames processed per second in the window")
        self._last_time, self._last_processed = now, processed

        totals: Dict[str, Tuple[int, str, str]] = {}
        for name, labels, value in self.registry.counters():
            unit = self.registry.unit(name)
            base = _base_name(name, unit)
            unit_part = "" if unit in ("", "count") else "_" + unit
            description = DESCRIPTIONS.get(base, name)
            key = base + _label_part(labels) + unit_part + "_total"
            values[key] = value
            catalogue[key] = CatalogueEntry(unit or "count", "counter", description)
            if labels:
                total_key = base + unit_part + "_total"
                previous = totals.get(total_key, (0, unit, description))
                totals[total_key] = (previous[0] + value, unit or "count", description)
        # Sent before the pipeline has created its counters too (the model may still be loading).
        totals.setdefault("frames_processed_total", (0, "count", DESCRIPTIONS["frames_processed"]))
        for key, (value, unit, description) in totals.items():
            values[key] = value
            catalogue[key] = CatalogueEntry(unit, "counter", description + " (all labels)")

        for name, labels, gauge_value in self.registry.gauges():
            if gauge_value is None:
                continue
            unit = self.registry.unit(name)
            key = _base_name(name, unit) + _label_part(labels) + ("_" + unit if unit else "")
            values[key] = gauge_value
            catalogue[key] = CatalogueEntry(unit, "gauge", DESCRIPTIONS.get(name, name))

        for name, labels, histogram in self.registry.histograms():
            unit = self.registry.unit(name)
            base = _base_name(name, unit) + _label_part(labels)
            stats, self._cursors[(name, labels)] = histogram.stats_since(self._cursors.get((name, labels), 0))
            description = DESCRIPTIONS.get(_base_name(name, unit), name)
            values[base + "_count"] = stats.count
            catalogue[base + "_count"] = CatalogueEntry("count", "histogram", description + ": samples in window")
            for stat in HISTOGRAM_STATS:
                key = "{}_{}_{}".format(base, stat, unit)
                catalogue[key] = CatalogueEntry(unit, "histogram", "{}: {} in window".format(description, stat))
                if stats.count:  # no samples: the percentile is unknown, so it is left out
                    values[key] = round(getattr(stats, stat), 3)

        values.update(extra)
        catalogue.update(extra_catalogue)
        return values, catalogue


class DefectRecord(NamedTuple):
    """What the frame loop hands over per frame with defects (copied, the frame is reused)."""

    source: str
    frame_index: int
    capture_ts: float  # epoch seconds
    frame_width: int
    frame_height: int
    latency_ms: float
    regions: List[Any]  # DefectRegion
    crops: Optional[List[Any]]  # np.ndarray per region, or None when crops are off


def defect_payload(record: DefectRecord, region: Any, provenance: Dict[str, Any]) -> Dict[str, Any]:
    x, y, w, h = region.bbox
    payload = {
        "source": record.source,
        "frame_index": record.frame_index,
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
    payload.update(provenance)
    return payload
