"""`edge-agent selftest`: the acceptance test a technician runs on a board after installing.

For each precision it prepares the model (TensorRT FP16 and INT8 engines built on this board
through the engine cache; ONNX Runtime variants where TensorRT or a GPU is missing), runs the
configured images (folder sources, else the gate's validation images, else synthetic parts) and
compares the defect masks and class probabilities with ONNX Runtime FP32,
then measures throughput, latency, memory and allocations after warm-up. Every row says pass,
fail or skip with the reason; the JSON report holds the same. Exit 1 when a check that ran failed
(or, with --require-gpu, when a TensorRT check could not run).
"""

import itertools
import json
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import psutil

from edge_agent import __version__
from edge_agent.agent import open_backend
from edge_agent.backends import available_backends
from edge_agent.config import AgentConfig
from edge_agent.config_loader import load_config
from edge_agent.engine.calibration import ImageSet, list_images, validation_set
from edge_agent.errors import EdgeAgentError
from edge_agent.preprocess import Preprocessor
from edge_agent.sources.config import FolderSourceConfig
from edge_agent.synthetic import SyntheticGenerator

GOLDEN_SEED = 4242
WARMUP_CALLS = 5
PASS, FAIL, SKIP = "pass", "fail", "skip"


class Variant(NamedTuple):
    backend: str
    precision: str


# TensorRT rows first: they are what the board is for; ONNX Runtime variants cover boards without it.
VARIANTS = [Variant("tensorrt", "fp16"), Variant("tensorrt", "int8"),
            Variant("onnxruntime", "fp16"), Variant("onnxruntime", "int8")]


def run_selftest(config_path: Optional[str], frames: int, iterations: int, iou_floor: float,
                 require_gpu: bool = False) -> Dict[str, Any]:
    reference_config = _config(config_path, "onnxruntime", "fp32")
    golden, described = golden_frames(reference_config, frames)
    rows: List[Dict[str, Any]] = []
    reference_row, reference = _measure(reference_config, golden, iterations, None, iou_floor)
    rows.append(reference_row)
    if reference is None:
        return _report(rows, require_gpu, described)
    available = {name: (ok, reason) for name, ok, reason in available_backends()}
    for variant in VARIANTS:
        ok, reason = available.get(variant.backend, (False, "backend not registered"))
        if not ok:
            rows.append(_skipped(variant, reason))
            continue
        try:
            config = _config(config_path, variant.backend, variant.precision)
        except EdgeAgentError as exc:
            rows.append(_skipped(variant, "configuration not accepted here: {}".format(_one_line(exc))))
            continue
        row, _ = _measure(config, golden, iterations, reference, iou_floor)
        rows.append(row)
    return _report(rows, require_gpu, described)


def golden_frames(config: AgentConfig, count: int) -> Tuple[List[np.ndarray], str]:
    """Up to `count` frames to compare precisions on, and where they come from: the images of the
    configured folder sources, else the gate's validation images (engine.gate.validation_folder or
    the calibration folder's held-out images), else synthetic parts."""
    for source in config.sources:
        if isinstance(source, FolderSourceConfig):
            files = list_images(source.path, "sources[{}] ({})".format(source.name, source.type))
            images = ImageSet("folder source {} ({})".format(source.name, source.path), files=tuple(files[:count]))
            return list(images.frames()), images.description
    if config.engine.gate.validation_folder is not None or config.engine.calibration.folder is not None:
        images = validation_set(config)
        return list(itertools.islice(images.frames(), count)), images.description
    generator = SyntheticGenerator(seed=GOLDEN_SEED)
    return [generator.sample(i).image for i in range(count)], "synthetic parts (seed {})".format(GOLDEN_SEED)


def _config(path: Optional[str], backend: str, precision: str) -> AgentConfig:
    return load_config(path, {"backend": {"type": backend, "precision": precision}})


def _skipped(variant: Variant, reason: str) -> Dict[str, Any]:
    return {"backend": variant.backend, "precision": variant.precision, "status": SKIP, "reason": reason}


def _measure(config: AgentConfig, golden: List[np.ndarray], iterations: int,
             reference: Optional[List[np.ndarray]], iou_floor: float) -> Any:
    """(row, outputs on the golden frames) for one backend + precision; outputs None when skipped."""
    variant = Variant(config.backend.type, config.backend.precision)
    rss_before = psutil.Process().memory_info().rss
    try:
        with open_backend(config) as backend, backend.bind_thread():  # CUDA context per thread
            outputs = _golden_outputs(backend, config, golden)
            fps, latencies = _speed(backend, iterations)
            usage = backend.memory()
            planned = backend.budget.report.total_bytes if backend.budget and backend.budget.report else 0
            after_seal = backend.pool.stats.after_seal if backend.pool is not None else None
            rss_after = psutil.Process().memory_info().rss
            precision = backend.model.precision
    except EdgeAgentError as exc:  # TensorRT/GPU missing, variant not built yet, over budget ...
        return _skipped(variant, _one_line(exc)), None
    row: Dict[str, Any] = {
        "backend": variant.backend, "precision": precision, "status": PASS, "reason": "",
        "fps": round(fps, 2), "latency_ms_p50": round(float(np.percentile(latencies, 50)), 3),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 3), "batch": config.pipeline.max_batch,
        "memory_planned_mb": round(planned / 2**20, 1), "memory_held_mb": round(usage.total_mb, 1),
        "rss_growth_mb": round((rss_after - rss_before) / 2**20, 1), "allocations_after_warmup": after_seal,
    }
    if precision != variant.precision:
        row["reason"] = "served {} instead of {} (the accuracy gate fell back)".format(precision, variant.precision)
    if after_seal:
        row["status"] = FAIL
        row["reason"] = "{} buffers allocated after warm-up".format(after_seal)
    if reference is not None:
        iou, drift = _agreement(config, reference, outputs)
        row.update(mask_iou_vs_fp32=round(iou, 4), max_probability_drift=round(drift, 4))
        if iou < iou_floor:
            row["status"] = FAIL
            row["reason"] = "defect masks agree with FP32 at IoU {:.3f}, below {:.3f}".format(iou, iou_floor)
    return row, outputs


