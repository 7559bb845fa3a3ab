"""`edge-agent report`: the FP32 vs FP16 vs INT8 comparison a customer signs off on.

measure (every precision of every backend here, on the user's images, interleaved) -> figures
(matplotlib charts, optional) -> render (report.html, report.json, report.md). The daemon never
imports this package; `edge_agent.report.command` is the CLI's entry.
"""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edge_agent.config import AgentConfig
from edge_agent.engine import Progress
from edge_agent.report import facts
from edge_agent.report.figures import Chart, charts
from edge_agent.report.measure import Plan, measure


def create_report(config: AgentConfig, frames: List[np.ndarray], images: str, plan: Plan, assumptions: List[str],
                  progress: Progress) -> Tuple[Dict[str, Any], List[Chart]]:
    """The report document (JSON-ready) and its charts."""
    machine = facts.machine()
    measured = measure(config, frames, plan, progress)
    document: Dict[str, Any] = {
        "title": "Model optimisation report: {}".format(config.model.path.name),
        "created": facts.now(), "machine": machine, "software": facts.software(),
        "model": facts.model(config.model.path), "images": "{} ({} images)".format(images, len(frames)),
        "batches": plan.batches, "seconds_per_measurement": plan.seconds, "rounds": plan.rounds,
        "gate_iou_floor": config.engine.gate.iou_floor, "assumptions": assumptions,
        "rows": measured["rows"], "peak_rss_mb": measured["peak_rss_mb"],
        "probe": {"providers": measured["probe_providers"], "facts": measured["probe_facts"]},
    }
    drawn, skipped = charts(document, measured["latencies_ms"])
    document["charts_skipped"] = skipped
    document["notes"] = _notes(document, machine, skipped)
    return document, drawn


def _notes(document: Dict[str, Any], machine: Dict[str, Any], skipped: Optional[str]) -> List[str]:
    notes = ["ONNX Runtime FP32 on the CPU is the reference, standing for the original framework; accuracy is "
             "agreement with it on the images above, not accuracy against ground truth.",
             "Timing is interleaved: for each batch size, {} rounds in which every variant runs in turn "
             "(about {:.1f} s each per batch size), so a busy machine slows all variants alike; the ratios "
             "are the robust figures.".format(document["rounds"], document["seconds_per_measurement"])]
    load, cores = machine.get("load_1m_at_start") or 0.0, machine.get("cpu_cores") or 1
    if load > 0.5 * cores:
        notes.append("The machine was busy when the report started (load average {:.1f} on {} cores): absolute "
                     "figures are lower than on an idle machine.".format(load, cores))
    missing = {}  # backend -> why, once per backend
    for row in document["rows"]:
        if row["status"] == "not available":
            missing.setdefault(row["label"].split(" ")[0], row.get("reason", ""))
        elif row["status"] != "measured" or row.get("reason"):
            notes.append("{}: {}".format(row["label"], row.get("reason", row["status"])))
    for backend, reason in missing.items():
        notes.append("{}: not measured. {}; its FP16 and INT8 rows appear where it is installed (on a "
                     "Jetson: JetPack's TensorRT).".format(backend, reason))
    gpu_memory = document["probe"]["facts"].get("gpu_memory")
    notes.append("GPU memory: {}.".format(gpu_memory) if gpu_memory else "GPU memory: not measurable here (no "
                 "NVIDIA GPU that NVML can read, not a Jetson); the device column is the backend's own accounting.")
    validation = sorted({r["gate"]["validation_set"] for r in document["rows"]
                         if r.get("gate", {}).get("validation_set")})
    for described in validation:
        notes.append("The accuracy gate validated on: {}.".format(described))
    if skipped:
        notes.append("Charts were skipped: {}.".format(skipped))
    return notes


__all__ = ["Plan", "create_report"]
