"""ONNX preparation on the CPU: model checks, the FP16 variant and the INT8 variants.

FP16 keeps inputs and outputs FP32 (the pipeline feeds float32) and casts the rest, for
TensorRT 11 (strongly typed) and ONNX Runtime. INT8 follows the backend that serves it (the
`recipe`): for TensorRT, ONNX Runtime's static quantization with the settings TensorRT accepts:
Q/DQ format, symmetric signed INT8 activations and weights (zero points 0), per-channel weights,
FP32 biases, and only Conv/MatMul/Gemm quantized, since badly placed Q/DQ pairs can make INT8
slower than FP16 there. For ONNX Runtime on the CPU, the U8S8 recipe of `ort_int8`.
"""

from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from edge_agent.errors import EngineError, ModelError

QUANTIZED_OP_TYPES = ["Conv", "MatMul", "Gemm"]
INT8_RECIPES = ("tensorrt", "onnxruntime")  # the backend that serves the INT8 model
CALIBRATION_METHODS = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
                       "minmax": CalibrationMethod.MinMax}
# Domains whose operators ONNX Runtime and TensorRT's ONNX parser implement; anything else is a custom op
_STANDARD_DOMAINS = ("", "ai.onnx")


def load_model(path: Path) -> onnx.ModelProto:
    """The checked ONNX model, or ModelError saying what is wrong with the file and how to fix it."""
    if not path.is_file():
        raise ModelError("model file {} does not exist. Point model.path at the ONNX file.".format(path))
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError... for a bad file
        raise ModelError("{} is not a valid ONNX model ({}: {}): truncated or not an ONNX model. Copy it again "
                         "or re-export it.".format(path, type(exc).__name__, _first_line(exc))) from None
    if not model.graph.node:
        raise ModelError("{} holds an empty graph. Re-export the model.".format(path))
    return model


def unsupported_operators(model: onnx.ModelProto) -> List[str]:
    """'node (op, domain)' for each node whose operator has no standard ONNX schema."""
    opsets = {o.domain: o.version for o in model.opset_import}
    problems = []
    for node in model.graph.node:
        domain = node.domain or ""
        known = domain in _STANDARD_DOMAINS and onnx.defs.has(node.op_type, opsets.get(domain, 1), domain)
        if not known:
            problems.append("node {!r} (operator {}{})".format(
                node.name or node.output[0], node.op_type, ", domain " + domain if domain else ""))
    return problems


def check_model(path: Path) -> onnx.ModelProto:
    model = load_model(path)
    problems = unsupported_operators(model)
    if problems:
        raise ModelError("{} uses operators outside the ONNX standard that the builders cannot run: {}. "
                         "Re-export the model with standard operators (or a newer opset).".format(
                             path, "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")))
    return model


def write_fp16(source: Path, target: Path) -> None:
    """Mixed FP16: every float tensor cast to FP16 except the graph inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = load_model(source)
    # keep_io_types: the pipeline feeds and reads float32; Resize/Range-like ops that need FP32 stay
    # FP32 through the converter's default block list.
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(converted, str(target))


class CountingReader(CalibrationDataReader):
    """Feeds preprocessed batches to the calibrator, counting them for progress."""

    def __init__(self, input_name: str, batches: Iterator[np.ndarray], on_batch: Callable[[int], None]) -> None:
        self.input_name = input_name
        self.batches = batches
        self.on_batch = on_batch
        self.count = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.count += 1
        self.on_batch(self.count)
        return {self.input_name: batch}

    def rewind(self) -> None:  # part of the reader protocol; a second pass is never asked for here
        return None


def write_int8(source: Path, target: Path, input_name: Optional[str], batches: Iterator[np.ndarray],
               method: str, on_batch: Callable[[int], None] = lambda n: None) -> int:
    """TensorRT's static Q/DQ quantization calibrated on `batches`; returns the number of images used."""
    model = load_model(source)
    name = input_name or model.graph.input[0].name
    opset = next((o.version for o in model.opset_import if o.domain in _STANDARD_DOMAINS), 0)
    if opset < 13:
        raise ModelError("{} has opset {}; per-channel INT8 for TensorRT needs opset 13 or newer. Re-export the "
                         "model with opset >= 13.".format(source, opset))
    reader = CountingReader(name, batches, on_batch)
    extra: Dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    try:
        quantize_static(str(source), str(target), reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=QUANTIZED_OP_TYPES, calibrate_method=CALIBRATION_METHODS[method],
                        extra_options=extra)
    except EngineError:
        raise
    except Exception as exc:  # quantize_static raises ValueError/RuntimeError/ORT errors
        raise quantization_error(source, exc) from None
    if reader.count == 0:
        raise EngineError("INT8 quantization of {} saw no calibration image.".format(source))
    return reader.count


def quantization_error(source: Path, exc: BaseException) -> EngineError:
    if isinstance(exc, EngineError):
        return exc
    return EngineError("INT8 quantization of {} failed: {}: {}".format(source, type(exc).__name__, _first_line(exc)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# Entry points run in the build child process (edge_agent.engine.isolation), hence plain arguments.

def produce_fp16(report: Callable[[str, Optional[float]], None], source: str, target: str) -> Dict[str, Any]:
    report("casting {} to mixed FP16".format(Path(source).name), None)
    write_fp16(Path(source), Path(target))
    return {}


def produce_int8(report: Callable[[str, Optional[float]], None], source: str, target: str,
                 config: Dict[str, Any], recipe: str = "tensorrt") -> Dict[str, Any]:
    from edge_agent.config import AgentConfig
    from edge_agent.engine.calibration import calibration_set

    agent = AgentConfig.model_validate(config)
    calibration = calibration_set(agent)
    total = calibration.size
    method = agent.engine.calibration.method
    if recipe == "onnxruntime":
        from edge_agent.engine.ort_int8 import write_int8_for_cpu

        model = load_model(Path(source))
        name = agent.model.input.name or model.graph.input[0].name
        details = write_int8_for_cpu(Path(source), Path(target), name,
                                     lambda: calibration.tensors(agent.model.input), total, method,
                                     getattr(agent.backend, "threads", 0), report)
        return dict(details, calibration_set=calibration.description)

    def on_batch(count: int) -> None:
        report("INT8 calibration ({}): image {}/{}".format(method, count, total), 0.9 * count / total)

    used = write_int8(Path(source), Path(target), agent.model.input.name, calibration.tensors(agent.model.input),
                      method, on_batch)
    report("INT8 calibration: computing ranges and writing the Q/DQ model", 0.95)
    return {"int8_recipe": "tensorrt-s8s8-symmetric", "quant_format": "QDQ", "calibration_images": used,
            "calibration_set": calibration.description}
