"""The pixel-shuffle head rewrite: exact, applied only where it is the same map, and timed in the
CPU INT8 recipe."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_agent.engine.onnx_rewrites import shuffle_heads_as_transposed_convs


def _head_model(mode="CRD", bias="varied", kernel=1, extra_consumer=False, spatial=(6, 5)):
    rng = np.random.default_rng(7)
    height, width = spatial
    weight = rng.normal(0, 0.5, (12, 4, kernel, kernel)).astype(np.float32)  # 3 classes x 2 x 2
    inits = [numpy_helper.from_array(weight, "w")]
    inputs = ["x", "w"]
    if bias != "none":
        values = rng.normal(0, 1, 12).astype(np.float32)
        if bias == "per-class":  # the same for the four sub-pixels of each class
            order = np.arange(12).reshape(3, 2, 2)
            if mode == "DCR":
                order = np.arange(12).reshape(2, 2, 3).transpose(2, 0, 1)
            values[order] = np.repeat(values[:3], 4).reshape(3, 2, 2)
        inits.append(numpy_helper.from_array(values, "b"))
        inputs.append("b")
    nodes = [helper.make_node("Relu", ["image"], ["x"], name="relu"),
             helper.make_node("Conv", inputs, ["c"], name="head", pads=[kernel // 2] * 4),
             helper.make_node("DepthToSpace", ["c"], ["logits"], blocksize=2, mode=mode, name="shuffle")]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, height * 2, width * 2])]
    if extra_consumer:
        nodes.append(helper.make_node("Identity", ["c"], ["raw"], name="raw"))
        outputs.append(helper.make_tensor_value_info("raw", TensorProto.FLOAT, [1, 12, height, width]))
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                            [1, 4, height, width])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def _run(model, image):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": image})[0]


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
@pytest.mark.parametrize("bias", ["varied", "per-class", "none"])
def test_a_1x1_conv_and_pixel_shuffle_become_one_transposed_conv_with_the_same_output(mode, bias):
    model = _head_model(mode, bias)
    image = np.random.default_rng(1).normal(0, 1, (1, 4, 6, 5)).astype(np.float32)
    expected = _run(model, image)
    added = shuffle_heads_as_transposed_convs(model)
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "DepthToSpace" not in ops and "Conv" not in ops and "ConvTranspose" in ops
    assert ("Add" in ops) == (bias == "varied")  # only a bias that differs between sub-pixels needs the map
    assert sorted(added) == sorted(n.name for n in model.graph.node if n.op_type in ("ConvTranspose", "Add"))
    assert {i.name for i in model.graph.initializer}.isdisjoint({"w", "b"})  # the old weights are gone
    np.testing.assert_allclose(_run(model, image), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["3x3 kernel", "conv output used twice", "unknown size"])
def test_a_head_that_is_not_the_same_map_is_left_alone(case):
    if case == "unknown size":  # a varied bias needs the spatial size for its map
        model = _head_model()
        del model.graph.value_info[:]
    else:
        model = _head_model(kernel=3 if case == "3x3 kernel" else 1, extra_consumer=case == "conv output used twice")
    before = model.SerializeToString()
    assert shuffle_heads_as_transposed_convs(model) == []
    assert model.SerializeToString() == before


def test_the_cpu_int8_recipe_times_the_rewritten_head_and_serves_the_same_masks(tmp_path):
    from edge_agent.engine.ort_int8 import write_int8_for_cpu

    source = tmp_path / "head.onnx"
    onnx.save(_head_model(spatial=(16, 16)), str(source))
    rng = np.random.default_rng(3)
    images = [rng.normal(0, 1, (1, 4, 16, 16)).astype(np.float32) for _ in range(8)]
    target = tmp_path / "int8.onnx"
    build = write_int8_for_cpu(source, target, "image", lambda: iter(images), len(images), "minmax", 1,
                               lambda text, fraction: None)
    timings = build["format_latency_ms"]
    assert set(timings) == {"QDQ", "QOperator", "QDQ+transposed-conv-head"}  # no conv reads the image
    assert build["variant"] == min(timings, key=timings.get)
    served = onnx.load(str(target))
    ops = {n.op_type for n in served.graph.node}
    rewritten = build["variant"].endswith("+transposed-conv-head")
    assert ("ConvTranspose" in ops) == rewritten and ("DepthToSpace" in ops) != rewritten
    if rewritten:  # kept in FP32: ORT's CPU provider has no INT8 transposed convolution
        assert build["float_nodes"] == ["head_as_convtranspose", "head_bias"]
    reference = _run(onnx.load(str(source)), images[0]).argmax(1)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert (session.run(["logits"], {"image": images[0]})[0].argmax(1) == reference).mean() > 0.9
