"""INT8 for ONNX Runtime on the CPU: the recipe its kernels are fast on, format chosen by measurement.

TensorRT needs signed symmetric Q/DQ (`onnx_variants.write_int8`), but ONNX Runtime's x86 and Arm
kernels run unsigned activations with signed weights (U8S8) fastest, and only once the graph has
been cleaned by its own `quant_pre_process` (constant folding, shape inference) and every operator
it can keep in INT8 (Relu, Concat, Resize, pooling ...) is quantized, so that no Q/DQ pair sits
between two layers that could stay INT8. Whether the Q/DQ form (fused by ORT at load time) or the
QOperator form (QLinearConv ...) runs faster depends on the CPU and the ORT version, so both are
written from the same calibration and timed against each other on this machine; the faster one
is served and the choice, with both timings, goes into the cache manifest.
"""

import inspect
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import numpy as np

from edge_agent.errors import EngineError

log = logging.getLogger(__name__)
FORMATS = ("QDQ", "QOperator")
TIMED_CALLS = 30


def write_int8_for_cpu(source: Path, target: Path, input_name: str, batches: Callable[[], Iterator[np.ndarray]],
                       total: int, method: str, threads: int, report: Callable[[str, float], None]) -> Dict[str, Any]:
    """Write the faster of the Q/DQ and QOperator U8S8 models to `target`; return what was chosen and why.
    `batches()` starts a fresh pass over the `total` calibration samples."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edge_agent.engine.onnx_variants import CALIBRATION_METHODS, CountingReader, quantization_error

    with tempfile.TemporaryDirectory(prefix="edge-agent-int8-", dir=str(target.parent)) as folder:
        work = Path(folder)
        cleaned = work / "preprocessed.onnx"
        try:
            # symbolic shape inference needs sympy, which the Jetson does not need otherwise; ONNX's own
            # shape inference (still run) covers the fixed-shape CNNs served here
            quant_pre_process(str(source), str(cleaned), skip_symbolic_shape=True)
        except Exception as exc:  # ORT raises ValueError/RuntimeError/onnx errors for a model it cannot clean
            raise quantization_error(source, exc) from None
        candidates: Dict[str, Path] = {}
        # ORT >= 1.2x can keep the calibrated ranges in a file: the second format then reuses them
        # instead of running the calibration images again (older ORT: calibrate twice)
        ranges = {"calibration_cache_path": str(work / "ranges.json")} if "calibration_cache_path" in \
            inspect.signature(quantize_static).parameters else {}
        used = 0
        for index, fmt in enumerate(FORMATS):
            share = 0.8 if ranges else 0.85 / len(FORMATS)
            start = 0.0 if index == 0 else (0.8 if ranges else share)

            def on_batch(count: int, fmt: str = fmt, start: float = start, share: float = share) -> None:
                report("INT8 calibration ({}, {} U8S8): image {}/{}".format(method, fmt, count, total),
                       start + share * min(1.0, count / max(1, total)))

            reader = CountingReader(input_name, batches(), on_batch) if index == 0 or not ranges else None
            if reader is None:
                report("INT8: writing the {} U8S8 model from the same ranges".format(fmt), 0.85)
            candidates[fmt] = work / "{}.onnx".format(fmt)
            try:
                quantize_static(str(cleaned), str(candidates[fmt]), reader, quant_format=getattr(QuantFormat, fmt),
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                                calibrate_method=CALIBRATION_METHODS[method], **ranges)
            except Exception as exc:  # as above: the message names the model and the failing step
                raise quantization_error(source, exc) from None
            used = max(used, reader.count if reader is not None else 0)
        if used == 0:
            raise EngineError("INT8 quantization of {} saw no calibration image.".format(source))
        report("INT8: timing Q/DQ against QOperator on this CPU", 0.9)
        sample = next(batches())
        threads = threads or (os.cpu_count() or 1)
        # rounded before choosing, so the manifest's figures always name the chosen one as the faster
        timings = {fmt: round(t, 3) for fmt, t in time_formats(candidates, input_name, sample, threads).items()}
        chosen = min(timings, key=lambda fmt: timings[fmt])
        os.replace(str(candidates[chosen]), str(target))
    log.info("INT8 for ONNX Runtime: %s chosen (%s)", chosen,
             ", ".join("{} {:.2f} ms".format(f, t) for f, t in timings.items()))
    return {"int8_recipe": "onnxruntime-u8s8", "quant_format": chosen, "calibration_images": used,
            "format_latency_ms": timings,
            "format_timing": "median of {} alternating batch-1 calls each, {} thread(s)".format(TIMED_CALLS, threads)}


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
