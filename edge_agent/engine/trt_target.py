"""TensorRT side of the preparation chain: the engine's fingerprint, cached build, gate.

Precision mechanics are chosen by capability: where TensorRT has `BuilderFlag.FP16` the FP32 ONNX
is built with the flag; where it has not (TensorRT 11, strongly typed only), the FP16 ONNX
variant is built. INT8 always starts from the Q/DQ ONNX variant (plus the INT8 flag where it
exists), or from the FP32 ONNX with a site's calibration table on TensorRT < 11.
"""

import hashlib
import logging
import platform
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import onnx

from edge_agent.backends.base import PreparedModel
from edge_agent.engine import gate as gates
from edge_agent.engine.cache import fingerprint
from edge_agent.engine.isolation import run_isolated
from edge_agent.engine.trt_builder import probe
from edge_agent.errors import ConfigError, EngineError
from edge_agent.tiling import typical_batch

if TYPE_CHECKING:
    from edge_agent.engine.chain import Preparation

log = logging.getLogger(__name__)
TENSORRT_MODULE = "tensorrt"  # tests point this at a fake generated from the real surface


def gpu_identity() -> str:
    """The board or GPU name (and compute capability where nvidia-smi tells it): part of the key."""
    model = Path("/proc/device-tree/model")
    if model.exists():
        return model.read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "unknown-gpu-" + platform.machine()


