"""What a preparation did: the `edge-agent build --json` object and the telemetry birth record."""

from typing import Any, Dict, List, NamedTuple, Optional

from edge_agent.backends.base import PreparedModel


class BuildReport(NamedTuple):
    backend: str
    precision_requested: str
    prepared: PreparedModel
    cache: str  # "hit", "built", or "none" (FP32 on ONNX Runtime serves the ONNX file itself)
    seconds: float
    gate: Dict[str, Any]
    attempts: List[Dict[str, Any]]
    manifest: Optional[Dict[str, Any]] = None
    speed: Optional[Dict[str, Any]] = None  # INT8 against FP16 where measured (engine/speed.py)

    def as_dict(self) -> Dict[str, Any]:
        manifest = self.manifest or {}
        path = self.prepared.path
        return {
            "backend": self.backend,
            "precision_requested": self.precision_requested,
            "precision_served": self.prepared.precision,
            "cache": self.cache,
            "seconds": round(self.seconds, 3),
            "artifact": str(path),
            "artifact_bytes": path.stat().st_size if path.exists() else None,
            "fingerprint": self.prepared.fingerprint,
            "source": str(self.prepared.source),
            "engine_memory_bytes": manifest.get("build", {}).get("device_memory_bytes"),
            "build_peak_rss_bytes": manifest.get("build", {}).get("peak_rss_bytes"),
            "tensorrt_version": manifest.get("fields", {}).get("tensorrt_version"),
            "gate": {k: v for k, v in self.gate.items() if k != "settings"},
            "fallbacks": fallbacks_of(self.attempts),
            "speed": {k: v for k, v in self.speed.items() if k != "fp16_fingerprint"} if self.speed else None,
        }

    def text(self) -> str:
        data = self.as_dict()
        lines = ["{backend}: {precision_served} served ({precision_requested} requested), cache {cache}, "
                 "{seconds:.1f} s".format(**data),
                 "artifact: {} ({})".format(data["artifact"], _size(data["artifact_bytes"]))]
        if data["engine_memory_bytes"] is not None:
            lines.append("engine device memory: {}".format(_size(data["engine_memory_bytes"])))
        if data["build_peak_rss_bytes"] is not None:
            lines.append("build peak memory (host RSS of the build process): {}".format(
                _size(data["build_peak_rss_bytes"])))
        if data["speed"]:
            lines.append("precision by measurement: {}".format(data["speed"]["why"]))
        for fallback in data["fallbacks"]:
            lines.append("passed over {}: {}".format(fallback["precision"], fallback["reason"]))
        gate = data["gate"]
        if gate.get("iou_agreement") is None:
            lines.append("gate: not run ({})".format(gate.get("reason")))
        else:
            lines.append("gate: IoU agreement {:.4f} (floor {:.2f}), max probability drift {:.4f} on {} images: {}"
                         .format(gate["iou_agreement"], gate["iou_floor"], gate["max_probability_drift"],
                                 gate["images"], "passed" if gate["passed"] else "REJECTED"))
        return "\n".join(lines)


def fallbacks_of(attempts: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """[{precision, reason}] for each precision passed over: its build failed, the accuracy gate rejected
    it, or a faster one that passed the gate serves instead."""
    return [{"precision": a["precision"], "reason": a.get("passed_over") or a["gate"].get("reason")}
            for a in attempts if a.get("passed_over") or not a["gate"].get("passed")]


def _size(value: Optional[int]) -> str:
    return "?" if value is None else "{:.1f} MB".format(value / 2**20)
