"""`edge-agent bench --sources N`: many cameras at once: aggregate and per-source throughput,
latency percentiles, drops by reason, the batch-size histogram and CPU use, in one run.

Every source plays the same synthetic MJPG video at `--resolution`, looping, paced at `--fps`
(0: unpaced, as fast as the pipeline takes frames). Figures come from a result sink and the
metrics registry over a measured window after a warm-up, so they hold for any pipeline version
that has `running_pipeline` and a `frames_dropped` counter (scripts/bench_sources.py runs this
module against an older checkout for an interleaved baseline).
"""

import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import psutil

from edge_agent.agent import running_pipeline
from edge_agent.bench import write_synthetic_video
from edge_agent.config import AgentConfig
from edge_agent.metrics import Registry
from edge_agent.pipeline import InferenceResult, ResultSink
from edge_agent.sources.config import VideoSourceConfig

VIDEO_FRAMES = 30  # one second at 30 fps, looped: enough variety, quick to write at 1080p


class _Recorder(ResultSink):
    """Keeps (source, latency, batch size) of every result while `recording` is set."""

    def __init__(self) -> None:
        self.recording = False
        self.rows: List[Tuple[str, float, int]] = []

    def on_result(self, result: InferenceResult) -> None:
        if self.recording:
            self.rows.append((result.frame.source, result.latency_ms, result.batch_size))


def bench_video(folder: Path, width: int, height: int) -> Path:
    """The looping source video for one resolution, written once per folder."""
    path = folder / "parts-{}x{}.avi".format(width, height)
    if not path.exists():
        write_synthetic_video(path, VIDEO_FRAMES, width, height)
    return path


def source_config(config: AgentConfig, video: Path, sources: int, fps: float,
                  max_batch: Optional[int] = None) -> AgentConfig:
    """`config` with `sources` video sources; pipeline.max_batch defaults to min(sources, 8)."""
    cameras = [VideoSourceConfig(name="cam{}".format(i), path=video, loop=True, fps=fps) for i in range(sources)]
    pipeline = config.pipeline.model_copy(update={"max_batch": max_batch or min(sources, 8)})
    return config.model_copy(update={"sources": cameras, "pipeline": pipeline})


