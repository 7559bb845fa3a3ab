"""Models that go wrong in the ways a rollout must survive (beside onnx_models.dark_spot_model)."""

import os
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from onnx_models import _save


def nan_model(path: Path, size=(64, 64)) -> Path:
    """Same inputs and outputs as the dark-spot model, but every output is NaN (log of a negative)."""
    height, width = size
    weight = np.zeros((2, 3, 1, 1), dtype=np.float32)
    bias = np.full(2, -1.0, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["conv"]), helper.make_node("Log", ["conv"], ["logits"])],
        "nan_out",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, height, width])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    return _save(graph, 13, path)


def corrupt_model(path: Path, size: int = 4096) -> Path:
    """Bytes that are not an ONNX model (its SHA-256 is right: only building can tell)."""
    path.write_bytes(os.urandom(size))
    return path
