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
                    layout: str = "NCHW", activation: str = "softmax", threshold: float = 0.25,
                    gain: float = 20.0, opset: int = 13, input_type: str = "float32", head: str = "logits",
                    downsample: int = 1, nan: bool = False) -> Path:
    """A model whose defect channel fires where normalized channel 0 < threshold (0.25: black fires and
    light grey does not, under neutral normalization (pixels / 255) and under mean 0.5 / std 0.25 alike).

    activation softmax: 2-channel logits [background, defect] (defect = +l/2, background = -l/2);
    activation sigmoid: 1-channel logit l; activation none: 1-channel probability sigmoid(l).
    Layout applies to input and output. Variants (NCHW, softmax logits): input_type uint8 takes raw
    pixels and divides by 255 inside; head "softmax" outputs probabilities, "argmax" an int64 class-index
    map (N, H, W); downsample k outputs at 1/k resolution (average pooling); nan multiplies the output by NaN."""
    height, width = size
    channels = 3
    if layout == "NCHW":
        in_shape = ["batch", channels, height, width]
    else:
        in_shape = ["batch", height, width, channels]
    nodes = []
    x = input_name
    inits = []
    if input_type == "uint8":
        inits.append(numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "inv255"))
        nodes += [helper.make_node("Cast", [x], ["x_float"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["x_float", "inv255"], ["x_scaled"])]
        x = "x_scaled"
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
    inits += [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    nodes.append(helper.make_node("Conv", [x, "w", "b"], ["conv"]))
    y = "conv"
    out_type = TensorProto.FLOAT
    if downsample > 1:
        nodes.append(helper.make_node("AveragePool", [y], ["pooled"], kernel_shape=[downsample] * 2,
                                      strides=[downsample] * 2))
        y = "pooled"
        height, width = height // downsample, width // downsample
    if nan:
        inits.append(numpy_helper.from_array(np.array(np.nan, dtype=np.float32), "nan"))
        nodes.append(helper.make_node("Mul", [y, "nan"], ["poisoned"]))
        y = "poisoned"
    if head == "softmax":
        nodes.append(helper.make_node("Softmax", [y], ["probs"], axis=1))
        y = "probs"
    elif head == "argmax":
        nodes.append(helper.make_node("ArgMax", [y], ["indices"], axis=1, keepdims=0))
        y = "indices"
        out_type = TensorProto.INT64
    if activation == "none":
        nodes.append(helper.make_node("Sigmoid", [y], ["prob"]))
        y = "prob"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [y], ["y_nhwc"], perm=[0, 2, 3, 1]))
        y = "y_nhwc"
    nodes.append(helper.make_node("Identity", [y], [output_name]))
    out_shape = ["batch", out_channels, height, width] if layout == "NCHW" else ["batch", height, width, out_channels]
    if head == "argmax":
        out_shape = ["batch", height, width]
    in_type = TensorProto.UINT8 if input_type == "uint8" else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "dark_spot",
        [helper.make_tensor_value_info(input_name, in_type, in_shape)],
        [helper.make_tensor_value_info(output_name, out_type, out_shape)],
        initializer=inits)
    return _save(graph, opset, path)


def two_input_model(path: Path, size=(64, 64)) -> Path:
    """An image plus a second (threshold) input: edge-agent feeds one tensor, so this is refused."""
    height, width = size
    weight = numpy_helper.from_array(np.ones((2, 3, 1, 1), dtype=np.float32), "w")
    nodes = [helper.make_node("Conv", ["image", "w"], ["conv"]), helper.make_node("Sub", ["conv", "level"], ["logits"])]
    graph = helper.make_graph(
        nodes, "two_inputs",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, height, width]),
         helper.make_tensor_value_info("level", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, height, width])],
        initializer=[weight])
    return _save(graph, 13, path)


def tiny_unet_model(path: Path, size=(32, 32), classes: int = 5, seed: int = 0, opset: int = 13) -> Path:
    """A small encoder-decoder conv net (Conv/Relu, strided conv down, Resize up, skip Add) with a
    dynamic batch: big enough for INT8 quantization to insert real Q/DQ pairs, small enough for tests.
    Its class-0 logit follows brightness, so masks are not all one class."""
    rng = np.random.default_rng(seed)
    height, width = size

    def conv(name, cin, cout, k, stride=1):
        w = rng.normal(0, (2.0 / (cin * k * k)) ** 0.5, (cout, cin, k, k)).astype(np.float32)
        b = rng.normal(0, 0.05, cout).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")])
        return name + "_w", name + "_b", dict(kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride, stride])

    inits = []
    nodes = []
    w, b, attrs = conv("enc1", 3, 8, 3)
    nodes += [helper.make_node("Conv", ["image", w, b], ["e1"], **attrs), helper.make_node("Relu", ["e1"], ["r1"])]
    w, b, attrs = conv("down", 8, 16, 3, stride=2)
    nodes += [helper.make_node("Conv", ["r1", w, b], ["d1"], **attrs), helper.make_node("Relu", ["d1"], ["r2"])]
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales"))
    nodes.append(helper.make_node("Resize", ["r2", "", "scales"], ["up"], mode="nearest"))
    w, b, attrs = conv("proj", 16, 8, 1)
    nodes += [helper.make_node("Conv", ["up", w, b], ["p1"], **attrs), helper.make_node("Add", ["p1", "r1"], ["s1"]),
              helper.make_node("Relu", ["s1"], ["r3"])]
    w, b, attrs = conv("head", 8, classes, 1)
    nodes.append(helper.make_node("Conv", ["r3", w, b], ["logits"], **attrs))
    graph = helper.make_graph(
        nodes, "tiny_unet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes, height, width])],
        initializer=inits)
    return _save(graph, opset, path)


def _save(graph, opset: int, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # readable by every ONNX Runtime the project supports
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)
