"""Model checks before the line starts: open the ONNX model (with `onnx`, never a backend) and compare
its inputs and outputs with the config. `check`, `build`, `run`, `demo` and `inspect` all call this,
so a mismatch gives the same line everywhere: the key, the value, and the fix.

What is compared: input count and name, dtype (float32/float16, or uint8 fed raw pixels), rank,
layout, channels and size; output name, dtype against `output.kind` (scores vs class-index map),
channels against `classes`, resolution against the input (a lower one is scaled back; a higher or
differently shaped one is refused), whether the output already passed through the activation
that `output.activation` would apply again (or through none, when `activation: none` says it did),
and, where the model records the normalization it was trained with (ONNX `metadata_props` entry
`input`: JSON with `scale`, `mean`, `std`, as scripts/train_demo_model.py writes it for the demo
model), whether model.input scale/mean/std agree with it.
"""

import json
import logging
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

from edge_agent.config import ModelConfig
from edge_agent.errors import ModelError

log = logging.getLogger(__name__)

FLOAT_TYPES = {"float32", "float16"}
INTEGER_TYPES = {"int64", "int32", "uint8", "int8", "uint16", "int16"}
# ops that move or copy values without computing them: looked through to find what made an output
PASSTHROUGH_OPS = {"Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Resize", "Upsample",
                   "DepthToSpace", "SpaceToDepth", "Slice", "Cast", "Pad", "Concat", "AveragePool", "MaxPool"}
Dim = Union[int, str, None]
Normalization = Tuple[float, List[float], List[float]]  # scale, mean, std


class Finding(NamedTuple):
    key: str  # the config key at fault, e.g. model.output.classes
    status: str  # fail | warn | info
    message: str  # what the model and the config say
    fix: str = ""

    def line(self) -> str:
        return "{}: {}{}".format(self.key, self.message, "; fix: " + self.fix if self.fix else "")


class TensorInfo(NamedTuple):
    name: str
    dtype: str  # numpy name: float32, uint8, int64, ...
    shape: Tuple[Dim, ...]  # ints, or names / None for dynamic dimensions
    producer: Optional[str] = None  # the op that computes an output (through pass-through ops)


class ModelIO(NamedTuple):
    inputs: List[TensorInfo]
    outputs: List[TensorInfo]
    normalization: Optional[Normalization] = None  # what the model records of its training, if anything


def verify(model: ModelConfig) -> List[Finding]:
    """Raise ModelError naming every failed check (one line each); return warnings and facts."""
    findings = check_model(model)
    failures = [f for f in findings if f.status == "fail"]
    if failures:
        raise ModelError("model {} does not match the config:\n  {}".format(
            model.path, "\n  ".join(f.line() for f in failures)) if len(failures) > 1 else failures[0].line())
    for finding in findings:
        if finding.status == "warn":
            log.warning("%s", finding.line())
        else:
            log.info("%s", finding.line())
    return findings


def check_model(model: ModelConfig) -> List[Finding]:
    """Every finding about `model.path` against the config; never raises for a bad model."""
    try:
        io = read_model_io(model)
    except ModelError as exc:
        return [Finding("model.path", "fail", str(exc), "copy the file again or point model.path at the ONNX file "
                        "exported from your training code")]
    return compare(model, io)


def read_model_io(model: ModelConfig) -> ModelIO:
    """Inputs and outputs of the ONNX file, with output shapes inferred for the configured input size."""
    import onnx

    path = model.path
    if not path.is_file():
        raise ModelError("{} does not exist".format(path))
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a damaged file
        raise ModelError("{} cannot be read as ONNX ({}): the file may be truncated or not an ONNX model".format(
            path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)) from None
    graph = proto.graph
    weights = {init.name for init in graph.initializer}
    inputs = [_tensor_info(v) for v in graph.input if v.name not in weights]
    _pin_input_size(graph, model, weights)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto).graph.output
    except Exception:  # an op shape inference cannot follow: keep the declared output shapes
        inferred = graph.output
    producers = {out: node for node in graph.node for out in node.output}
    outputs = [_tensor_info(v)._replace(producer=_producer(v.name, producers)) for v in inferred]
    return ModelIO(inputs, outputs, recorded_normalization(proto))


