"""INT8 for ONNX Runtime on the CPU: the recipe its kernels are fast on, variant chosen by measurement.

TensorRT needs signed symmetric Q/DQ (`onnx_variants.write_int8`), but ONNX Runtime's x86 and Arm
kernels run unsigned activations with signed weights (U8S8) fastest, and only once the graph has
been cleaned by its own `quant_pre_process` (constant folding, shape inference) and every operator
it can keep in INT8 (Relu, Concat, Resize, pooling, and here also the pixel shuffles
DepthToSpace/SpaceToDepth, which only move bytes) is quantized, so that no Q/DQ pair sits between
two layers that could stay INT8. Which variant runs fastest depends on the model, the CPU and the
ORT version, so these are written from the same calibration and timed against each other:

- `QDQ`: the Q/DQ form, fused by ORT at load time;
- `QDQ+float-input-conv`: the same with the convolution that reads the image kept in FP32 (three
  input channels make a poor INT8 GEMM, and it is the layer most sensitive to rounding);
- `QOperator`: QLinearConv and friends.

When the model ends in a pixel-shuffle head (a 1x1 convolution feeding DepthToSpace), the Q/DQ
variants are also written with that head as one FP32 transposed convolution
(`onnx_rewrites.shuffle_heads_as_transposed_convs`, exact), labelled `+transposed-conv-head`.

The fastest is served; the choice, with every timing, goes into the cache manifest.
"""

import contextlib
import inspect
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np
import onnx

from edge_agent.engine.onnx_rewrites import shuffle_heads_as_transposed_convs
from edge_agent.errors import EngineError

log = logging.getLogger(__name__)
TIMED_CALLS = 30
# part of the INT8 cache key: 2 = pixel shuffles in INT8 and the float-input-conv variant,
# 3 = the transposed-conv-head variants
CPU_INT8_REVISION = 3
HEAD_REWRITE = "+transposed-conv-head"
PIXEL_SHUFFLES = ("DepthToSpace", "SpaceToDepth")  # pure data movement: exact on uint8


