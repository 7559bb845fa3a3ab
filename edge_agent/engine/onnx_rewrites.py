"""Exact graph rewrites that ONNX Runtime's CPU kernels run faster, applied to the INT8 build.

A segmentation head that ends in a pixel shuffle, a 1x1 convolution whose output only feeds a
`DepthToSpace` (PyTorch's `PixelShuffle`), is the same linear map as one transposed convolution
with kernel and stride r. ORT runs the shuffle as a single-threaded generic copy (0.48 ms on uint8
and 0.77 ms on float for the demo model's 20x128x128 head, of a 4 ms INT8 run), while its
ConvTranspose writes the full-size output directly. The transposed convolution is kept in FP32
(ORT's CPU provider has no INT8 kernel for it), so the head's last layer also loses its INT8
rounding.

The convolution's bias depends on the sub-pixel (c, i, j); a transposed convolution's bias only on
c. When the bias is not constant over each r x r block, it is added after the transposed
convolution as a [1, C, H*r, W*r] map of the r x r pattern, which needs H and W known from shape
inference; without them that head is left alone.
"""

from typing import Any, Dict, List, Optional

import numpy as np
from onnx import helper, numpy_helper


def shuffle_heads_as_transposed_convs(model: Any) -> List[str]:
    """Rewrite each 1x1 Conv -> DepthToSpace pair of `model` (in place) into a ConvTranspose (plus
    a bias pattern where needed); return the names of the nodes added, to be kept in FP32."""
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: Dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    graph_inputs = {i.name for i in graph.input}  # old exporters list initializers as inputs too
    shapes = {v.name: v.type.tensor_type.shape for v in list(graph.value_info) + list(graph.output)}
    added: List[str] = []
    for shuffle in [n for n in graph.node if n.op_type == "DepthToSpace"]:
        conv = producers.get(shuffle.input[0])
        if conv is None or conv.op_type != "Conv" or consumers.get(shuffle.input[0]) != 1 \
                or shuffle.input[0] in outputs:
            continue
        replacement = _transposed_conv(conv, shuffle, initializers, shapes.get(shuffle.input[0]))
        if replacement is None:
            continue
        nodes, tensors = replacement
        position = list(graph.node).index(shuffle)
        for offset, node in enumerate(nodes):
            graph.node.insert(position + offset, node)
        graph.node.remove(conv)
        graph.node.remove(shuffle)
        graph.initializer.extend(tensors)
        for name in conv.input[1:]:
            consumers[name] -= 1
            if consumers[name] == 0 and name in initializers and name not in graph_inputs:
                graph.initializer.remove(initializers.pop(name))
        added.extend(node.name for node in nodes)
    return added


def _transposed_conv(conv: Any, shuffle: Any, initializers: Dict[str, Any], shape: Any) -> Optional[tuple]:
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    shuffle_attrs = {a.name: helper.get_attribute_value(a) for a in shuffle.attribute}
    if len(conv.input) < 2 or conv.input[1] not in initializers or (len(conv.input) > 2 and conv.input[2]
                                                                      and conv.input[2] not in initializers):
        return None
    weight = numpy_helper.to_array(initializers[conv.input[1]])
    r = int(shuffle_attrs.get("blocksize", 0))
    mode = shuffle_attrs.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if weight.ndim != 4 or weight.shape[2:] != (1, 1) or r < 1 or weight.shape[0] % (r * r) \
            or attrs.get("group", 1) != 1 or any(s != 1 for s in attrs.get("strides", [1, 1])) \
            or any(d != 1 for d in attrs.get("dilations", [1, 1])) or any(p != 0 for p in attrs.get("pads", [0] * 4)) \
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):  # ONNX strings come as bytes
        return None
    channels = weight.shape[0] // (r * r)
    # output channel m of the convolution lands at (c, i, j) of the shuffle
    by_position = _by_position(weight[:, :, 0, 0], channels, r, mode)  # [C, r, r, K]
    if by_position is None:
        return None
    transposed = np.ascontiguousarray(by_position.transpose(3, 0, 1, 2)).astype(weight.dtype)  # [K, C, r, r]
    name = conv.name or shuffle.name or "pixel_shuffle"
    weight_name = name + "_as_convtranspose_W"
    tensors = [numpy_helper.from_array(transposed, weight_name)]
    conv_inputs = [conv.input[0], weight_name]
    bias = numpy_helper.to_array(initializers[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] else None
    pattern = None
    if bias is not None:
        block = _by_position(bias.reshape(-1, 1), channels, r, mode)[..., 0]  # [C, r, r]
        if np.all(block == block[:, :1, :1]):
            tensors.append(numpy_helper.from_array(block[:, 0, 0].astype(bias.dtype), name + "_as_convtranspose_B"))
            conv_inputs.append(name + "_as_convtranspose_B")
        else:
            pattern = block.astype(bias.dtype)
    out = shuffle.output[0]
    transposed_out = out if pattern is None else name + "_convtranspose"
    transposed_node = helper.make_node("ConvTranspose", conv_inputs, [transposed_out], name=name + "_as_convtranspose",
                                       kernel_shape=[r, r], strides=[r, r])
    if pattern is None:
        return [transposed_node], tensors
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in shape.dim] if shape is not None else []
    if len(dims) != 4 or not dims[2] or not dims[3]:
        return None  # the block pattern needs the spatial size
    # a full-size map: ORT's broadcast Add over a 6-D view costs 4x the transposed convolution itself
    bias_map = np.tile(pattern, (1, dims[2], dims[3]))[np.newaxis]
    tensors.append(numpy_helper.from_array(np.ascontiguousarray(bias_map), name + "_bias_map"))
    nodes = [transposed_node,
             helper.make_node("Add", [name + "_convtranspose", name + "_bias_map"], [out], name=name + "_bias")]
    return nodes, tensors


def _by_position(rows: np.ndarray, channels: int, r: int, mode: str) -> Optional[np.ndarray]:
    """Rows indexed by the convolution's output channel -> [C, r, r, ...] indexed by (c, i, j)."""
    if mode == "CRD":  # channel = c * r * r + i * r + j
        return rows.reshape(channels, r, r, -1)
    if mode == "DCR":  # channel = (i * r + j) * C + c
        return rows.reshape(r, r, channels, -1).transpose(2, 0, 1, 3)
    return None
