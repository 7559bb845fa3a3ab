import numpy as np
import pytest

from edge_agent.config import ModelConfig
from edge_agent.errors import ModelError
from edge_agent.postprocess import Postprocessor
from edge_agent.preprocess import Geometry

CLASSES = ["background", "scratch", "spot"]


def _model(**thresholds):
    return ModelConfig.model_validate({"path": "model.onnx", "input": {"width": 32, "height": 32},
                                       "output": {"classes": CLASSES}, "thresholds": thresholds})


def _logits(class_map, confidence=6.0):
    """One-hot-ish logits: the class in class_map gets `confidence`, others 0."""
    c = len(CLASSES)
    logits = np.zeros((c,) + class_map.shape, np.float32)
    for k in range(c):
        logits[k][class_map == k] = confidence
    return logits


IDENTITY = Geometry(1.0, 1.0, 0, 0, 0, 0, 32, 32)


def test_regions_from_a_hand_made_mask():
    class_map = np.zeros((32, 32), np.int64)
    class_map[2:6, 3:13] = 1  # scratch 4x10
    class_map[20:28, 20:28] = 2  # spot 8x8
    post = Postprocessor(_model(min_area_px=1), (3, 32, 32))
    regions = sorted(post(_logits(class_map), IDENTITY))
    assert [(r.cls, r.area_px, r.bbox) for r in regions] == [
        ("scratch", 40, (3, 2, 10, 4)), ("spot", 64, (20, 20, 8, 8))]
    expected = np.exp(6) / (np.exp(6) + 2)
    assert regions[0].score_max == pytest.approx(expected, rel=1e-5)
    assert regions[0].score_mean == pytest.approx(expected, rel=1e-5)
    assert post.defect_mask.sum() == 40 + 64


def test_min_area_and_per_class_score_thresholds():
    class_map = np.zeros((32, 32), np.int64)
    class_map[0:2, 0:2] = 1  # 4 px scratch
    class_map[10:20, 10:20] = 2  # 100 px spot
    post = Postprocessor(_model(min_area_px=5), (3, 32, 32))
    assert [r.cls for r in post(_logits(class_map), IDENTITY)] == ["spot"]
    post = Postprocessor(_model(min_area_px=1, per_class={"spot": {"score": 0.999}}), (3, 32, 32))
    assert [r.cls for r in post(_logits(class_map), IDENTITY)] == ["scratch"]


def test_two_separate_blobs_of_one_class_are_two_regions():
    class_map = np.zeros((32, 32), np.int64)
    class_map[0:4, 0:4] = 1
    class_map[10:14, 10:14] = 1
    post = Postprocessor(_model(min_area_px=1), (3, 32, 32))
    assert len(post(_logits(class_map), IDENTITY)) == 2


def test_boxes_and_areas_map_back_to_frame_pixels():
    class_map = np.zeros((32, 32), np.int64)
    class_map[8:16, 4:12] = 2
    geometry = Geometry(0.5, 0.25, 0, 0, 0, 0, 64, 128)  # frame 64x128 stretched to 32x32
    post = Postprocessor(_model(min_area_px=1), (3, 32, 32))
    (region,) = post(_logits(class_map), geometry)
    assert region.bbox == (8, 32, 16, 32)
    assert region.area_px == 64 * 8
    mask = post.frame_mask(geometry)
    assert mask.shape == (128, 64) and mask.sum() == 16 * 32


def test_sigmoid_single_channel():
    model = ModelConfig.model_validate({
        "path": "x", "input": {"width": 16, "height": 16},
        "output": {"activation": "sigmoid", "classes": ["defect"], "background": None},
        "thresholds": {"min_area_px": 1}})
    logit = np.full((1, 16, 16), -5.0, np.float32)
    logit[0, 4:8, 4:8] = 5.0
    (region,) = Postprocessor(model, (1, 16, 16))(logit, Geometry(1, 1, 0, 0, 0, 0, 16, 16))
    assert region.cls == "defect" and region.area_px == 16
    assert region.score_max == pytest.approx(1 / (1 + np.exp(-5)), rel=1e-5)


def test_channel_count_must_match_classes():
    with pytest.raises(ModelError, match="model.output.classes: the model outputs 4 channel"):
        Postprocessor(_model(), (4, 32, 32))


def test_a_half_resolution_output_maps_back_to_frame_pixels():
    class_map = np.zeros((16, 16), np.int64)
    class_map[4:8, 2:6] = 2  # output pixels; input pixels 8:16 x 4:12
    geometry = Geometry(0.5, 0.25, 0, 0, 0, 0, 64, 128)  # frame 64x128 stretched to the 32x32 input
    post = Postprocessor(_model(min_area_px=1), (3, 16, 16))
    (region,) = post(_logits(class_map), geometry)
    assert region.bbox == (8, 32, 16, 32)
    assert region.area_px == 64 * 8
    assert post.frame_mask(geometry).sum() == 16 * 32


def test_a_class_index_map():
    model = ModelConfig.model_validate({"path": "m", "input": {"width": 32, "height": 32},
                                        "output": {"kind": "class_index", "classes": CLASSES},
                                        "thresholds": {"min_area_px": 1}})
    class_map = np.zeros((32, 32), np.int64)
    class_map[2:6, 3:13] = 1
    class_map[20:28, 20:28] = 2
    regions = sorted(Postprocessor(model, (32, 32))(class_map, IDENTITY))
    assert [(r.cls, r.area_px, r.bbox, r.score_max) for r in regions] == [
        ("scratch", 40, (3, 2, 10, 4), 1.0), ("spot", 64, (20, 20, 8, 8), 1.0)]
