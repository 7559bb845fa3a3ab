"""Agreement of a precision with the FP32 reference on the user's images, judged as the line judges.

Masks are compared as the accuracy gate compares them (the class that wins a pixel where its
probability reaches its score threshold): IoU per defect class accumulated over all images, the
overall figure the mean over classes (1.0 when neither finds any defect pixel). Defects are counted
by the pipeline's own postprocessing (regions above min_area_px), and an image agrees when both
count the same number of defects of each class.
"""

from typing import Any, Dict, List, NamedTuple

import numpy as np

from edge_agent.config import AgentConfig
from edge_agent.engine.gate import class_mask, probabilities
from edge_agent.postprocess import Postprocessor
from edge_agent.preprocess import Preprocessor


class ImageResult(NamedTuple):
    mask: np.ndarray  # per-pixel class id, -1 where no class is confident
    counts: Dict[str, int]  # defects per class found by the postprocessing


def evaluate(backend: Any, config: AgentConfig, frames: List[np.ndarray]) -> List[ImageResult]:
    """Each frame through `backend` at batch 1: its class mask and defect counts."""
    preprocess = Preprocessor(config.model.input)
    postprocess = Postprocessor(config.model, tuple(backend.output_spec.shape[1:]))
    results = []
    for frame in frames:
        geometry = preprocess(frame, backend.input_buffer[0])
        output = np.array(backend.infer(1)[0], dtype=np.float32)
        counts: Dict[str, int] = {}
        for region in postprocess(output, geometry):
            counts[region.cls] = counts.get(region.cls, 0) + 1
        results.append(ImageResult(class_mask(probabilities(output, config), config), counts))
    return results


def agreement(config: AgentConfig, reference: List[ImageResult], candidate: List[ImageResult]) -> Dict[str, Any]:
    classes = config.model.output.classes
    defect_ids = [i for i, name in enumerate(classes) if name != config.model.output.background]
    intersection = np.zeros(len(classes), dtype=np.int64)
    union = np.zeros(len(classes), dtype=np.int64)
    same_counts = 0
    for ref, cand in zip(reference, candidate):
        for index in defect_ids:
            a, b = ref.mask == index, cand.mask == index
            intersection[index] += int(np.count_nonzero(a & b))
            union[index] += int(np.count_nonzero(a | b))
        same_counts += int(ref.counts == cand.counts)
    per_class = {classes[i]: round(float(intersection[i] / union[i]), 4) for i in defect_ids if union[i] > 0}
    images = len(reference)
    return {
        "images": images,
        "mask_iou": round(float(np.mean(list(per_class.values()))), 4) if per_class else 1.0,
        "mask_iou_per_class": per_class,
        "defect_count_agreement": round(same_counts / images, 4) if images else None,
        "defects_found": sum(sum(r.counts.values()) for r in candidate),
    }
