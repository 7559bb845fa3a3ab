"""Measure every precision of every backend on this machine, on the user's images, side by side.

Each variant (ONNX Runtime FP32 as the reference, standing for the original framework; ONNX
Runtime FP16/INT8; TensorRT FP16/INT8 where TensorRT exists) is prepared through the engine (cache
and accuracy gate, the build timed), opened as the daemon opens it, checked against FP32 on the
images, then timed. Timing is interleaved: for each batch size, several rounds in which every
variant runs in turn, so a shared or throttling machine slows all of them alike and the ratios
hold even when the absolute figures move. CPU and GPU utilisation come from the telemetry probe,
sampled around each variant's runs.
"""

import contextlib
import logging
import time
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import psutil

from edge_agent.agent import open_backend
from edge_agent.backends import available_backends
from edge_agent.config import AgentConfig
from edge_agent.engine import Progress, prepare
from edge_agent.errors import EdgeAgentError
from edge_agent.preprocess import Preprocessor
from edge_agent.report import accuracy
from edge_agent.telemetry.probe import SystemProbe

log = logging.getLogger(__name__)
MB = 2**20
WARMUP_CALLS = 3
# the probe reports CPU use only over intervals of MIN_CPU_INTERVAL_S (0.2 s) or more
MIN_ROUND_S = 0.25


class Variant(NamedTuple):
    backend: str
    precision: str

    @property
    def label(self) -> str:
        return "{} {}".format({"onnxruntime": "ONNX Runtime", "tensorrt": "TensorRT"}[self.backend],
                              self.precision.upper())


REFERENCE = Variant("onnxruntime", "fp32")
VARIANTS = [REFERENCE, Variant("onnxruntime", "fp16"), Variant("onnxruntime", "int8"),
            Variant("tensorrt", "fp16"), Variant("tensorrt", "int8")]


class Plan(NamedTuple):
    batches: List[int]
    seconds: float  # timed per variant and batch size, split over `rounds`
    rounds: int


def measure(config: AgentConfig, frames: List[np.ndarray], plan: Plan, progress: Progress) -> Dict[str, Any]:
    """Rows (one per variant, JSON-ready) plus the raw latencies the charts draw."""
    available = {name: (ok, reason) for name, ok, reason in available_backends()}
    rows: List[Dict[str, Any]] = []
    opened: Dict[Variant, Any] = {}
    probe = SystemProbe(1.0, config.model.path.parent, {})
    latencies: Dict[str, Dict[int, List[float]]] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(probe.close)
        reference_results: Optional[List[accuracy.ImageResult]] = None
        for number, variant in enumerate(VARIANTS):
            ok, reason = available.get(variant.backend, (False, "backend not registered"))
            row: Dict[str, Any] = {"backend": variant.backend, "precision": variant.precision,
                                   "label": variant.label, "status": "measured"}
            rows.append(row)
            if not ok:
                row.update(status="not available", reason="{} is not available on this machine ({})".format(
                    variant.label.split(" ")[0], reason))
                continue
            progress("preparing: {} (cache, calibration, accuracy gate)".format(variant.label),
                     number / len(VARIANTS) * 0.5)
            try:
                backend = _open(stack, _config_for(config, variant, plan), row, progress)
            except EdgeAgentError as exc:
                row.update(status="failed", reason=" ".join(str(exc).split()))
                log.warning("%s: %s", variant.label, row["reason"])
                continue
            opened[variant] = backend
            results = accuracy.evaluate(backend, config, frames)
            if variant == REFERENCE:
                reference_results = results
                row["accuracy"] = {"reference": True, "images": len(frames),
                                   "defects_found": sum(sum(r.counts.values()) for r in results)}
            elif reference_results is not None:
                row["accuracy"] = accuracy.agreement(config, reference_results, results)
        if opened:
            latencies = _time_interleaved(opened, rows, frames, config, plan, probe, progress)
    return {"rows": rows, "latencies_ms": latencies, "probe_providers": probe.providers,
            "probe_facts": probe.facts(), "peak_rss_mb": round(_peak_rss() / MB, 1)}


def _config_for(config: AgentConfig, variant: Variant, plan: Plan) -> AgentConfig:
    backend = {"type": variant.backend, "precision": variant.precision}
    if variant.backend == config.backend.type:  # keep the user's backend settings (threads, DLA ...)
        backend = dict(config.backend.model_dump(), **backend)
    data = config.model_dump()
    data["backend"] = backend
    data["pipeline"] = dict(data["pipeline"], max_batch=max(plan.batches))
    return AgentConfig.model_validate(data)


