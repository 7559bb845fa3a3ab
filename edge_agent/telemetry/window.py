"""The metrics message: the registry turned into one payload per reporting window.

Unlabelled values, and the total of every labelled counter, are numbers at the top level. A
labelled series goes into the array named after its label keys (`by_source`, `by_class`,
`by_source_reason`, `by_stage`, ...), one object per label set holding the label values under
their own keys, with the original names (a source called `cam_a_left` stays that), and the
series' values under the same keys they would have at the top level. That is the shape that
Telegraf's `json_v2` parser (`[[json_v2.object]] path = "by_source"`, `tags = ["source"]`) and
Node-RED turn into tagged points without renaming. Keys end in their unit; the catalogue (in the
birth message) spells each unit one way (`UNITS`).
"""

import time
from typing import Any, Dict, List, Tuple

from edge_agent.metrics import Labels, Registry
from edge_agent.telemetry.payloads import CatalogueEntry

HISTOGRAM_STATS = ("p50", "p95", "p99", "max")
# the unit part of a key -> its one spelling in the catalogue and docs/mqtt.md
UNITS = {"": "count", "count": "count", "ms": "ms", "s": "s", "fps": "fps", "mb": "MB", "kb": "kB", "pct": "%",
         "c": "degC", "mw": "mW", "mhz": "MHz", "px": "px", "bool": "bool", "1m": "load"}
# counters whose total is in every message, also before the pipeline has created them
ALWAYS_TOTALS = ("frames_processed", "frames_ng", "defects")

DESCRIPTIONS = {
    "frames_captured": "frames grabbed from the source",
    "frames_decoded": "frames decoded (only those the batcher asked for)",
    "frames_processed": "frames inspected: went through the model and got a verdict",
    "frames_ng": "frames inspected with at least one defect (NG); reject rate = frames_ng / frames_processed",
    "frames_dropped": "frames not processed, by reason (shed: dropped undecoded, the pipeline was busy; undecodable: "
                      "corrupt; overwritten: a newer decoded frame replaced it; stopped: left at shutdown)",
    "batches": "inference calls by batch size",
    "source_failures": "times a source failed and was reopened",
    "defects": "defect regions reported",
    "inference_batches": "inference calls",
    "inference_items": "frames inferred (sum of batch sizes)",
    "model_swaps": "times a new model was swapped in while running (rollout)",
    "stage": "time spent per pipeline stage (publish: hand-off to broker acknowledgement)",
    "latency": "capture to result, per frame",
    "capture": "time to grab one frame from the source",
    "decode": "time to decode one grabbed frame",
    "truth_intersection": "defect pixels matching ground truth (synthetic sources only)",
    "truth_union": "defect pixels in prediction or ground truth (synthetic sources only)",
    "telemetry_queue_dropped": "frames whose events could not be queued for MQTT (in-memory queue full)",
    "memory_plan": "memory planned at model load, by term",
    "memory_plan_total": "memory planned at model load, all terms",
    "memory_limit": "memory.limit_mb",
    "memory_available_at_load": "memory available on the board when the model was loaded",
    "sanity_warnings": "sanity watch warnings raised, by kind (nan, score_range, coverage, quiet); see the log",
    "jsonl_lines": "per-frame result lines written by sinks.jsonl",
    "jsonl_dropped": "per-frame result lines dropped because the jsonl writer fell behind",
    "evidence_saved": "frames saved to the evidence store",
    "evidence_deleted": "evidence items deleted, oldest first, to keep the store under evidence.max_mb",
    "evidence_skipped": "frames not saved as evidence because the writer fell behind",
    "evidence_size_mb": "size of the evidence store",
    "view_frames_encoded": "frames encoded for the live view",
    "view_frames_skipped": "live-view copies skipped because the encoder held the slot",
    "calibration_images_saved": "frames saved as calibration images from the live view",
}


def unit_name(suffix: str) -> str:
    return UNITS.get(suffix, suffix)


def ordered_labels(labels: Labels) -> List[Tuple[str, str]]:
    """Label pairs, the source first, then by key."""
    return sorted(labels, key=lambda item: (item[0] != "source", item[0]))


def group_name(labels: Labels) -> str:
    """The array a labelled series goes in: by_source, by_class, by_source_reason, by_stage..."""
    return "by_" + "_".join(key for key, _ in ordered_labels(labels))