def recorded_normalization(proto) -> Optional[Normalization]:  # type: ignore[no-untyped-def]
    """(scale, mean, std) from the model's `metadata_props` entry `input`, or None when it records none."""
    props = {prop.key: prop.value for prop in proto.metadata_props}
    try:
        spec = json.loads(props["input"])
        return float(spec["scale"]), [float(v) for v in spec["mean"]], [float(v) for v in spec["std"]]
    except (KeyError, ValueError, TypeError):  # no entry, not JSON, or no scale/mean/std in it
        return None


def compare(model: ModelConfig, io: ModelIO) -> List[Finding]:
    findings: List[Finding] = []
    image = _check_inputs(model, io.inputs, findings)
    if image is not None and io.normalization is not None and not any(f.status == "fail" for f in findings):
        _check_normalization(model, image, io.normalization, findings)
    output = _pick(io.outputs, model.output.name, "model.output.name", "output", findings)
    # an input mismatch makes the output's comparisons (its size above all) say the same thing again
    if image is not None and output is not None and not any(f.status == "fail" for f in findings):
        _check_output(model, image, output, findings)
    return findings


def _check_inputs(model: ModelConfig, inputs: Sequence[TensorInfo], findings: List[Finding]) -> Optional[TensorInfo]:
    spec = model.input
    if len(inputs) > 1:
        findings.append(Finding("model.path", "fail", "the model has {} inputs ({}); edge-agent feeds one image "
                                "tensor".format(len(inputs), ", ".join(i.name for i in inputs)),
                                "export the model with a single image input (fold the other inputs into "
                                "constants)"))
        return None
    image = _pick(inputs, spec.name, "model.input.name", "input", findings)
    if image is None:
        return None
    if image.dtype == "uint8":
        if spec.normalizes:
            findings.append(Finding("model.input.scale", "fail", "input {!r} is uint8: the model takes raw pixels "
                                    "0-255 but the config sets scale/mean/std".format(image.name),
                                    "remove model.input scale, mean and std (the model normalizes itself)"))
    elif image.dtype not in FLOAT_TYPES:
        findings.append(Finding("model.path", "fail", "input {!r} is {}; edge-agent feeds float32, float16 or "
                                "uint8 images".format(image.name, image.dtype),
                                "export the model with a float32 or uint8 image input"))
        return None
    if len(image.shape) != 4:
        findings.append(Finding("model.path", "fail", "input {!r} has shape {}; edge-agent feeds a 4-D image batch "
                                "(N, C, H, W or N, H, W, C)".format(image.name, _shape(image.shape)),
                                "export the model with a 4-D image input"))
        return None
    dims = image.shape[1:]
    channels_at = 0 if spec.layout == "NCHW" else 2
    other_at = 2 if spec.layout == "NCHW" else 0
    if dims[channels_at] not in (spec.channels, None) and not isinstance(dims[channels_at], str):
        if dims[other_at] == spec.channels:
            findings.append(Finding("model.input.layout", "fail", "{} but input {!r} has shape {}, which is {}".format(
                spec.layout, image.name, _shape(image.shape), _flip(spec.layout)),
                "set model.input.layout: {}".format(_flip(spec.layout))))
            return None
        findings.append(Finding("model.input.color", "fail", "{} gives {} channel(s) but input {!r} has shape {}"
                                .format(spec.color, spec.channels, image.name, _shape(image.shape)),
                                "set model.input.color: {}".format("GRAY" if dims[channels_at] == 1 else "RGB")))
    height, width = (dims[1], dims[2]) if spec.layout == "NCHW" else (dims[0], dims[1])
    for key, got, want in (("width", width, spec.width), ("height", height, spec.height)):
        if isinstance(got, int) and got != want:
            findings.append(Finding("model.input." + key, "fail", "{} but input {!r} has shape {} ({} {})".format(
                want, image.name, _shape(image.shape), key, got), "set model.input.{}: {}".format(key, got)))
    return image


