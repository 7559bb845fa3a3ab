"""The many-sources scaling table of `edge-agent report --sources 1,2,4,8,10,16`.

The report's model serves N looping MJPG video sources at the camera's pace (edge_agent.bench_sources,
the same measurement as `edge-agent bench --sources N`), after one unpaced source that is the
baseline: each row's ratio is its aggregate fps over the single unpaced source's.
"""

import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

from edge_agent.bench_sources import bench_video, measure, source_config
from edge_agent.config import AgentConfig
from edge_agent.engine import Progress

HEAD = ["sources", "aggregate fps", "vs 1 unpaced", "slowest / fastest source fps", "p50 ms", "p99 ms",
        "dropped (shed)", "batch sizes", "agent CPU %"]


def measure_scaling(config: AgentConfig, counts: List[int], resolution: Tuple[int, int], fps: float,
                    seconds: float, progress: Progress) -> Dict[str, Any]:
    runs = [("1, unpaced", 1, 0.0)] + [(str(n), n, fps) for n in counts]
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edge-agent-scaling-") as folder:
        progress("many sources: writing a {}x{} MJPG test video".format(*resolution), 0.0)
        video = bench_video(Path(folder), *resolution)
        for index, (label, sources, pace) in enumerate(runs):
            progress("many sources: {} source(s) for {:g} s".format(label, seconds), index / len(runs))
            result = measure(source_config(config, video, sources, pace), seconds)
            rows.append(_row(label, result, rows[0]["fps"] if rows else result["fps"]))
    progress("many sources: done", 1.0)
    return {"resolution": "{}x{}".format(*resolution), "source_fps": fps, "seconds": seconds,
            "max_batch": "min(N, 8)", "rows": rows}


def _row(label: str, result: Dict[str, Any], single_fps: float) -> Dict[str, Any]:
    keys = ("fps", "fps_min_source", "fps_max_source", "fairness", "latency_ms_p50", "latency_ms_p95",
            "latency_ms_p99", "captured", "dropped", "dropped_by_reason", "batch_sizes", "cpu_process_percent")
    row = {"sources": label, "ratio": round(result["fps"] / single_fps, 3) if single_fps else None}
    row.update({key: result[key] for key in keys})
    return row


def cells(scaling: Dict[str, Any]) -> List[List[str]]:
    return [[r["sources"], "{:.1f}".format(r["fps"]), "–" if r["ratio"] is None else "{:.2f}".format(r["ratio"]),
             "{:.1f} / {:.1f} ({:.2f})".format(r["fps_min_source"], r["fps_max_source"], r["fairness"]),
             "{:.0f}".format(r["latency_ms_p50"]), "{:.0f}".format(r["latency_ms_p99"]),
             "{} ({})".format(r["dropped"], r["dropped_by_reason"].get("shed", 0)),
             " ".join("{}:{}".format(k, v) for k, v in r["batch_sizes"].items()),
             "{:.0f}".format(r["cpu_process_percent"])] for r in scaling["rows"]]


def title(scaling: Dict[str, Any]) -> str:
    return "Many sources: {} MJPG at {:g} fps each, max batch {}, {:g} s per row".format(
        scaling["resolution"], scaling["source_fps"], scaling["max_batch"], scaling["seconds"])