def _golden_outputs(backend: Any, config: AgentConfig, golden: List[np.ndarray]) -> List[np.ndarray]:
    preprocess = Preprocessor(config.model.input)
    outputs = []
    for image in golden:
        preprocess(image, backend.input_buffer[0])
        outputs.append(np.array(backend.infer(1)[0], dtype=np.float32))
    return outputs


def _speed(backend: Any, iterations: int) -> Any:
    batch = backend.max_batch
    backend.input_buffer[:batch] = backend.input_buffer[0]  # a real frame, not zeros
    for _ in range(WARMUP_CALLS):
        backend.infer(batch)
    latencies = np.zeros(iterations)
    started = time.perf_counter()
    for i in range(iterations):
        t0 = time.perf_counter()
        backend.infer(batch)
        latencies[i] = (time.perf_counter() - t0) * 1000.0
    return iterations * batch / (time.perf_counter() - started), latencies


def _probabilities(config: AgentConfig, logits: np.ndarray) -> np.ndarray:
    output = config.model.output
    channels = logits if output.layout == "NCHW" else np.moveaxis(logits, -1, 0)
    if output.activation == "softmax":
        shifted = np.exp(channels - channels.max(axis=0, keepdims=True))
        return shifted / shifted.sum(axis=0, keepdims=True)
    if output.activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-channels))
    return channels


def _defect_mask(config: AgentConfig, probabilities: np.ndarray) -> np.ndarray:
    output = config.model.output
    if probabilities.shape[0] == 1:
        return probabilities[0] >= config.model.thresholds.score
    classes = probabilities.argmax(axis=0)
    if output.background is None:
        return np.ones(classes.shape, dtype=bool)
    return classes != output.classes.index(output.background)


def _agreement(config: AgentConfig, reference: List[np.ndarray], outputs: List[np.ndarray]) -> Any:
    """Dataset-level IoU of the defect masks, and the largest class-probability difference."""
    intersection = union = 0
    drift = 0.0
    for ref, out in zip(reference, outputs):
        p_ref, p_out = _probabilities(config, ref), _probabilities(config, out)
        m_ref, m_out = _defect_mask(config, p_ref), _defect_mask(config, p_out)
        intersection += int((m_ref & m_out).sum())
        union += int((m_ref | m_out).sum())
        drift = max(drift, float(np.abs(p_ref - p_out).max()))
    return (1.0 if union == 0 else intersection / union), drift


def _report(rows: List[Dict[str, Any]], require_gpu: bool, golden: str) -> Dict[str, Any]:
    failed = [r for r in rows if r["status"] == FAIL]
    not_run = [r for r in rows if r["status"] == SKIP]
    gpu_missing = require_gpu and any(r["backend"] == "tensorrt" for r in not_run)
    return {"version": __version__, "ok": not failed and not gpu_missing and rows[0]["status"] == PASS,
            "reference": "onnxruntime fp32", "images": golden, "rows": rows,
            "not_run": ["{} {}: {}".format(r["backend"], r["precision"], r["reason"]) for r in not_run]}


def format_table(report: Dict[str, Any]) -> str:
    head = "{:<12} {:<5} {:<5} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7}".format(
        "backend", "prec", "check", "fps", "p50 ms", "p99 ms", "plan MB", "mask IoU", "drift", "allocs")
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        if r["status"] == SKIP:
            lines.append("{:<12} {:<5} {:<5} not run: {}".format(r["backend"], r["precision"], "SKIP", r["reason"]))
            continue
        lines.append("{:<12} {:<5} {:<5} {:>8.1f} {:>8.2f} {:>8.2f} {:>8.1f} {:>9} {:>8} {:>7}".format(
            r["backend"], r["precision"], r["status"].upper(), r["fps"], r["latency_ms_p50"], r["latency_ms_p99"],
            r["memory_planned_mb"], _fmt(r.get("mask_iou_vs_fp32")), _fmt(r.get("max_probability_drift")),
            _fmt(r["allocations_after_warmup"])))
        if r["reason"]:
            lines.append("{:<24}{}".format("", r["reason"]))
    lines.append("")
    lines.append("compared on: {}".format(report["images"]))
    lines.append("RESULT: {}".format("PASS" if report["ok"] else "FAIL"))
    for entry in report["not_run"]:
        lines.append("could not run: " + entry)
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "ref" if value is None else str(value)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return (text if len(text) <= 240 else text[:237] + "...") or type(exc).__name__


def write_report(report: Dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
