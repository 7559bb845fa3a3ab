"""The preparation chain: ONNX -> checked ONNX -> precision variant -> (TensorRT plan) -> gate.

Precision is resolved before any cache key is computed; each attempt (INT8, then FP16, then FP32)
is looked up in the cache by fingerprint, else built in a child process, then gated. A gate
verdict is stored in the manifest, so a rejected INT8 model is not rebuilt at every start.
"""

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edge_agent.backends.base import PreparedModel
from edge_agent.config import AgentConfig
from edge_agent.engine import Progress
from edge_agent.engine import gate as gates
from edge_agent.engine.cache import CacheEntry, EngineCache, file_sha256, fingerprint
from edge_agent.engine.calibration import ImageSet, calibration_set, validation_set
from edge_agent.engine.isolation import run_isolated
from edge_agent.engine.onnx_variants import check_model
from edge_agent.engine.progress import ProgressLog
from edge_agent.engine.report import BuildReport
from edge_agent.errors import EngineError
from edge_agent.paths import cache_dir

log = logging.getLogger(__name__)
FALLBACK = {"int8": ["int8", "fp16", "fp32"], "fp16": ["fp16", "fp32"], "fp32": ["fp32"]}


class Preparation:
    def __init__(self, config: AgentConfig, progress: Optional[Progress] = None, force: bool = False) -> None:
        self.config = config
        self.progress = progress or ProgressLog()
        self.force = force
        self.source = config.model.path
        self.stem = self.source.stem
        self.cache = EngineCache(cache_dir(config), config.engine.cache.keep_last)
        self._calibration: Optional[ImageSet] = None
        self._validation: Optional[ImageSet] = None
        self._onnx_sha: Optional[str] = None
        self._trt: Any = None

    def run(self, requested: str) -> BuildReport:
        started = time.monotonic()
        check_model(self.source)
        backend = self.config.backend.type
        if backend == "onnxruntime" and requested == "fp32":
            prepared = PreparedModel(self.source, "fp32", self.source, None)
            return BuildReport(backend, requested, prepared, "none", time.monotonic() - started,
                               gates.skipped("fp32 is the reference", "fp32"), [])
        self.cache.ensure_writable()
        if backend == "tensorrt":
            from edge_agent.engine.trt_target import TensorRTTarget

            self._trt = TensorRTTarget(self)
        attempts: List[Dict[str, Any]] = []
        for precision in FALLBACK[requested]:
            prepared, cache_state, verdict, manifest = self._attempt(precision)
            attempts.append({"precision": precision, "cache": cache_state, "gate": verdict})
            if verdict.get("passed"):
                report = BuildReport(backend, requested, prepared, cache_state, time.monotonic() - started,
                                     verdict, attempts, manifest)
                self._prune(prepared.path)
                return report
            log.warning("precision %s rejected by the accuracy gate (%s); falling back to the next precision",
                        precision, verdict.get("reason"))
        raise EngineError("no precision passed the accuracy gate")  # unreachable: fp32 always passes

    # ---- one precision -------------------------------------------------------------------------
    def _attempt(self, precision: str) -> Tuple[PreparedModel, str, Dict[str, Any], Dict[str, Any]]:
        if self._trt is not None:
            return self._trt.attempt(precision)
        if precision == "fp32":
            prepared = PreparedModel(self.source, "fp32", self.source, None)
            return prepared, "none", gates.skipped("fp32 is the reference", "fp32"), {}
        entry, state = self.onnx_variant(precision)
        prepared = PreparedModel(entry.artifact, precision, self.source, entry.manifest["key"])
        verdict, entry = self.gated(entry, prepared)
        return prepared, state, verdict, entry.manifest

    def onnx_variant(self, precision: str) -> Tuple[CacheEntry, str]:
        """The cached FP16 / INT8 ONNX of the model (built in a child process on a miss)."""
        fields: Dict[str, Any] = {"artifact": "onnx-variant", "onnx_sha256": self.onnx_sha256(),
                                  "precision": precision}
        if precision == "int8":
            # the INT8 recipe follows the backend that serves it (TensorRT: signed symmetric Q/DQ;
            # ONNX Runtime: U8S8 in the format measured fastest here)
            recipe = self.config.backend.type
            fields.update(calibration=self.calibration_set().digest(), method=self.config.engine.calibration.method,
                          preprocessing=self.config.model.input.model_dump(mode="json"), recipe=recipe)
        key = fingerprint(fields)
        entry = None if self.force else self.cache.load(self.stem, precision, key, ".onnx")
        if entry is not None and entry.manifest.get("artifact_sha256"):
            return entry, "hit"
        target = "produce_int8" if precision == "int8" else "produce_fp16"
        kwargs: Dict[str, Any] = {"source": str(self.source)}
        if precision == "int8":
            kwargs.update(config=self.config.model_dump(mode="json"), recipe=recipe)
        details: Dict[str, Any] = {}

        def produce(temp: Path) -> None:
            details.update(run_isolated("edge_agent.engine.onnx_variants:" + target, dict(kwargs, target=str(temp)),
                                        "{} ONNX of {}".format(precision.upper(), self.source.name), self.progress))

        entry = self.cache.store(self.stem, precision, key, ".onnx", produce, {"fields": fields, "build": details,
                                                                              "source": str(self.source)})
        return entry, "built"

    def gated(self, entry: CacheEntry, prepared: PreparedModel) -> Tuple[Dict[str, Any], CacheEntry]:
        """The gate verdict for a cached candidate: stored, or computed now and stored."""
        gate = self.config.engine.gate
        if not gate.enabled:
            return gates.skipped("engine.gate.enabled is false", prepared.precision), entry
        validation = self.validation_set()
        settings = fingerprint({"validation": validation.digest(), "floor": gate.iou_floor,
                                "drift": gate.max_probability_drift,
                                "model": self.config.model.model_dump(mode="json")})
        stored = entry.manifest.get("gate")
        if not self.force and stored and stored.get("settings") == settings:
            return stored, entry
        total = validation.size
        self.progress("accuracy gate: {} vs FP32 on {} images".format(prepared.precision.upper(), total), 0.0)
        verdict = gates.run_gate(self.config, prepared, validation, lambda n: self.progress(
            "accuracy gate: {} vs FP32, image {}/{}".format(prepared.precision.upper(), n, total), n / total))
        verdict["settings"] = settings
        log.info("accuracy gate %s: IoU agreement %.4f (floor %.2f), max probability drift %.4f: %s",
                 prepared.precision, verdict["iou_agreement"], gate.iou_floor, verdict["max_probability_drift"],
                 "passed" if verdict["passed"] else "REJECTED")
        return verdict, self.cache.update_manifest(entry, gate=verdict)

    # ---- shared inputs -------------------------------------------------------------------------
    def onnx_sha256(self) -> str:
        if self._onnx_sha is None:
            self._onnx_sha = file_sha256(self.source)
        return self._onnx_sha

    def calibration_set(self) -> ImageSet:
        if self._calibration is None:
            self._calibration = calibration_set(self.config)
        return self._calibration

    def validation_set(self) -> ImageSet:
        if self._validation is None:
            self._validation = validation_set(self.config)
        return self._validation

    def _prune(self, serving: Path) -> None:
        try:
            self.cache.prune(self.stem, keep=[serving])
        except OSError as exc:  # pruning is housekeeping: a failure must not stop serving
            log.warning("could not prune the engine cache %s: %s", self.cache.root, exc)
