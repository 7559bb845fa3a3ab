"""Tiny segmentation ONNX models built in tests, with known behaviour.

`dark_spot_model` marks dark pixels as defects: its logit is `gain * (threshold - x)` on the
normalized input's first channel, so a black square on a light background is a defect region
exactly where it was drawn. That makes pipeline tests able to fail on wrong preprocessing,
layout, activation or box mapping.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def dark_spot_model(path: Path, input_name: str = "image", output_name: str = "logits", size=(64, 64),
                    layout: str = "NCHW", activation: str = "softmax", threshold: float = 0.0,
                    gain: float = 20.0, opset: int = 13) -> Path:
    """A model whose defect channel fires where normalized channel 0 < threshold.

    activation softmax: 2-channel logits [background, defect] (defect = +l/2, background = -l/2);
    activation sigmoid: 1-channel logit l; activation none: 1-channel probability sigmoid(l).
    Layout applies to input and output."""
    height, width = size
    channels = 3
    if layout == "NCHW":
        in_shape = ["batch", channels, height, width]
    else:
        in_shape = ["batch", height, width, channels]
    nodes = []
    x = input_name
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
    out_channels = 2 if activation == "softmax" else 1
    weight = np.zeros((out_channels, channels, 1, 1), dtype=np.float32)
    bias = np.zeros(out_channels, dtype=np.float32)
    if out_channels == 2:
        weight[0, 0] = gain / 2
        bias[0] = -gain * threshold / 2
        weight[1, 0] = -gain / 2
        bias[1] = gain * threshold / 2
    else:
        weight[0, 0] = -gain
        bias[0] = gain * threshold
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    nodes.append(helper.make_node("Conv", [x, "w", "b"], ["conv"]))
    y = "conv"
    if activation == "none":
        nodes.append(helper.make_node("Sigmoid", [y], ["prob"]))
        y = "prob"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [y], ["y_nhwc"], perm=[0, 2, 3, 1]))
        y = "y_nhwc"
    nodes.append(helper.make_node("Identity", [y], [output_name]))
    out_shape = ["batch", out_channels, height, width] if layout == "NCHW" else ["batch", height, width, out_channels]
    graph = helper.make_graph(
        nodes, "dark_spot",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_shape)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)
