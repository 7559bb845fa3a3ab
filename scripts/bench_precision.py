#!/usr/bin/env python3
"""INT8 vs FP32 CPU throughput with ONNX Runtime, and the accuracy gate's figures for FP16 and INT8.

Prepares each precision through the same path as `edge-agent build` (cache, gate), then feeds one
preprocessed synthetic frame to the backend in a tight loop. One run, no averaging across runs:
report the machine with the numbers.

    python scripts/bench_precision.py [--config FILE] [--frames 200] [--json]
"""

import argparse
import json
import platform
import sys
import time

from edge_agent.agent import open_backend
from edge_agent.config_loader import load_config
from edge_agent.engine import prepare
from edge_agent.preprocess import Preprocessor
from edge_agent.synthetic import SyntheticGenerator


def throughput(config, frames):
    with open_backend(config) as backend:
        Preprocessor(config.model.input)(SyntheticGenerator(seed=7).sample(0).image, backend.input_buffer[0])
        for _ in range(10):
            backend.infer(1)
        started = time.perf_counter()
        for _ in range(frames):
            backend.infer(1)
        return frames / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the demo model)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = load_config(args.config)
    result = {"machine": "{} {} cores, {}".format(platform.machine(), __import__("os").cpu_count(),
                                                   platform.processor() or platform.platform())}
    for precision in ("fp32", "fp16", "int8"):
        report = prepare(base, precision=precision).as_dict()
        config = base.model_copy(update={"backend": base.backend.model_copy(update={"precision": precision})})
        result[precision] = {"served": report["precision_served"], "fps": round(throughput(config, args.frames), 2),
                             "iou_agreement": report["gate"].get("iou_agreement"),
                             "max_probability_drift": report["gate"].get("max_probability_drift"),
                             "gate_passed": report["gate"].get("passed")}
    result["int8_over_fp32"] = round(result["int8"]["fps"] / result["fp32"]["fps"], 3)
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
