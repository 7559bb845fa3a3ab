"""A config for a model nobody has described yet, inferred from the ONNX file, every guess stated.

`edge-agent report --model X.onnx --images DIR` and `edge-agent build --model X.onnx` work without a
config file (a pre-sales engineer trying a customer's model): the input size, layout and channel
count come from the model's input shape, the classes from its output's channel count (by one probe
inference with ONNX Runtime when the output shape is dynamic). What a file cannot say (colour
order, normalisation) is assumed and listed, so the report states it at the top.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edge_agent.config import DEMO_MODEL, AgentConfig
from edge_agent.config_loader import load_config, merge_overrides
from edge_agent.errors import ConfigError

# torchvision's ImageNet statistics: what most PyTorch-trained segmentation backbones expect
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def config_for_model(model: Path, config_path: Optional[str] = None,
                     overrides: Optional[Dict[str, Any]] = None) -> Tuple[AgentConfig, List[str]]:
    """(config, assumptions). With a config file the model path is replaced and nothing is guessed."""
    overrides = dict(overrides or {})
    if config_path is not None:
        config = load_config(config_path, merge_overrides(overrides, {"model": {"path": str(model)}}))
        return config, ["model.path {} replaces the config's model; its input/output settings are kept".format(model)]
    if model.resolve() == DEMO_MODEL.resolve():
        return load_config(None, overrides), ["the bundled demo model with its documented settings"]
    described, assumptions = describe_model(model)
    return load_config(None, merge_overrides(overrides, {"model": described})), assumptions


def describe_model(model: Path) -> Tuple[Dict[str, Any], List[str]]:
    """The `model:` section for `model`, and the assumptions made writing it."""
    from edge_agent.engine.onnx_variants import check_model

    graph = check_model(model).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ConfigError("{} has {} inputs ({}); the quick start handles one image input. Write a config "
                          "(see examples/factory.yaml) and pass --config.".format(
                              model, len(inputs), ", ".join(i.name for i in inputs)))
    dims = _dims(inputs[0])
    if len(dims) != 4:
        raise ConfigError("{}: input {!r} has shape {}; an image batch has 4 dimensions (N, C, H, W or N, H, W, "
                          "C). Write a config and pass --config.".format(model, inputs[0].name, dims))
    if dims[1] in (1, 3) and dims[3] not in (1, 3):
        layout, channels, height, width = "NCHW", dims[1], dims[2], dims[3]
    elif dims[3] in (1, 3):
        layout, channels, height, width = "NHWC", dims[3], dims[1], dims[2]
    else:
        raise ConfigError("{}: cannot tell the channel axis of input {!r} shape {}: neither axis 1 nor axis 3 is 1 "
                          "or 3. Set model.input.layout in a config and pass --config.".format(
                              model, inputs[0].name, dims))
    if not isinstance(height, int) or not isinstance(width, int) or height < 8 or width < 8:
        raise ConfigError("{}: input {!r} has no fixed height and width (shape {}). Set model.input.width and "
                          "height in a config and pass --config.".format(model, inputs[0].name, dims))
    color = "GRAY" if channels == 1 else "RGB"
    mean, std = ([0.5], [0.25]) if channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)
    output_name, out_dims = _probe_output(model, inputs[0].name, layout, channels, height, width)
    if len(out_dims) != 4:
        raise ConfigError("{}: output {!r} has shape {}; a segmentation output is (N, classes, H, W). Write a "
                          "config and pass --config.".format(model, output_name, out_dims))
    out_layout = "NCHW" if out_dims[1] <= out_dims[3] else "NHWC"
    classes = out_dims[1] if out_layout == "NCHW" else out_dims[3]
    if classes == 1:
        output = {"name": output_name, "layout": out_layout, "activation": "sigmoid", "classes": ["defect"],
                  "background": None}
        meaning = "1 channel: a sigmoid logit of class 'defect'"
    else:
        names = ["background"] + ["class{}".format(i) for i in range(1, classes)]
        output = {"name": output_name, "layout": out_layout, "activation": "softmax", "classes": names,
                  "background": "background"}
        meaning = "{} channels: softmax logits, channel 0 the background, the others class1..class{}".format(
            classes, classes - 1)
    section = {"path": str(model), "input": {"name": inputs[0].name, "width": width, "height": height,
                                             "layout": layout, "color": color, "scale": 1 / 255,
                                             "mean": mean, "std": std},
               "output": output}
    assumptions = [
        "input {!r}: {} {}x{} with {} channel(s), read from the model".format(
            inputs[0].name, layout, width, height, channels),
        "colour order {} (assumed; BGR models need model.input.color: BGR)".format(color),
        "normalisation: pixel/255, then (x - mean) / std with mean {} and std {} (assumed: ImageNet "
        "statistics; set model.input.mean/std if the model was trained otherwise)".format(mean, std),
        "resize: stretch to {}x{} (assumed)".format(width, height),
        "output {!r}: {} ({})".format(output_name, meaning, out_layout),
    ]
    return section, assumptions


def _dims(value: Any) -> List[Any]:
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _probe_output(model: Path, input_name: str, layout: str, channels: int, height: int,
                  width: int) -> Tuple[str, List[int]]:
    """The first output's name and its shape for one zero image (ONNX Runtime on the CPU)."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    shape = (1, channels, height, width) if layout == "NCHW" else (1, height, width, channels)
    dtype = np.float16 if meta.type == "tensor(float16)" else np.float32
    output = session.get_outputs()[0]
    result = session.run([output.name], {input_name: np.zeros(shape, dtype=dtype)})[0]
    return output.name, list(result.shape)
