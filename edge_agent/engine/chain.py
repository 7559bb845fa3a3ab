"""The preparation chain: ONNX -> checked ONNX -> precision variant -> (TensorRT plan) -> gate.

Precision is resolved before any cache key is computed; each attempt (INT8, then FP16, then FP32)
is looked up in the cache by fingerprint, else built in a child process, then gated. A gate
verdict is stored in the manifest, so a rejected INT8 model is not rebuilt at every start.

A build that fails in its child (calibration, an unsupported INT8 layer, out of memory, a crash)
falls back exactly as a gate rejection does, and the failure is stored as a manifest without an
artefact under the attempt's fingerprint: a restart passes over that precision at once instead of
rebuilding for minutes and failing again; `force` (edge-agent build --force) retries it. The
served entry's manifest, the build report, the log and the MQTT birth say what was passed over.
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
from edge_agent.engine.isolation import BuildFailed, run_isolated
from edge_agent.engine.onnx_variants import check_model
from edge_agent.engine.ort_int8 import CPU_INT8_REVISION
from edge_agent.engine.progress import ProgressLog
from edge_agent.engine.report import BuildReport, fallbacks_of
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
            try:
                prepared, cache_state, verdict, manifest = self._attempt(precision)
            except BuildFailed as exc:
                if precision == "fp32":
                    tried = ", ".join(a["precision"].upper() for a in attempts)
                    raise BuildFailed("FP32 preparation failed{}: {}".format(
                        " after " + tried + " did" if tried else "", exc)) from None
                reason = str(exc) if getattr(exc, "remembered", False) else "build failed: {}".format(exc)
                attempts.append({"precision": precision, "cache": "failed",
                                 "gate": {"precision": precision, "passed": False, "reason": reason}})
                log.warning("%s preparation failed (%s); falling back to the next precision", precision.upper(),
                            reason)
                continue
            attempts.append({"precision": precision, "cache": cache_state, "gate": verdict})
            if verdict.get("passed"):
                speed = None
                if precision == "int8" and self._trt is not None and self._trt.int8_strongly_typed():
                    from edge_agent.engine.speed import faster_of_int8_and_fp16

                    (prepared, cache_state, verdict, manifest), speed = faster_of_int8_and_fp16(
                        self._trt, (prepared, cache_state, verdict, manifest))
                    if speed["served"] == "fp16":
                        attempts[-1]["passed_over"] = speed["why"]
                        attempts.append({"precision": "fp16", "cache": cache_state, "gate": verdict})
                fallbacks = fallbacks_of(attempts)
                if fallbacks:
                    log.warning("serving %s instead of %s: %s", precision.upper(), requested.upper(),
                                "; ".join("{} {}".format(f["precision"].upper(), f["reason"]) for f in fallbacks))
                    prepared = prepared._replace(fallbacks=tuple(fallbacks))
                    manifest = self._record_fallbacks(prepared, manifest, fallbacks)
                report = BuildReport(backend, requested, prepared, cache_state, time.monotonic() - started,
                                     verdict, attempts, manifest, speed)
                self._prune(prepared.path)
                return report
            log.warning("precision %s rejected by the accuracy gate (%s); falling back to the next precision",
                        precision, verdict.get("reason"))
        raise EngineError("no precision passed the accuracy gate")  # unreachable: fp32 always passes

    def _record_fallbacks(self, prepared: PreparedModel, manifest: Optional[Dict[str, Any]],
                          fallbacks: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        """The served entry's manifest says which precisions were passed over and why."""
        if not manifest or manifest.get("fallbacks") == fallbacks:
            return manifest
        return self.cache.update_manifest(CacheEntry(prepared.path, manifest), fallbacks=fallbacks).manifest

    def cached_or_built(self, precision: str, key: str, suffix: str, produce: Any, manifest: Dict[str, Any],
                        check: Any = None) -> Tuple[CacheEntry, str]:
        """(entry, "hit" | "built"); a failure remembered under `key` (or one that happens now and
        is then remembered) raises BuildFailed without building."""
        entry = None if self.force else self.cache.load(self.stem, precision, key, suffix, check)
        if entry is not None and entry.manifest.get("build_failure"):
            failure = entry.manifest["build_failure"]
            error = BuildFailed("build failed on {} and is remembered under this fingerprint (edge-agent build "
                                "--force tries again): {}".format(failure.get("at", "?"), failure.get("reason")))
            error.remembered = True
            raise error
        if entry is not None and entry.manifest.get("artifact_sha256"):
            return entry, "hit"
        try:
            return self.cache.store(self.stem, precision, key, suffix, produce, manifest), "built"
        except BuildFailed as exc:
            if exc.remember:
                self.cache.store(self.stem, precision, key, suffix, None, dict(
                    manifest, build_failure={"reason": str(exc), "at": time.strftime("%Y-%m-%d %H:%M:%S%z")}))
            raise

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
            if recipe == "onnxruntime":
                fields["recipe_revision"] = CPU_INT8_REVISION  # a better recipe rebuilds cached INT8
        key = fingerprint(fields)
        target = "produce_int8" if precision == "int8" else "produce_fp16"
        kwargs: Dict[str, Any] = {"source": str(self.source)}
        if precision == "int8":
            kwargs.update(config=self.config.model_dump(mode="json"), recipe=recipe)
        details: Dict[str, Any] = {}

        def produce(temp: Path) -> None:
            details.update(run_isolated("edge_agent.engine.onnx_variants:" + target, dict(kwargs, target=str(temp)),
                                        "{} ONNX of {}".format(precision.upper(), self.source.name), self.progress))

        return self.cached_or_built(precision, key, ".onnx", produce, {"fields": fields, "build": details,
                                                                      "source": str(self.source)})

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