def write_int8_for_cpu(source: Path, target: Path, input_name: str, batches: Callable[[], Iterator[np.ndarray]],
                       total: int, method: str, threads: int, report: Callable[[str, float], None]) -> Dict[str, Any]:
    """Write the fastest U8S8 variant (module docstring) to `target`; return what was chosen and why.
    `batches()` starts a fresh pass over the `total` calibration samples."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edge_agent.engine.onnx_variants import CALIBRATION_METHODS, CountingReader, load_model, quantization_error

    with tempfile.TemporaryDirectory(prefix="edge-agent-int8-", dir=str(target.parent)) as folder:
        work = Path(folder)
        cleaned = work / "preprocessed.onnx"
        try:
            # symbolic shape inference needs sympy, which the Jetson does not need otherwise; ONNX's own
            # shape inference (still run) covers the fixed-shape CNNs served here
            quant_pre_process(str(source), str(cleaned), skip_symbolic_shape=True)
        except Exception as exc:  # ORT raises ValueError/RuntimeError/onnx errors for a model it cannot clean
            raise quantization_error(source, exc) from None
        model = load_model(cleaned)
        if name_every_node(model):  # nodes are excluded from quantization by name
            onnx.save(model, str(cleaned))
        rewritten = onnx.ModelProto()
        rewritten.CopyFrom(model)
        head_nodes = shuffle_heads_as_transposed_convs(rewritten)
        if head_nodes:
            onnx.save(rewritten, str(work / "transposed-conv-head.onnx"))
        variants = candidate_variants(model, head_nodes)
        candidates: Dict[str, Path] = {}
        # ORT >= 1.2x can keep the calibrated ranges in a file: the other variants then reuse them
        # instead of running the calibration images again (older ORT: calibrate each time)
        ranges = {"calibration_cache_path": str(work / "ranges.json")} if "calibration_cache_path" in \
            inspect.signature(quantize_static).parameters else {}
        used = 0
        for index, (label, (fmt, float_nodes)) in enumerate(variants.items()):
            share = 0.8 if ranges else 0.85 / len(variants)
            start = 0.0 if index == 0 else (0.8 if ranges else share * index)

            def on_batch(count: int, label: str = label, start: float = start, share: float = share) -> None:
                report("INT8 calibration ({}, {} U8S8): image {}/{}".format(method, label, count, total),
                       start + share * min(1.0, count / max(1, total)))

            reader = CountingReader(input_name, batches(), on_batch) if index == 0 or not ranges else None
            if reader is None:
                report("INT8: writing the {} U8S8 model from the same ranges".format(label), 0.85)
            candidates[label] = work / "{}.onnx".format(label)
            try:
                given = work / "transposed-conv-head.onnx" if label.endswith(HEAD_REWRITE) else cleaned
                with pixel_shuffles_in_int8():
                    quantize_static(str(given), str(candidates[label]), reader,
                                    quant_format=getattr(QuantFormat, fmt), activation_type=QuantType.QUInt8,
                                    weight_type=QuantType.QInt8, per_channel=True,
                                    calibrate_method=CALIBRATION_METHODS[method], nodes_to_exclude=float_nodes,
                                    **ranges)
            except Exception as exc:  # as above: the message names the model and the failing step
                raise quantization_error(source, exc) from None
            used = max(used, reader.count if reader is not None else 0)
        if used == 0:
            raise EngineError("INT8 quantization of {} saw no calibration image.".format(source))
        report("INT8: timing {} on this CPU".format(", ".join(variants)), 0.9)
        sample = next(batches())
        threads = threads or (os.cpu_count() or 1)
        # rounded before choosing, so the manifest's figures always name the chosen one as the faster
        timings = {label: round(t, 3) for label, t in time_formats(candidates, input_name, sample, threads).items()}
        chosen = min(timings, key=lambda label: timings[label])
        os.replace(str(candidates[chosen]), str(target))
    log.info("INT8 for ONNX Runtime: %s chosen (%s)", chosen,
             ", ".join("{} {:.2f} ms".format(f, t) for f, t in timings.items()))
    return {"int8_recipe": "onnxruntime-u8s8", "variant": chosen, "quant_format": variants[chosen][0],
            "float_nodes": variants[chosen][1], "calibration_images": used, "format_latency_ms": timings,
            "format_timing": "median of {} alternating batch-1 calls each, {} thread(s)".format(TIMED_CALLS, threads)}


def name_every_node(model: Any) -> bool:
    """Give unnamed nodes unique names; True when any was renamed."""
    taken = {n.name for n in model.graph.node}
    renamed = False
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = "{}_{}".format(node.op_type, index)
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            renamed = True
    return renamed


def candidate_variants(model: Any, head_nodes: List[str]) -> Dict[str, Tuple[str, List[str]]]:
    """label -> (ORT quant format, names of the nodes kept in FP32). `head_nodes`: the nodes that
    `shuffle_heads_as_transposed_convs` added to a copy of `model` (none: no rewritten variants).
    The first variant is always of `model` as given, so that the ranges it calibrates cover every
    tensor the others quantize."""
    inputs = {i.name for i in model.graph.input}
    first_convs = [n.name for n in model.graph.node if n.op_type == "Conv" and n.input and n.input[0] in inputs]
    variants = {"QDQ": ("QDQ", [])}
    if first_convs:
        variants["QDQ+float-input-conv"] = ("QDQ", first_convs)
    variants["QOperator"] = ("QOperator", [])
    if head_nodes:
        for label, (fmt, float_nodes) in list(variants.items()):
            if fmt == "QDQ":  # ORT has no CPU kernel for an INT8 ConvTranspose: it stays FP32
                variants[label + HEAD_REWRITE] = (fmt, float_nodes + head_nodes)
    return variants


@contextlib.contextmanager
def pixel_shuffles_in_int8() -> Iterator[None]:
    """Let ORT's quantizer keep DepthToSpace/SpaceToDepth in INT8, as it does Transpose and Reshape
    (its registries leave them out, so a float shuffle costs a DQ, 4x the bytes and a Q). The
    registries are ORT's module-level tables; an ORT without them quantizes as before."""
    try:
        from onnxruntime.quantization import registry
        added: List[Tuple[Dict[str, Any], str]] = []
        for table, handler in ((registry.QDQRegistry, registry.QDQDirect8BitOp),
                               (registry.QLinearOpsRegistry, registry.Direct8BitOp)):
            for op in PIXEL_SHUFFLES:
                if op not in table:
                    table[op] = handler
                    added.append((table, op))
    except (ImportError, AttributeError):
        added = []
    try:
        yield
    finally:
        for table, op in added:
            del table[op]


def time_formats(models: Dict[str, Path], input_name: str, sample: np.ndarray, threads: int) -> Dict[str, float]:
    """Median batch-1 latency (ms) of each model; sessions are set up as the ONNX Runtime backend sets
    them up."""
    import onnxruntime as ort

    sessions = {}
    for fmt, path in models.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sessions[fmt] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {input_name: sample}
    samples: Dict[str, List[float]] = {fmt: [] for fmt in sessions}
    for session in sessions.values():
        session.run(None, feed)
    # one call of each in turn: a burst of load from elsewhere falls on both alike, and the median
    # of the per-call times ignores the calls it hit
    for _ in range(TIMED_CALLS):
        for fmt, session in sessions.items():
            started = time.perf_counter()
            session.run(None, feed)
            samples[fmt].append((time.perf_counter() - started) * 1000.0)
    return {fmt: statistics.median(values) for fmt, values in samples.items()}