def base_name(name: str, unit: str) -> str:
    suffix = "_" + unit
    return name[: -len(suffix)] if unit and name.endswith(suffix) else name


def describe(base: str) -> str:
    """The catalogue's description; a metric nobody described is a bug (tests/telemetry catch it)."""
    return DESCRIPTIONS.get(base, "undocumented metric " + base)


class MetricsWindow:
    """Counters are cumulative since the agent started (robust to a lost message); histograms give
    p50/p95/p99/max over the samples added since the previous window only."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cursors: Dict[Tuple[str, Labels], int] = {}
        self._last_time = time.monotonic()
        self._last_processed = registry.counter_total("frames_processed")

    def collect(self, extra: Dict[str, float],
                extra_catalogue: Dict[str, CatalogueEntry]) -> Tuple[Dict[str, Any], Dict[str, CatalogueEntry]]:
        out = _Payload()
        now = time.monotonic()
        window = max(now - self._last_time, 1e-6)
        processed = self.registry.counter_total("frames_processed")
        out.put((), "window_s", round(window, 3), CatalogueEntry("s", "derived", "length of the window this "
                                                                                 "message covers"))
        out.put((), "throughput_fps", round((processed - self._last_processed) / window, 3),
                CatalogueEntry("fps", "derived", "frames processed per second in the window"))
        self._last_time, self._last_processed = now, processed

        totals: Dict[str, Tuple[int, CatalogueEntry]] = {
            name + "_total": (0, CatalogueEntry("count", "counter", describe(name) + "; all labels"))
            for name in ALWAYS_TOTALS}
        for name, labels, value in self.registry.counters():
            unit = self.registry.unit(name)
            base = base_name(name, unit)
            key = base + ("" if unit in ("", "count") else "_" + unit) + "_total"
            out.put(labels, key, value, CatalogueEntry(unit_name(unit), "counter", describe(base)))
            if labels:
                previous = totals.get(key, (0, CatalogueEntry(unit_name(unit), "counter", describe(base) + "; all "
                                                                                                          "labels")))
                totals[key] = (previous[0] + value, previous[1])
        for key, (value, entry) in totals.items():
            if key not in out.values:  # an unlabelled counter of the same name is its own total
                out.put((), key, value, entry)

        for name, labels, gauge_value in self.registry.gauges():
            unit = self.registry.unit(name)
            base = base_name(name, unit)
            out.put(labels, base + ("_" + unit if unit else ""), gauge_value,
                    CatalogueEntry(unit_name(unit), "gauge", describe(base)))

        for name, labels, histogram in self.registry.histograms():
            unit = self.registry.unit(name)
            base = base_name(name, unit)
            stats, self._cursors[(name, labels)] = histogram.stats_since(self._cursors.get((name, labels), 0))
            out.put(labels, base + "_count", stats.count,
                    CatalogueEntry("count", "histogram", describe(base) + ": samples in the window"))
            for stat in HISTOGRAM_STATS:
                # no samples: the percentile is unknown, so it is left out (the catalogue lists it)
                out.put(labels, "{}_{}_{}".format(base, stat, unit), round(getattr(stats, stat), 3) if stats.count
                        else None, CatalogueEntry(unit_name(unit), "histogram",
                                                  "{}: {} in the window".format(describe(base), stat)))

        for key, value in extra.items():
            out.put((), key, value, extra_catalogue[key])
        for key, entry in extra_catalogue.items():  # announced before their first value
            out.catalogue.setdefault(key, entry)
        return out.values, out.catalogue


class _Payload:
    """Values and catalogue under construction; labelled series grouped into `by_...` arrays. The
    catalogue names a grouped key `by_source[].frames_captured_total`."""

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}
        self.catalogue: Dict[str, CatalogueEntry] = {}
        self._rows: Dict[Labels, Dict[str, Any]] = {}

    def put(self, labels: Labels, key: str, value: Any, entry: CatalogueEntry) -> None:
        if not labels:
            self.catalogue[key] = entry
            if value is not None:
                self.values[key] = value
            return
        group = group_name(labels)
        self.catalogue["{}[].{}".format(group, key)] = entry
        if value is None:
            return
        row = self._rows.get(labels)
        if row is None:
            row = self._rows[labels] = dict(ordered_labels(labels))
            self.values.setdefault(group, []).append(row)
        row[key] = value