def measure(config: AgentConfig, seconds: float, warmup_s: float = 2.0) -> Dict[str, Any]:
    """Run the pipeline of `config` for warm-up + `seconds` and report the measured window."""
    registry = Registry()
    recorder = _Recorder()
    stop = threading.Event()
    names = [s.name for s in config.sources]
    process = psutil.Process()
    with running_pipeline(config, registry, [recorder]) as pipeline:
        pipeline.run(stop, duration_s=warmup_s)
        captured0 = _per_source(registry, "frames_captured", names)
        dropped0 = _drops(registry)
        cpu0, started = process.cpu_times(), time.monotonic()
        psutil.cpu_percent(None)
        recorder.recording = True
        pipeline.run(stop, duration_s=seconds)
        recorder.recording = False
        wall = time.monotonic() - started
        cpu1, machine_cpu = process.cpu_times(), psutil.cpu_percent(None)
        captured = _minus(_per_source(registry, "frames_captured", names), captured0)
        dropped = _minus(_drops(registry), dropped0)
    return _report(config, recorder.rows, names, wall, captured, dropped,
                   (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall * 100.0, machine_cpu)


def _report(config: AgentConfig, rows: List[Tuple[str, float, int]], names: List[str], wall: float,
            captured: Dict[str, int], dropped: Dict[str, int], process_cpu: float,
            machine_cpu: float) -> Dict[str, Any]:
    per_source: Dict[str, Dict[str, Any]] = {}
    for name in names:
        latencies = np.array([r[1] for r in rows if r[0] == name] or [0.0])
        frames = sum(1 for r in rows if r[0] == name)
        per_source[name] = {"fps": round(frames / wall, 2), "frames": frames, "captured": captured.get(name, 0),
                            "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
                            "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1)}
    latencies = np.array([r[1] for r in rows] or [0.0])
    sizes = Counter(r[2] for r in rows)  # frames per batch size; a batch of k gives k rows
    fps = [s["fps"] for s in per_source.values()]
    first = config.sources[0]
    resolution = Path(str(first.path)).stem.rpartition("-")[2]  # bench_video names it parts-WxH
    return {
        "sources": len(names),
        "resolution": resolution,
        "source_fps": first.fps,
        "max_batch": config.pipeline.max_batch,
        "max_wait_ms": config.pipeline.max_wait_ms,
        "backend": config.backend.type,
        "seconds": round(wall, 2),
        "fps": round(len(rows) / wall, 2),
        "fps_min_source": min(fps),
        "fps_max_source": max(fps),
        "fairness": round(min(fps) / max(fps), 3) if max(fps) else 0.0,
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1),
        "captured": sum(captured.values()),
        "dropped": sum(dropped.values()),
        "dropped_by_reason": dropped,
        "batch_sizes": {str(k): sizes[k] // k for k in sorted(sizes)},
        "cpu_process_percent": round(process_cpu, 1),
        "cpu_machine_percent": round(machine_cpu, 1),
        "cpu_cores": psutil.cpu_count(),
        "per_source": per_source,
    }


def _per_source(registry: Registry, metric: str, names: List[str]) -> Dict[str, int]:
    totals = dict.fromkeys(names, 0)
    for name, labels, value in registry.counters():
        source = dict(labels).get("source")
        if name == metric and source in totals:
            totals[source] += value
    return totals


def _drops(registry: Registry) -> Dict[str, int]:
    totals: Dict[str, int] = {}
    for name, labels, value in registry.counters():
        if name == "frames_dropped":
            reason = dict(labels).get("reason", "unknown")
            totals[reason] = totals.get(reason, 0) + value
    return totals


def _minus(after: Dict[str, int], before: Dict[str, int]) -> Dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def format_report(result: Dict[str, Any]) -> str:
    lines = [
        "{sources} source(s) {resolution} at {pace}, max_batch {max_batch}, {backend}, {seconds} s measured".format(
            pace="{:g} fps".format(result["source_fps"]) if result["source_fps"] else "full speed (unpaced)",
            **result),
        "aggregate    : {fps:8.1f} fps   per source min {fps_min_source:.1f} / max {fps_max_source:.1f} "
        "(fairness {fairness:.2f})".format(**result),
        "latency      : p50 {latency_ms_p50:.0f} ms  p95 {latency_ms_p95:.0f} ms  p99 {latency_ms_p99:.0f} ms "
        "(grab to result)".format(**result),
        "frames       : {captured} captured, {dropped} dropped ({reasons})".format(
            reasons=", ".join("{} {}".format(k, v) for k, v in sorted(result["dropped_by_reason"].items()) if v)
            or "none", **result),
        "batch sizes  : " + "  ".join("{}:{}".format(k, v) for k, v in result["batch_sizes"].items()),
        "CPU          : agent {cpu_process_percent:.0f} % of one core, machine {cpu_machine_percent:.0f} % of "
        "{cpu_cores} cores".format(**result),
        "per source   : " + "  ".join("{} {:.1f} fps p99 {:.0f} ms".format(n, s["fps"], s["latency_ms_p99"])
                                      for n, s in result["per_source"].items()),
    ]
    return "\n".join(lines)


def run_source_bench(config: AgentConfig, sources: int, resolution: Tuple[int, int], fps: float, seconds: float,
                     max_batch: Optional[int] = None, progress: Optional[Any] = None) -> Dict[str, Any]:
    """`edge-agent bench --sources N`: write the source video, run the pipeline, report."""
    say = progress or (lambda text: None)
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as folder:
        say("writing a {}x{} MJPG test video ({} frames)".format(resolution[0], resolution[1], VIDEO_FRAMES))
        video = bench_video(Path(folder), *resolution)
        say("measuring {} source(s) for {:g} s after a 2 s warm-up".format(sources, seconds))
        return measure(source_config(config, video, sources, fps, max_batch), seconds)
