import numpy as np
import pytest

from edge_agent.agent import open_backend
from edge_agent.config_loader import load_config
from edge_agent.errors import ModelError
from edge_agent.postprocess import Postprocessor
from edge_agent.preprocess import Preprocessor
from edge_agent.synthetic import SyntheticGenerator

from onnx_models import dark_spot_model


def test_demo_model_shapes_and_reused_buffers():
    config = load_config(None, {"pipeline": {"max_batch": 2}})
    with open_backend(config) as backend:
        assert backend.input_spec.name == "image"
        assert backend.input_spec.shape == (2, 3, 256, 256)
        assert backend.output_spec.shape == (2, 5, 256, 256)
        first = backend.infer(2)
        second = backend.infer(1)
        third = backend.infer(1)
        assert first.shape == (2, 5, 256, 256) and second.shape == (1, 5, 256, 256)
        # a ring of memory.slots (2) output buffers, allocated once: every other call reuses one
        assert backend.slots == 2 and backend.overlaps
        assert not np.shares_memory(first, second)
        assert np.shares_memory(first, third)
        memory = backend.memory()
        assert memory.host_bytes > backend.input_buffer.nbytes + first.nbytes
        assert memory.device_bytes == 0


def test_batched_inference_equals_single_inference():
    config = load_config(None, {"pipeline": {"max_batch": 3}})
    generator = SyntheticGenerator(seed=5)
    with open_backend(config) as backend:
        pre = Preprocessor(config.model.input)
        for i in range(3):
            pre(generator.sample(i).image, backend.input_buffer[i])
        batched = backend.infer(3).copy()
        for i in range(3):
            pre(generator.sample(i).image, backend.input_buffer[0])
            np.testing.assert_allclose(backend.infer(1)[0], batched[i], rtol=1e-4, atol=1e-3)


def test_demo_model_finds_the_synthetic_defects():
    """IoU floor on held-out synthetic frames (seed unseen in training)."""
    config = load_config(None)
    generator = SyntheticGenerator(seed=424242, defect_rate=1.0)
    intersection = union = 0
    with open_backend(config) as backend:
        pre = Preprocessor(config.model.input)
        post = Postprocessor(config.model, backend.output_spec.shape[1:])
        for i in range(12):
            sample = generator.sample(i)
            geometry = pre(sample.image, backend.input_buffer[0])
            regions = post(backend.infer(1)[0], geometry)
            assert regions, "no defect found in frame {}".format(i)
            predicted = post.frame_mask(geometry) > 0
            truth = sample.mask > 0
            intersection += int((predicted & truth).sum())
            union += int((predicted | truth).sum())
    assert intersection / union >= 0.7


def test_truncated_model_is_a_clear_error(tmp_path, dark_model):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(dark_model.read_bytes()[:150])
    config = load_config(None, {"model": {"path": str(broken)}})
    with pytest.raises(ModelError, match="truncated or not an ONNX model"):
        with open_backend(config):
            pass


def test_input_size_mismatch_names_the_fix(tmp_path):
    model = dark_spot_model(tmp_path / "fixed.onnx", size=(64, 64))
    # dark_spot_model has a symbolic batch but fixed spatial dims in its declared shape
    config = load_config(None, {"model": {"path": str(model), "input": {"width": 96, "height": 64},
                                          "output": {"classes": ["background", "dark"]}}})
    with pytest.raises(ModelError, match="model.input.width: 96 .* fix: set model.input.width: 64"):
        with open_backend(config):
            pass


def test_unknown_input_name_lists_the_real_ones(dark_model):
    config = load_config(None, {"model": {"path": str(dark_model), "input": {"name": "img", "width": 64,
                                          "height": 64}, "output": {"classes": ["background", "dark"]}}})
    with pytest.raises(ModelError, match=r"model.input.name: 'img' is not an input .* inputs are image"):
        with open_backend(config):
            pass


def test_one_slot_runs_synchronously_with_the_same_results():
    generator = SyntheticGenerator(seed=9)
    results = []
    for slots in (1, 2):
        config = load_config(None, {"memory": {"slots": slots}})
        with open_backend(config) as backend:
            assert backend.overlaps == (slots == 2)
            pre = Preprocessor(config.model.input)
            pre(generator.sample(0).image, backend.input_buffer[0])
            results.append(backend.infer(1).copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-5)