class TensorRTTarget:
    def __init__(self, preparation: "Preparation") -> None:
        self.prep = preparation
        self.config = preparation.config
        self.backend = self.config.backend
        self.caps = probe(TENSORRT_MODULE)
        self.gpu = gpu_identity()
        self.profile = self._profile()

    def _profile(self) -> Dict[str, List[List[int]]]:
        """{input name: [min, opt, max]} in the model's layout, checked against the model's shape."""
        spec = self.config.model.input
        p = self.backend.profile
        # TensorRT tunes its kernels for opt: the batch the adaptive batcher runs most under load
        max_batch = self.config.pipeline.max_batch
        batch = [p.batch[0] or 1, p.batch[1] or typical_batch(self.config), p.batch[2] or max_batch]
        height = [h or spec.height for h in p.height]
        width = [w or spec.width for w in p.width]
        if self.on_dla():
            batch = self._static_for_dla(p, batch, height, width)
        for label, values in (("batch", batch), ("height", height), ("width", width)):
            if not values[0] <= values[1] <= values[2]:
                raise ConfigError("backend.profile.{}: min <= opt <= max is needed, got {}".format(label, values))
        if not batch[0] <= self.config.pipeline.max_batch <= batch[2]:
            raise ConfigError("backend.profile.batch {} excludes pipeline.max_batch {}; widen the profile".format(
                batch, self.config.pipeline.max_batch))
        if not (height[0] <= spec.height <= height[2] and width[0] <= spec.width <= width[2]):
            raise ConfigError("backend.profile height {} / width {} exclude the model input {}x{} (model.input); "
                              "widen the profile".format(height, width, spec.height, spec.width))
        model = onnx.load(str(self.prep.source), load_external_data=False)
        graph_input = next((i for i in model.graph.input if i.name == (spec.name or model.graph.input[0].name)), None)
        if graph_input is None:
            raise ConfigError("model.input.name {!r} is not an input of {}".format(spec.name, self.prep.source.name))
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in graph_input.type.tensor_type.shape.dim]
        channels = [spec.channels] * 3
        shapes = [[b, c, h, w] for b, c, h, w in zip(batch, channels, height, width)] if spec.layout == "NCHW" \
            else [[b, h, w, c] for b, c, h, w in zip(batch, channels, height, width)]
        for axis, fixed in enumerate(dims):
            if fixed and any(shape[axis] != fixed for shape in shapes):
                raise ConfigError("backend.profile {} excludes the model's fixed input shape {} ({} axis {}); "
                                  "set the profile to the model's shape".format(shapes, dims, graph_input.name, axis))
        self._node_names = [n.name or n.output[0] for n in model.graph.node]
        self._node_ops = [n.op_type for n in model.graph.node]
        return {graph_input.name: shapes}

    def on_dla(self) -> bool:
        """backend.dla_core is set and this device has that core (else the builder warns and uses the GPU)."""
        core = self.backend.dla_core
        return core is not None and self.caps["dla_cores"] > core

    def _static_for_dla(self, p: Any, batch: List[int], height: List[int], width: List[int]) -> List[int]:
        """DLA has no dynamic shapes: the profile must be min = opt = max. The default batch profile
        becomes pipeline.max_batch fixed (the runtime pads smaller batches); a dynamic profile that
        was configured on purpose is an error that says what to write instead."""
        n = self.config.pipeline.max_batch
        if tuple(p.batch) == tuple(type(p)().batch):  # the default profile, not one set on purpose
            batch = [n, n, n]
        dynamic = [label for label, values in (("batch", batch), ("height", height), ("width", width))
                   if len(set(values)) > 1]
        if dynamic:
            raise ConfigError(
                "backend.dla_core {} needs a static shape profile: DLA runs no dynamic shapes (min = opt = max), but "
                "backend.profile has a range for {}. Set backend.profile.batch to [{n}, {n}, {n}] "
                "(pipeline.max_batch) and height/width to [0, 0, 0] (the model's size), or remove "
                "backend.dla_core to run on the GPU.".format(self.backend.dla_core, " and ".join(dynamic), n=n))
        return batch

    def int8_strongly_typed(self) -> bool:
        """INT8 from a strongly typed Q/DQ network (TensorRT 11): not sure to beat FP16, so it is timed."""
        return self.backend.calibration_cache is None and not self.caps["int8_flag"]

    def workspace_bytes(self) -> int:
        return builder_workspace_bytes(self.config)

    def _mechanics(self, precision: str) -> Tuple[str, bool]:
        """(which ONNX to build from: fp32 | fp16 | int8, strongly typed network?)."""
        if precision == "fp32":
            return "fp32", False
        if precision == "fp16":
            return ("fp32", False) if self.caps["precision_flags"] else ("fp16", True)
        if self.backend.calibration_cache is not None:
            if not self.caps["implicit_calibrator"]:
                raise EngineError("backend.calibration_cache needs the implicit INT8 calibrator, which TensorRT {} "
                                  "does not have (removed in 11). Remove it: INT8 then comes from the Q/DQ "
                                  "ONNX.".format(self.caps["version"]))
            return "fp32", False
        return "int8", not self.caps["int8_flag"]

    def attempt(self, precision: str) -> Tuple[PreparedModel, str, Dict[str, Any], Dict[str, Any]]:
        onnx_kind, strongly_typed = self._mechanics(precision)
        # DLA runs FP16 and INT8 only: an FP32 network "on DLA" runs layer by layer on the GPU while
        # the manifest would claim a DLA core. FP32 is built for the GPU.
        dla_core = self.backend.dla_core if precision != "fp32" else None
        if precision == "fp32" and self.backend.dla_core is not None:
            log.info("FP32 is built for the GPU: DLA (backend.dla_core %d) runs FP16 and INT8 only",
                     self.backend.dla_core)
        onnx_path, onnx_key = self.prep.source, self.prep.onnx_sha256()
        if onnx_kind != "fp32":
            variant, _ = self.prep.onnx_variant(onnx_kind)
            onnx_path, onnx_key = variant.artifact, variant.manifest["key"]
        table = self.backend.calibration_cache if onnx_kind == "fp32" and precision == "int8" else None
        fields = {"artifact": "tensorrt-plan", "onnx": onnx_key, "precision": precision,
                  "tensorrt_version": self.caps["version"], "gpu": self.gpu, "dla_core": dla_core,
                  "dla_cores": self.caps["dla_cores"], "profile": self.profile, "strongly_typed": strongly_typed,
                  "workspace_bytes": self.workspace_bytes(), "optimization_level": self.backend.optimization_level,
                  "calibration_table": _digest(table)}
        key = fingerprint(fields)
        timing = self.prep.cache.root / timing_cache_name(self.caps["version"], self.gpu) \
            if self.backend.timing_cache else None
        details: Dict[str, Any] = {}

        def produce(temp: Path) -> None:
            details.update(run_isolated("edge_agent.engine.trt_builder:build_plan", dict(
                module=TENSORRT_MODULE, onnx_path=str(onnx_path), output=str(temp), precision=precision,
                strongly_typed=strongly_typed, workspace_bytes=self.workspace_bytes(),
                optimization_level=self.backend.optimization_level, profile=self.profile,
                dla_core=dla_core, timing_cache=str(timing) if timing else None,
                calibration_table=str(table) if table else None, node_names=self._node_names,
                node_ops=self._node_ops), "TensorRT {} build".format(precision.upper()), self.prep.progress))

        entry, state = self.prep.cached_or_built(precision, key, ".plan", produce, {
            "fields": fields, "build": details, "source": str(self.prep.source)}, self._check)
        prepared = PreparedModel(entry.artifact, precision, self.prep.source, key)
        if precision == "fp32":
            return prepared, state, gates.skipped("fp32 is the reference", "fp32"), entry.manifest
        verdict, entry = self.prep.gated(entry, prepared)
        return prepared, state, verdict, entry.manifest

    def _check(self, artifact: Path, manifest: Dict[str, Any]) -> Optional[str]:
        built_by = manifest.get("fields", {}).get("tensorrt_version")
        if built_by != self.caps["version"]:
            return "it was built by TensorRT {} and this is TensorRT {}".format(built_by, self.caps["version"])
        return None


def timing_cache_name(version: str, gpu: str) -> str:
    """One timing cache per TensorRT version and GPU: timings from another GPU would pick wrong tactics."""
    readable = re.sub(r"[^A-Za-z0-9.]+", "-", gpu).strip("-")[:40]
    return "timing-{}-{}-{}.cache".format(version, readable, hashlib.sha256(gpu.encode()).hexdigest()[:8])


def _digest(path: Optional[Path]) -> Optional[str]:
    if path is None:
        return None
    try:
        from edge_agent.engine.cache import file_sha256

        return file_sha256(path)
    except OSError as exc:
        raise EngineError("backend.calibration_cache {} cannot be read: {}".format(path, exc.strerror)) from None


def builder_workspace_bytes(config: Any) -> int:
    """The TensorRT builder's workspace: backend.workspace_mb, else half of memory.limit_mb."""
    mb = config.backend.workspace_mb or max(16, config.memory.limit_mb // 2)
    return mb * 2**20
