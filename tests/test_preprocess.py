import numpy as np
import pytest

from edge_agent.config import InputConfig
from edge_agent.preprocess import LETTERBOX_FILL, Preprocessor


def _run(spec, frame):
    pre = Preprocessor(spec)
    out = np.empty(pre.input_shape, np.float32)
    return pre(frame, out), out


def test_stretch_normalizes_and_swaps_to_rgb():
    frame = np.zeros((20, 40, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    geometry, out = _run(InputConfig(width=16, height=8, mean=[0.5] * 3, std=[0.25] * 3), frame)
    assert out.shape == (3, 8, 16)
    np.testing.assert_allclose(out[0], (0 / 255 - 0.5) / 0.25)  # R
    np.testing.assert_allclose(out[2], (255 / 255 - 0.5) / 0.25)  # B
    assert (geometry.scale_x, geometry.scale_y) == (16 / 40, 8 / 20)


def test_unset_normalization_is_neutral_and_uint8_gets_raw_pixels():
    frame = np.full((8, 8, 3), 51, np.uint8)
    _, out = _run(InputConfig(width=8, height=8), frame)
    np.testing.assert_allclose(out, 51 / 255, rtol=1e-6)
    pre = Preprocessor(InputConfig(width=8, height=8), np.uint8)
    raw = np.empty(pre.input_shape, np.uint8)
    pre(frame, raw)
    assert (raw == 51).all()


def test_nhwc_bgr_with_custom_normalization():
    frame = np.full((10, 10, 3), 100, np.uint8)
    frame[..., 2] = 200
    spec = InputConfig(width=10, height=10, layout="NHWC", color="BGR", scale=1.0, mean=[10, 20, 30], std=[2, 4, 5])
    _, out = _run(spec, frame)
    assert out.shape == (10, 10, 3)
    np.testing.assert_allclose(out[..., 0], (100 - 10) / 2)
    np.testing.assert_allclose(out[..., 2], (200 - 30) / 5)


def test_gray_input():
    frame = np.full((10, 10, 3), 255, np.uint8)
    _, out = _run(InputConfig(width=8, height=8, color="GRAY", mean=[0.0], std=[1.0]), frame)
    assert out.shape == (1, 8, 8)
    np.testing.assert_allclose(out, 1.0)


def test_letterbox_pads_and_maps_back():
    frame = np.full((50, 100, 3), 0, np.uint8)  # 2:1 into a square
    geometry, out = _run(InputConfig(width=64, height=64, resize="letterbox", scale=1.0, mean=[0, 0, 0],
                                     std=[1, 1, 1]), frame)
    assert geometry.pad_y == 16 and geometry.pad_x == 0
    assert out[0, 0, 0] == LETTERBOX_FILL and out[0, 32, 32] == 0 and out[0, 63, 0] == LETTERBOX_FILL


def test_center_crop_geometry():
    frame = np.zeros((100, 200, 3), np.uint8)
    geometry, _ = _run(InputConfig(width=50, height=50, resize="center_crop"), frame)
    assert (geometry.crop_x, geometry.crop_y) == (50, 0)
    assert geometry.scale_x == pytest.approx(0.5)


def test_steady_stream_reuses_its_working_images():
    pre = Preprocessor(InputConfig(width=16, height=16))
    out = np.empty(pre.input_shape, np.float32)
    frame = np.zeros((30, 40, 3), np.uint8)
    pre(frame, out)
    canvas = pre._canvas
    for _ in range(3):
        pre(frame, out)
    assert pre._canvas is canvas and len(pre._plans) == 1