def _check_normalization(model: ModelConfig, image: TensorInfo, recorded: Normalization,
                         findings: List[Finding]) -> None:
    if image.dtype == "uint8":  # raw pixels: the model normalizes inside (scale/mean/std refused above)
        return
    configured = model.input.normalization()
    names = ("scale", "mean", "std")
    wrong = [name for name, got, want in zip(names, configured, recorded) if not _same(got, want)]
    if not wrong:
        return
    scale, mean, std = recorded
    one_255 = abs(scale - 1 / 255) < 1e-6
    wanted = "mean: {}, std: {}".format(format_values(mean), format_values(std))
    findings.append(Finding("model.input." + wrong[0], "fail", "{} but the model was trained with scale {}, {} "
                            "(recorded in its ONNX metadata 'input'); the config gives scale {:g}, mean {}, std {}"
                            .format(_value(configured[names.index(wrong[0])]), "1/255" if one_255 else
                                    "{:g}".format(scale), wanted.replace(":", ""), configured[0],
                                    format_values(configured[1]), format_values(configured[2])),
                            "in model.input {}{}".format("leave scale out (1/255) and set " if one_255 else
                                                         "set scale: {:g}, ".format(scale), wanted)))


def _same(got: Union[float, List[float]], want: Union[float, List[float]]) -> bool:
    got_values = got if isinstance(got, list) else [got]
    want_values = want if isinstance(want, list) else [want]
    if len(want_values) == 1:
        want_values = want_values * len(got_values)
    return len(got_values) == len(want_values) and all(
        abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in zip(got_values, want_values))


def _value(value: Union[float, List[float]]) -> str:
    return format_values(value) if isinstance(value, list) else "{:g}".format(value)


def format_values(values: List[float]) -> str:
    return "[{}]".format(", ".join("{:g}".format(v) for v in values))


def _check_output(model: ModelConfig, image: TensorInfo, out: TensorInfo, findings: List[Finding]) -> None:
    spec, cfg = model.input, model.output
    integer = out.dtype in INTEGER_TYPES
    if cfg.kind == "scores" and integer:
        findings.append(Finding("model.output.kind", "fail", "scores, but output {!r} is {}: a class-index (argmax) "
                                "map, not per-class scores".format(out.name, out.dtype),
                                "set model.output.kind: class_index"))
        return
    if cfg.kind == "class_index" and not integer:
        findings.append(Finding("model.output.kind", "fail", "class_index, but output {!r} is {}: per-class "
                                "scores".format(out.name, out.dtype), "set model.output.kind: scores"))
        return
    if out.dtype not in FLOAT_TYPES and not integer:
        findings.append(Finding("model.path", "fail", "output {!r} is {}; edge-agent reads float scores or integer "
                                "class indices".format(out.name, out.dtype), "export a float or integer output"))
        return
    shape = out.shape
    if cfg.kind == "class_index" and len(shape) == 3:
        shape = (shape[0], 1) + tuple(shape[1:]) if cfg.layout == "NCHW" else tuple(shape) + (1,)
    if len(shape) != 4:
        findings.append(Finding("model.path", "fail", "output {!r} has shape {}; edge-agent reads a 4-D per-pixel "
                                "map (N, C, H, W or N, H, W, C)".format(out.name, _shape(out.shape)),
                                "export a segmentation output, one value per class and pixel"))
        return
    channels, height, width = (shape[1], shape[2], shape[3]) if cfg.layout == "NCHW" else (
        shape[3], shape[1], shape[2])
    expected = 1 if cfg.kind == "class_index" else len(cfg.classes)
    if isinstance(channels, int) and channels != expected:
        flipped = shape[3] if cfg.layout == "NCHW" else shape[1]
        if flipped == expected:
            findings.append(Finding("model.output.layout", "fail", "{} but output {!r} has shape {}, which is {}"
                                    .format(cfg.layout, out.name, _shape(out.shape), _flip(cfg.layout)),
                "set model.output.layout: {}".format(_flip(cfg.layout))))
            return
        findings.append(Finding("model.output.classes", "fail", "lists {} class(es) ({}) but output {!r} has {} "
                                "channel(s), shape {}".format(len(cfg.classes), ", ".join(cfg.classes), out.name,
                                                              channels, _shape(out.shape)),
                                "list exactly one class name per output channel, in channel order"))
        return
    _check_resolution(spec.width, spec.height, width, height, out, findings)
    if cfg.kind == "scores":
        _check_activation(model, out, findings)


