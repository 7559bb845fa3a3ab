"""INT8 against FP16 by measurement, where INT8 is not sure to be faster (TensorRT 11, strongly typed).

A strongly typed Q/DQ network keeps every op that is not quantized in FP32, so on TensorRT 11 an
INT8 engine can be slower than the FP16 one. When INT8 passed the gate on such a build, the FP16
engine is prepared too (built, cached and gated like any attempt), both are timed on the same
batch in alternating rounds, and the faster one that passed the gate serves. The verdict is stored
in the INT8 manifest with the FP16 fingerprint it was measured against, so a restart does not time
again; `force` does.
"""

import logging
import statistics
import time
from typing import TYPE_CHECKING, Any, Dict, List, Tuple

import numpy as np

from edge_agent.backends.base import PreparedModel
from edge_agent.engine.cache import CacheEntry
from edge_agent.engine.isolation import BuildFailed

if TYPE_CHECKING:
    from edge_agent.engine.trt_target import TensorRTTarget

log = logging.getLogger(__name__)
Attempt = Tuple[PreparedModel, str, Dict[str, Any], Dict[str, Any]]  # prepared, cache state, verdict, manifest


def faster_of_int8_and_fp16(target: "TensorRTTarget", int8: Attempt) -> Tuple[Attempt, Dict[str, Any]]:
    """(the attempt to serve, the speed record for the build report)."""
    prepared8, _, _, manifest8 = int8
    try:
        fp16 = target.attempt("fp16")
    except BuildFailed as exc:
        return int8, {"served": "int8", "why": "FP16 could not be built to compare with: {}".format(exc)}
    prepared16, _, verdict16, _ = fp16
    if not verdict16.get("passed"):
        return int8, {"served": "int8", "why": "FP16 was rejected by the accuracy gate"}
    stored = manifest8.get("speed")
    if not target.prep.force and stored and stored.get("fp16_fingerprint") == prepared16.fingerprint:
        speed = stored
    else:
        batch = target.config.pipeline.max_batch
        target.prep.progress("timing INT8 against FP16 (strongly typed INT8 keeps unquantized ops in FP32)", None)
        int8_ms, fp16_ms = time_engines(target.config, prepared8, prepared16)
        served = "fp16" if fp16_ms < int8_ms else "int8"
        why = ("INT8 took {:.3f} ms and FP16 {:.3f} ms per batch of {} here: a strongly typed INT8 network keeps "
               "every op that is not quantized in FP32, so FP16 serves").format(int8_ms, fp16_ms, batch) \
            if served == "fp16" else "INT8 took {:.3f} ms and FP16 {:.3f} ms per batch of {} here: INT8 is " \
            "faster and passed the gate".format(int8_ms, fp16_ms, batch)
        speed = {"int8_ms": round(int8_ms, 3), "fp16_ms": round(fp16_ms, 3), "batch": batch, "served": served,
                 "why": why, "fp16_fingerprint": prepared16.fingerprint}
        target.prep.cache.update_manifest(CacheEntry(prepared8.path, manifest8), speed=speed)
    log.info("precision by measurement: %s", speed["why"])
    return (fp16 if speed["served"] == "fp16" else int8), speed


def time_engines(config: Any, first: PreparedModel, second: PreparedModel, rounds: int = 5,
                 batches: int = 20) -> Tuple[float, float]:
    """Median milliseconds per batch of pipeline.max_batch for two engines, timed in alternating
    rounds on the same input (both open at once, so both see the same machine state)."""
    from edge_agent.backends import create_backend

    n = config.pipeline.max_batch
    with create_backend(first, config) as a, create_backend(second, config) as b, a.bind_thread(), b.bind_thread():
        data = np.random.default_rng(0).random(a.input_buffer[:n].shape).astype(a.input_buffer.dtype)
        times: List[List[float]] = [[], []]
        for backend in (a, b):
            for _ in range(max(1, backend.slots)):  # every ring slot holds the same batch
                backend.input_buffer[:n] = data
                backend.infer(n)
        for _ in range(rounds):
            for index, backend in enumerate((a, b)):
                started = time.perf_counter()
                for _ in range(batches):
                    backend.infer(n)
                times[index].append((time.perf_counter() - started) / batches * 1000.0)
    return statistics.median(times[0]), statistics.median(times[1])