def _open(stack: contextlib.ExitStack, config: AgentConfig, row: Dict[str, Any], progress: Progress) -> Any:
    started = time.monotonic()
    report = prepare(config, progress).as_dict()
    row.update(prepare_s=round(time.monotonic() - started, 2), cache=report["cache"],
               precision_served=report["precision_served"], gate={k: v for k, v in report["gate"].items()
                                                                  if k != "settings"},
               fallbacks=report["fallbacks"], artifact_bytes=report["artifact_bytes"])
    if report["precision_served"] != row["precision"]:
        row["reason"] = "the accuracy gate rejected {} and {} serves: the row measures what would serve".format(
            row["precision"].upper(), report["precision_served"].upper())
    rss_before = psutil.Process().memory_info().rss
    backend = stack.enter_context(open_backend(config))
    held = backend.memory()
    row["memory"] = {"host_held_mb": round(held.host_bytes / MB, 1), "device_held_mb": round(held.device_bytes / MB, 1),
                     "rss_added_mb": round((psutil.Process().memory_info().rss - rss_before) / MB, 1)}
    return backend


def _time_interleaved(opened: Dict[Variant, Any], rows: List[Dict[str, Any]], frames: List[np.ndarray],
                      config: AgentConfig, plan: Plan, probe: SystemProbe,
                      progress: Progress) -> Dict[str, Dict[int, List[float]]]:
    by_label = {row["label"]: row for row in rows}
    preprocess = Preprocessor(config.model.input)
    samples: Dict[str, Dict[int, List[float]]] = {v.label: {b: [] for b in plan.batches} for v in opened}
    elapsed = {v.label: {b: 0.0 for b in plan.batches} for v in opened}
    utilisation: Dict[str, List[Dict[str, float]]] = {v.label: [] for v in opened}
    steps = len(plan.batches) * plan.rounds * len(opened)
    done = 0
    for batch in plan.batches:
        for backend in opened.values():
            _fill(backend, preprocess, frames, batch)
            for _ in range(WARMUP_CALLS):
                backend.infer(batch)
        order = list(opened.items())
        for number in range(plan.rounds):
            # each round starts with another variant, so none is always the one after a pause
            for variant, backend in order[number % len(order):] + order[:number % len(order)]:
                progress("timing: {} at batch {}".format(variant.label, batch), 0.5 + 0.5 * done / steps)
                probe.sample()  # starts the CPU utilisation interval
                seconds = _run_for(backend, batch, max(MIN_ROUND_S, plan.seconds / plan.rounds),
                                   samples[variant.label][batch])
                elapsed[variant.label][batch] += seconds
                utilisation[variant.label].append(probe.sample())
                done += 1
    for variant in opened:
        row = by_label[variant.label]
        row["batches"] = {}
        for batch in plan.batches:
            values = np.asarray(samples[variant.label][batch])
            row["batches"][str(batch)] = {
                "calls": int(values.size), "fps": round(values.size * batch / elapsed[variant.label][batch], 2),
                "latency_ms_p50": round(float(np.percentile(values, 50)), 3),
                "latency_ms_p95": round(float(np.percentile(values, 95)), 3),
                "latency_ms_p99": round(float(np.percentile(values, 99)), 3)}
        row["utilisation"] = _mean_utilisation(utilisation[variant.label])
    return samples


def _fill(backend: Any, preprocess: Preprocessor, frames: List[np.ndarray], batch: int) -> None:
    """Real images in every row of every ring slot, as the pipeline would feed them."""
    for _ in range(max(1, getattr(backend, "slots", 1))):
        for i in range(batch):
            preprocess(frames[i % len(frames)], backend.input_buffer[i])
        backend.infer(batch)


def _run_for(backend: Any, batch: int, seconds: float, latencies: List[float]) -> float:
    """Call infer(batch) for about `seconds` (at least once); append each call's ms; return the time."""
    started = time.perf_counter()
    calls = 0
    while calls < 1 or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        backend.infer(batch)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        calls += 1
    return time.perf_counter() - started


def _mean_utilisation(snapshots: List[Dict[str, float]]) -> Dict[str, float]:
    keys = ("cpu_util_pct", "process_cpu_pct", "gpu_util_pct", "gpu_mem_used_mb", "gpu_mem_process_mb",
            "gpu_mem_shared_mb", "process_rss_mb")
    result = {}
    for key in keys:
        values = [s[key] for s in snapshots if key in s]
        if values:
            result[key] = round(float(np.mean(values)), 1) if key != "process_rss_mb" else round(max(values), 1)
    return result


def _peak_rss() -> int:
    """The process's peak resident set (Linux: ru_maxrss in KiB), else the current RSS."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return psutil.Process().memory_info().rss

