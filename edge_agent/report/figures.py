"""The report's charts, drawn by matplotlib as inline SVG (the optional `report` extra).

Without matplotlib (a Jetson installed with the core dependencies only) `charts()` returns no
charts and the reason, and the report says that its charts were skipped; the tables carry every
figure either way. SVG keeps text as paths, so the page needs no font and no network offline.
"""

import io
import logging
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

log = logging.getLogger(__name__)
COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]


class Chart(NamedTuple):
    key: str
    title: str
    svg: str


def charts(document: Dict[str, Any], latencies: Dict[str, Dict[int, List[float]]]) -> Tuple[List[Chart], Optional[str]]:
    """(charts, None), or ([], why they were skipped)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on a board or in CI
        from matplotlib import pyplot
    except ImportError as exc:
        return [], "matplotlib is not installed ({}); pip install 'edge-agent[report]' draws them".format(exc)
    pyplot.rcParams.update({"svg.fonttype": "path", "font.size": 9, "axes.spines.top": False,
                            "axes.spines.right": False})
    measured = [r for r in document["rows"] if r.get("batches")]
    if not measured:
        return [], "no variant could be measured"
    drawn = []
    for key, title, draw in (("throughput", "Throughput vs batch size", _throughput),
                             ("latency", "Latency distribution at batch {}".format(min(document["batches"])),
                              _latency),
                             ("memory", "Memory", _memory), ("accuracy", "Agreement with FP32", _accuracy)):
        figure, axes = pyplot.subplots(figsize=(6.4, 3.4))
        try:
            draw(axes, measured, document, latencies)
            figure.tight_layout()
            drawn.append(Chart(key, title, _svg(figure)))
        finally:
            pyplot.close(figure)
    return drawn, None


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


def _throughput(axes: Any, rows: List[Dict[str, Any]], document: Dict[str, Any], latencies: Any) -> None:
    for colour, row in zip(COLOURS, rows):
        batches = sorted(int(b) for b in row["batches"])
        axes.plot(batches, [row["batches"][str(b)]["fps"] for b in batches], marker="o", color=colour,
                  label=row["label"])
    axes.set_xscale("log", base=2)
    axes.set_xticks(document["batches"])
    axes.set_xticklabels([str(b) for b in document["batches"]])
    axes.set_xlabel("batch size")
    axes.set_ylabel("frames / s")
    axes.set_ylim(bottom=0)
    axes.legend(frameon=False)
    axes.grid(alpha=0.3)


def _latency(axes: Any, rows: List[Dict[str, Any]], document: Dict[str, Any],
             latencies: Dict[str, Dict[int, List[float]]]) -> None:
    batch = min(document["batches"])
    labels = [r["label"] for r in rows if latencies.get(r["label"], {}).get(batch)]
    parts = axes.boxplot([latencies[label][batch] for label in labels], vert=False, patch_artist=True,
                         showfliers=True, whis=(1, 99), flierprops={"markersize": 2})
    for colour, box in zip(COLOURS, parts["boxes"]):
        box.set_facecolor(colour)
        box.set_alpha(0.6)
    axes.set_yticks(range(1, len(labels) + 1))
    axes.set_yticklabels(labels)
    axes.set_xlabel("latency per call, ms (box: p25-p75, whiskers: p1-p99)")
    axes.grid(alpha=0.3, axis="x")


def _memory(axes: Any, rows: List[Dict[str, Any]], document: Dict[str, Any], latencies: Any) -> None:
    labels = [r["label"] for r in rows]
    held = [r["memory"]["host_held_mb"] + r["memory"]["device_held_mb"] for r in rows]
    added = [max(0.0, r["memory"]["rss_added_mb"]) for r in rows]
    positions = range(len(rows))
    axes.barh([p - 0.2 for p in positions], held, height=0.4, color=COLOURS[0],
              label="held by the backend (weights + buffers)")
    axes.barh([p + 0.2 for p in positions], added, height=0.4, color=COLOURS[1], label="process RSS added when opened")
    axes.set_yticks(list(positions))
    axes.set_yticklabels(labels)
    axes.set_xlabel("MB")
    axes.legend(frameon=False, fontsize=8)
    axes.grid(alpha=0.3, axis="x")


def _accuracy(axes: Any, rows: List[Dict[str, Any]], document: Dict[str, Any], latencies: Any) -> None:
    compared = [r for r in rows if r.get("accuracy") and not r["accuracy"].get("reference")]
    classes = sorted({c for r in compared for c in r["accuracy"]["mask_iou_per_class"]})
    groups = ["overall"] + classes + ["defect count"]
    width = 0.8 / max(1, len(compared))
    lowest = 0.8
    for index, (colour, row) in enumerate(zip(COLOURS[1:], compared)):
        acc = row["accuracy"]
        values = [acc["mask_iou"]] + [acc["mask_iou_per_class"].get(c, float("nan")) for c in classes] + [
            acc["defect_count_agreement"] or 0.0]
        lowest = min([lowest] + [v for v in values if v == v])  # v == v skips NaN
        axes.bar([g + index * width - 0.4 + width / 2 for g in range(len(groups))], values, width=width,
                 color=colour, label=row["label"])
    floor = document.get("gate_iou_floor")
    if floor is not None:
        axes.axhline(floor, color="#c44e52", linestyle="--", linewidth=1, label="gate floor {:.2f}".format(floor))
    axes.set_xticks(range(len(groups)))
    axes.set_xticklabels(groups, rotation=20)
    axes.set_ylabel("mask IoU / share of images")
    axes.set_ylim(max(0.0, lowest - 0.02), 1.005)
    axes.legend(frameon=False, fontsize=8, loc="lower left")
    axes.grid(alpha=0.3, axis="y")
