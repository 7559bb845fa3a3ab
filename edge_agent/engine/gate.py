"""Accuracy gate: a reduced-precision model must agree with the FP32 reference before it serves.

Held-out images go through the serving preprocessing into the FP32 reference (ONNX Runtime on the
original ONNX) and into the candidate on its own backend. The masks are compared the way the
line uses them (per pixel: the arg-max class where its probability reaches the class's score
threshold): IoU agreement is the mean over defect classes of intersection / union accumulated over
all images (1.0 when neither model finds any defect pixel). The probability drift is the largest
absolute difference of any class probability at any pixel.
"""

from typing import Any, Callable, Dict, Optional

import numpy as np

from edge_agent.backends import create_backend
from edge_agent.backends.base import PreparedModel
from edge_agent.backends.onnxruntime import OnnxRuntimeConfig
from edge_agent.config import AgentConfig
from edge_agent.engine.calibration import ImageSet


def run_gate(config: AgentConfig, candidate: PreparedModel, images: ImageSet,
             progress: Callable[[int], None] = lambda n: None) -> Dict[str, Any]:
    """The gate report (a JSON-ready dict with `iou_agreement`, `max_probability_drift`, `passed`)."""
    gate = config.engine.gate
    threads = getattr(config.backend, "threads", 0)
    reference_config = config.model_copy(update={"backend": OnnxRuntimeConfig(precision="fp32", threads=threads)})
    reference_model = PreparedModel(path=config.model.path, precision="fp32", source=config.model.path)
    classes = config.model.output.classes
    defect_ids = [i for i, name in enumerate(classes) if name != config.model.output.background]
    intersection = np.zeros(len(classes), dtype=np.int64)
    union = np.zeros(len(classes), dtype=np.int64)
    drift = 0.0
    count = 0
    with create_backend(reference_model, reference_config) as reference, \
            create_backend(candidate, config) as served, served.bind_thread():
        for tensor in images.tensors(config.model.input):
            reference.input_buffer[0] = tensor[0]
            served.input_buffer[0] = tensor[0]
            ref_probs = probabilities(reference.infer(1)[0], config)
            cand_probs = probabilities(served.infer(1)[0], config)
            drift = max(drift, float(np.max(np.abs(ref_probs - cand_probs))))
            ref_mask = class_mask(ref_probs, config)
            cand_mask = class_mask(cand_probs, config)
            for index in defect_ids:
                a, b = ref_mask == index, cand_mask == index
                intersection[index] += int(np.count_nonzero(a & b))
                union[index] += int(np.count_nonzero(a | b))
            count += 1
            progress(count)
    per_class = {classes[i]: round(intersection[i] / union[i], 4) for i in defect_ids if union[i] > 0}
    iou = float(np.mean(list(per_class.values()))) if per_class else 1.0
    reasons = []
    if iou < gate.iou_floor:
        reasons.append("IoU agreement {:.4f} < floor {:.4f}".format(iou, gate.iou_floor))
    if drift > gate.max_probability_drift:
        reasons.append("probability drift {:.4f} > max {:.4f}".format(drift, gate.max_probability_drift))
    return {
        "precision": candidate.precision,
        "images": count,
        "validation_set": images.description,
        "iou_agreement": round(iou, 4),
        "iou_per_class": per_class,
        "max_probability_drift": round(drift, 4),
        "iou_floor": gate.iou_floor,
        "max_probability_drift_allowed": gate.max_probability_drift,
        "passed": not reasons,
        "reason": "; ".join(reasons) if reasons else "agrees with the FP32 reference",
    }


def probabilities(output: np.ndarray, config: AgentConfig) -> np.ndarray:
    """Every class's probability as (C, H, W) float32: the output's activation (model.output)."""
    out = config.model.output
    planes = np.asarray(output, dtype=np.float32)
    if out.layout == "NHWC":
        planes = planes.transpose(2, 0, 1)
    if out.activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-planes))
    if out.activation == "softmax":
        shifted = np.exp(planes - planes.max(axis=0, keepdims=True))
        return shifted / shifted.sum(axis=0, keepdims=True)
    return planes


def class_mask(probs: np.ndarray, config: AgentConfig) -> np.ndarray:
    """Per-pixel class id the line would report (-1 where no class reaches its score threshold)."""
    thresholds = config.model.thresholds
    scores = np.array([thresholds.for_class(name)[0] for name in config.model.output.classes], dtype=np.float32)
    if probs.shape[0] == 1:  # one sigmoid channel: defect where it reaches the threshold
        return np.where(probs[0] >= scores[0], 0, -1)
    winner = np.argmax(probs, axis=0)
    confident = np.take_along_axis(probs, winner[None], axis=0)[0] >= scores[winner]
    return np.where(confident, winner, -1)


def skipped(reason: str, precision: Optional[str] = None) -> Dict[str, Any]:
    return {"precision": precision, "iou_agreement": None, "passed": True, "skipped": True, "reason": reason}
