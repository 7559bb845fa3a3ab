"""Build and gate a candidate model: runs in the build child (`run_isolated`), at low priority.

1. `prepare` the new model exactly as `edge-agent build` would (precision variant or TensorRT
   engine, cached by fingerprint, gated against the new model's own FP32 reference, with its
   fallbacks);
2. run the candidate on recent line frames: every output must be finite and, after the output
   activation, a probability in [0, 1] (the sanity check);
3. run the serving model's FP32 ONNX on the same frames and report how far the two agree, per
   defect class, as mask IoU (the agreement gate, when configured).

Everything here runs in the child: a crash or an out-of-memory kill of a bad model ends only the
child, and the serving pipeline never shares its CPU time beyond the child's niceness.
"""

import os
import sys
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edge_agent.backends import create_backend
from edge_agent.backends.base import PreparedModel
from edge_agent.backends.onnxruntime import OnnxRuntimeConfig
from edge_agent.config import AgentConfig
from edge_agent.engine import prepare
from edge_agent.engine.gate import class_mask, probabilities
from edge_agent.modelcheck import verify
from edge_agent.preprocess import Preprocessor


def build_and_gate(report: Callable[[str, Optional[float]], None], config: Dict[str, Any],
                   serving: Optional[Dict[str, Any]], frames: Optional[str], nice: int, threads: int,
                   agreement_floor: Optional[float]) -> Dict[str, Any]:
    """The child's entry: a JSON-ready dict {build, sanity, agreement, passed, reason}."""
    if nice:
        os.nice(nice)
    candidate = _with_threads(AgentConfig.model_validate(config), threads)
    verify(candidate.model)  # the model against the config (and its patch) before anything is built
    built = prepare(candidate, report)
    result: Dict[str, Any] = {"build": built.as_dict()}
    images = _load_frames(frames)
    report("gating: the candidate on {} recent frames".format(len(images)), 0.0)
    candidate_masks, sanity = _masks(candidate, built.prepared, images, check=True)
    result["sanity"] = sanity
    reasons: List[str] = []
    if not built.gate.get("passed", False):
        reasons.append("accuracy gate against the FP32 reference: {}".format(built.gate.get("reason")))
    if not sanity["passed"]:
        reasons.append(sanity["reason"])
    agreement: Optional[Dict[str, Any]] = None
    if serving is not None and images and sanity["passed"]:
        report("gating: the serving model on the same frames", 0.5)
        old = _with_threads(AgentConfig.model_validate(serving), threads)
        reference = PreparedModel(old.model.path, "fp32", old.model.path)
        old_masks, _ = _masks(_fp32(old), reference, images, check=False)
        agreement = _agreement(candidate, old, candidate_masks, old_masks, agreement_floor)
        if not agreement["passed"]:
            reasons.append(agreement["reason"])
    result["agreement"] = agreement
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["passed"] = not reasons
    result["reason"] = "; ".join(reasons) if reasons else "passed"
    report("gating: done", 1.0)
    return result


def peak_rss_bytes() -> Optional[int]:
    """The larger of this process's and its finished children's (a TensorRT build) peak RSS."""
    try:
        import resource
    except ImportError:  # not on Linux
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) * scale


def _with_threads(config: AgentConfig, threads: int) -> AgentConfig:
    if config.backend.type != "onnxruntime":
        return config
    return config.model_copy(update={"backend": config.backend.model_copy(update={"threads": threads})})


def _fp32(config: AgentConfig) -> AgentConfig:
    threads = getattr(config.backend, "threads", 1)
    return config.model_copy(update={"backend": OnnxRuntimeConfig(precision="fp32", threads=threads)})


def _load_frames(path: Optional[str]) -> List[np.ndarray]:
    if not path:
        return []
    with np.load(path) as data:
        return [data[key] for key in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


def _masks(config: AgentConfig, model: PreparedModel, images: List[np.ndarray], check: bool):
    """Per-image class masks (-1: no defect) and, with `check`, the sanity verdict of the outputs."""
    masks = []
    worst = {"non_finite_values": 0, "min_probability": 1.0, "max_probability": 0.0}
    preprocess = Preprocessor(config.model.input)
    with create_backend(model, config) as backend, backend.bind_thread():
        if images:
            for image in images:
                preprocess(image, backend.input_buffer[0])
                output = np.array(backend.infer(1)[0], dtype=np.float32)
                finite = np.isfinite(output)
                worst["non_finite_values"] += int(output.size - np.count_nonzero(finite))
                probs = probabilities(np.where(finite, output, 0.0), config)
                worst["min_probability"] = min(worst["min_probability"], float(np.min(probs)))
                worst["max_probability"] = max(worst["max_probability"], float(np.max(probs)))
                masks.append(class_mask(probs, config))
    if not check:
        return masks, None
    tolerance = 1e-3
    reasons = []
    if worst["non_finite_values"]:
        reasons.append("{} non-finite output values (NaN/inf) on {} recent frames".format(
            worst["non_finite_values"], len(images)))
    if images and (worst["min_probability"] < -tolerance or worst["max_probability"] > 1 + tolerance):
        reasons.append("probabilities outside [0, 1]: {:.3f}..{:.3f} (check model.output.activation)".format(
            worst["min_probability"], worst["max_probability"]))
    sanity = {"frames": len(images), "non_finite_values": worst["non_finite_values"], "passed": not reasons,
              "reason": "; ".join(reasons) if reasons else "outputs finite and in range"}
    if images:
        sanity["min_probability"] = round(worst["min_probability"], 4)
        sanity["max_probability"] = round(worst["max_probability"], 4)
    return masks, sanity


def _agreement(new: AgentConfig, old: AgentConfig, new_masks: List[np.ndarray], old_masks: List[np.ndarray],
               floor: Optional[float]) -> Dict[str, Any]:
    """Mask IoU per defect class the two models share, accumulated over the frames (1.0: both clean)."""
    new_classes, old_classes = new.model.output.classes, old.model.output.classes
    shared = [c for c in new.model.output.defect_classes if c in old.model.output.defect_classes]
    per_class = {}
    for name in shared:
        a_id, b_id = new_classes.index(name), old_classes.index(name)
        inter = union = 0
        for a, b in zip(new_masks, old_masks):
            if a.shape != b.shape:
                b = _resize_mask(b, a.shape)
            x, y = a == a_id, b == b_id
            inter += int(np.count_nonzero(x & y))
            union += int(np.count_nonzero(x | y))
        if union:
            per_class[name] = round(inter / union, 4)
    iou = round(float(np.mean(list(per_class.values()))), 4) if per_class else 1.0
    passed = floor is None or iou >= floor
    if floor is None:
        reason = "agreement {:.4f} reported, not gated (rollout.gate.agreement_floor is null)".format(iou)
    elif passed:
        reason = "agreement {:.4f} >= floor {:.2f}".format(iou, floor)
    else:
        reason = "agreement with the serving model {:.4f} < floor {:.2f} on {} recent frames".format(
            iou, floor, len(new_masks))
    return {"frames": len(new_masks), "iou_agreement": iou, "iou_per_class": per_class, "floor": floor,
            "shared_classes": shared, "passed": passed, "reason": reason}


def _resize_mask(mask: np.ndarray, shape: Any) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.int16), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(mask.dtype)