def _check_resolution(in_w: int, in_h: int, width: Dim, height: Dim, out: TensorInfo,
                      findings: List[Finding]) -> None:
    if not (isinstance(width, int) and isinstance(height, int)):
        findings.append(Finding("model.output", "info", "output {!r} size is only known when the model runs; "
                                "it is checked again at start".format(out.name)))
        return
    if (width, height) == (in_w, in_h):
        return
    rx, ry = width / in_w, height / in_h
    if rx > 1 or ry > 1 or abs(rx - ry) > 0.02:
        findings.append(Finding("model.output", "fail", "output {!r} is {}x{} but the input is {}x{}: boxes could "
                                "not be mapped back to the image".format(out.name, width, height, in_w, in_h),
                                "check model.input width/height and model.output.layout; edge-agent maps an output "
                                "at the input's resolution or a uniform fraction of it"))
        return
    findings.append(Finding("model.output", "info", "output {!r} is {}x{}, 1/{:g} of the {}x{} input: masks and "
                            "boxes are scaled back to image pixels".format(out.name, width, height, round(1 / rx, 2),
                                                                          in_w, in_h)))


def _check_activation(model: ModelConfig, out: TensorInfo, findings: List[Finding]) -> None:
    activation, producer = model.output.activation, out.producer
    if producer is None:
        return
    if activation == "none" and producer not in ("Softmax", "Sigmoid"):
        fix = "softmax" if len(model.output.classes) > 1 else "sigmoid"
        findings.append(Finding("model.output.activation", "fail", "none says output {!r} holds probabilities, but "
                                "it comes from {} (raw logits, scores outside 0-1)".format(out.name, producer),
                                "set model.output.activation: {}".format(fix)))
    elif activation != "none" and producer in ("Softmax", "Sigmoid"):
        findings.append(Finding("model.output.activation", "fail", "{} would be applied again: output {!r} already "
                                "comes from {}".format(activation, out.name, producer),
                                "set model.output.activation: none"))


def _pick(tensors: Sequence[TensorInfo], name: Optional[str], key: str, what: str,
          findings: List[Finding]) -> Optional[TensorInfo]:
    if not tensors:
        findings.append(Finding("model.path", "fail", "the model has no {}".format(what), "export a complete model"))
        return None
    if name is None:
        return tensors[0]
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    findings.append(Finding(key, "fail", "{!r} is not an {} of the model; its {}s are {}".format(
        name, what, what, ", ".join(t.name for t in tensors)), "set {}: {} (or leave it out)".format(
            key, tensors[0].name)))
    return None


def _tensor_info(value) -> TensorInfo:  # type: ignore[no-untyped-def]
    from onnx import helper

    tensor = value.type.tensor_type
    try:
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    except Exception:  # an element type numpy has no name for (strings, bfloat16 on old numpy)
        dtype = "type{}".format(tensor.elem_type)
    shape: Tuple[Dim, ...] = ()
    if tensor.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
    return TensorInfo(value.name, dtype, shape)


def _pin_input_size(graph, model: ModelConfig, weights) -> None:  # type: ignore[no-untyped-def]
    """Give dynamic input dimensions the configured size, so shape inference can size the output."""
    spec = model.input
    wanted = (1, spec.channels, spec.height, spec.width) if spec.layout == "NCHW" else (
        1, spec.height, spec.width, spec.channels)
    for value in graph.input:
        if value.name in weights:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            for dim, size in zip(dims, wanted):
                if not dim.HasField("dim_value"):
                    dim.dim_value = size
    for value in graph.output:  # declared dynamic output dims must not block the inferred ones
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.ClearField("dim_param")


def _producer(name: str, producers) -> Optional[str]:  # type: ignore[no-untyped-def]
    node = producers.get(name)
    for _ in range(64):
        if node is None:
            return None
        if node.op_type not in PASSTHROUGH_OPS or not node.input:
            return str(node.op_type)
        node = producers.get(node.input[0])
    return None


def _shape(shape: Sequence[Dim]) -> str:
    return "[{}]".format(", ".join("?" if d is None else str(d) for d in shape))


def _flip(layout: str) -> str:
    return "NHWC" if layout == "NCHW" else "NCHW"
