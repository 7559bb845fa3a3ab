import json

import cv2
import numpy as np
import pytest

from edge_agent.synthetic import (
    CLASS_NAMES,
    DEFECT_CLASSES,
    SURFACES,
    Defect,
    Sample,
    SyntheticGenerator,
    write_dataset,
)


def test_class_tables():
    assert DEFECT_CLASSES == ("scratch", "spot", "crack", "pit")
    assert CLASS_NAMES == ("background", "scratch", "spot", "crack", "pit")
    assert SURFACES == ("brushed_metal", "woven_fabric", "cast_grain", "painted_panel")


def test_shapes_and_dtypes():
    sample = SyntheticGenerator(width=200, height=120, seed=1).sample(0)
    assert isinstance(sample, Sample)
    assert sample.image.shape == (120, 200, 3) and sample.image.dtype == np.uint8
    assert sample.mask.shape == (120, 200) and sample.mask.dtype == np.uint8
    assert sample.surface in SURFACES
    assert all(isinstance(d, Defect) and d.cls in DEFECT_CLASSES for d in sample.defects)


def test_same_seed_and_index_give_identical_samples():
    a = SyntheticGenerator(seed=7).sample(3)
    b = SyntheticGenerator(seed=7).sample(3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.surface == b.surface and a.defects == b.defects


def test_different_index_or_seed_gives_different_samples():
    gen = SyntheticGenerator(seed=7)
    assert not np.array_equal(gen.sample(3).image, gen.sample(4).image)
    assert not np.array_equal(gen.sample(3).image, SyntheticGenerator(seed=8).sample(3).image)


def test_order_independent():
    forward, backward = SyntheticGenerator(seed=11), SyntheticGenerator(seed=11)
    first = [forward.sample(i) for i in range(6)]
    last = [backward.sample(i) for i in reversed(range(6))][::-1]
    for a, b in zip(first, last):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert a.defects == b.defects


def test_defect_rate_zero_gives_empty_masks():
    gen = SyntheticGenerator(seed=2, defect_rate=0.0)
    for i in range(10):
        sample = gen.sample(i)
        assert not sample.mask.any() and sample.defects == ()


@pytest.mark.parametrize("size", [(320, 240), (64, 48), (32, 32)])
def test_defect_rate_one_and_bboxes_cover_mask(size):
    gen = SyntheticGenerator(width=size[0], height=size[1], seed=5, defect_rate=1.0)
    seen = set()
    for i in range(40):
        sample = gen.sample(i)
        assert sample.mask.any() and 1 <= len(sample.defects) <= 3
        assert sample.mask.max() <= len(DEFECT_CLASSES)
        for cls_id, name in enumerate(CLASS_NAMES[1:], start=1):
            covered = np.zeros(sample.mask.shape, bool)
            for d in sample.defects:
                if d.cls == name:
                    x, y, w, h = d.bbox
                    assert w > 0 and h > 0 and x >= 0 and y >= 0
                    assert x + w <= size[0] and y + h <= size[1]
                    assert (sample.mask[y:y + h, x:x + w] == cls_id).any()
                    covered[y:y + h, x:x + w] = True
            assert not (sample.mask == cls_id)[~covered].any()
        seen.update(d.cls for d in sample.defects)
    assert seen == set(DEFECT_CLASSES)


def test_mask_values_and_default_rate():
    gen = SyntheticGenerator(seed=9)
    with_defects = 0
    for i in range(30):
        sample = gen.sample(i)
        assert set(np.unique(sample.mask)) <= set(range(len(CLASS_NAMES)))
        with_defects += bool(sample.defects)
    assert 10 <= with_defects <= 29


def test_surfaces_restriction_and_visible_difference():
    means = {}
    for surface in SURFACES:
        gen = SyntheticGenerator(seed=4, surfaces=(surface,), defect_rate=0.0, noise=0.0, lighting=0.0)
        sample = gen.sample(0)
        assert sample.surface == surface
        gray = cv2.cvtColor(sample.image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        # horizontal vs vertical gradient energy tells streaks and weave apart
        means[surface] = (np.abs(np.diff(gray, axis=1)).mean(), np.abs(np.diff(gray, axis=0)).mean())
    gx, gy = means["brushed_metal"]
    assert gy > 1.5 * gx  # streaks run horizontally
    assert means["woven_fabric"][0] > means["painted_panel"][0]


def test_defect_darkens_or_brightens_pixels():
    clean = SyntheticGenerator(seed=6, defect_rate=0.0, noise=0.0)
    dirty = SyntheticGenerator(seed=6, defect_rate=1.0, noise=0.0)
    changed = 0
    for i in range(10):
        sample = dirty.sample(i)
        fg = sample.mask > 0
        diff = np.abs(sample.image.astype(np.int16) - clean.sample(i).image.astype(np.int16)).max(axis=2)
        changed += (diff[fg] >= 8).mean()
    assert changed / 10 > 0.8


@pytest.mark.parametrize("kwargs", [
    {"width": 31}, {"height": 8}, {"width": 64.0}, {"seed": -1}, {"defect_rate": 1.5},
    {"defect_rate": -0.1}, {"lighting": 2.0}, {"noise": -0.01}, {"noise": 0.9},
    {"surfaces": ()}, {"surfaces": ("marble",)},
])
def test_argument_validation(kwargs):
    with pytest.raises(ValueError):
        SyntheticGenerator(**kwargs)


def test_index_validation():
    with pytest.raises(ValueError):
        SyntheticGenerator().sample(-1)


def test_write_dataset(tmp_path):
    write_dataset(str(tmp_path), 3, seed=1, width=96, height=64, defect_rate=1.0)
    gen = SyntheticGenerator(width=96, height=64, seed=1, defect_rate=1.0)
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert labels["classes"] == list(CLASS_NAMES) and len(labels["images"]) == 3
    for i in range(3):
        image = cv2.imread(str(tmp_path / "images" / f"{i:05d}.png"), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(tmp_path / "masks" / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        sample = gen.sample(i)
        assert np.array_equal(image, sample.image) and np.array_equal(mask, sample.mask)
        assert labels["images"][i]["defects"][0]["cls"] == sample.defects[0].cls


def test_fast_enough():
    import time

    gen = SyntheticGenerator(seed=0)
    gen.sample(0)
    start = time.perf_counter()
    for i in range(50):
        gen.sample(i)
    per_frame = (time.perf_counter() - start) / 50
    assert per_frame < 0.05  # generous: ~2-4 ms on a laptop core; guards against accidental slow paths
