"""The `edge-agent` argument parser: every command, its options and their help texts.

`edge_agent.cli` dispatches on `args.command`; this module only describes the command line.
"""

import argparse
import math
from typing import Any, List

from edge_agent import __version__

DESCRIPTION = """\
edge-agent inspects parts on a production line: it runs a defect-segmentation model on camera
frames (TensorRT on NVIDIA Jetson, ONNX Runtime anywhere) and reports throughput, latency, memory
and defects. Start with `edge-agent demo`: the bundled model on a synthetic camera, no setup."""


PROMETHEUS_HELP = ("serve /metrics for Prometheus at HOST:PORT (e.g. 127.0.0.1:9464; overrides prometheus.listen); "
                   "labelled series and histogram buckets in base units")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more, got {}".format(text))
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:  # nan compares False with everything: it never stops
        raise argparse.ArgumentTypeError("must be greater than 0, got {}".format(text))
    return value


VIEW_HELP = ("serve the live view (latest frames with overlays, fps, latency, health, verdicts, save-as-calibration "
             "button) on HOST:PORT, e.g. 127.0.0.1:8090 (port 0 picks a free one; the URL is logged); overrides "
             "view.listen. A non-loopback host needs view.token")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="edge-agent " + __version__)
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="override logging.level from the config")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo", help="inspect synthetic parts with the bundled model (no setup needed)",
        description="Run the bundled demo model on the synthetic camera (or on --config's sources) and show "
                    "live fps, latency, memory and defects. Ctrl-C stops it and prints the summary.")
    demo.add_argument("--config", metavar="FILE", help="YAML config to use instead of the built-in demo settings")
    demo.add_argument("--frames", type=_positive_int, metavar="N", help="stop after N frames")
    demo.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")
    demo.add_argument("--mqtt", metavar="HOST[:PORT]",
                      help="publish telemetry (status, birth, metrics, defect events) to this MQTT broker "
                           "(port 1883 by default); watch with: mosquitto_sub -v -t '#'")
    demo.add_argument("--prometheus", metavar="HOST:PORT", help=PROMETHEUS_HELP)
    demo.add_argument("--json", action="store_true",
                      help="print one JSON summary on stdout at the end (frames, fps, latency_ms_p50/p95/p99, "
                           "defects, mask_iou, rss_mb, backend, precision) instead of the live line")
    demo.add_argument("--view", metavar="HOST:PORT", help=VIEW_HELP)

    run = commands.add_parser(
        "run", help="the daemon: inspect the configured sources until stopped",
        description="Run the agent with the given config until SIGINT or SIGTERM; SIGHUP reloads the "
                    "config (an invalid one is refused and the running one kept). This is what the systemd "
                    "service starts; it speaks systemd's notify protocol when $NOTIFY_SOCKET is set.")
    run.add_argument("--config", metavar="FILE", required=True, help="YAML config (e.g. /etc/edge-agent/config.yaml)")
    run.add_argument("--prometheus", metavar="HOST:PORT", help=PROMETHEUS_HELP)
    run.add_argument("--view", metavar="HOST:PORT", help=VIEW_HELP)

    inspect = commands.add_parser(
        "inspect", help="run the configured model over image files or a video; per-image results",
        description="Run the configured model (after the same model checks as `check`) over every image of a "
                    "folder or every frame of a video, and write OUT/results.jsonl: one line per image with file, "
                    "width, height, verdict (OK/NG), defects, latency_ms and regions (class, area_px, bbox [x, y, "
                    "w, h] in image pixels, score_max, score_mean). --overlays also writes OUT/overlays/<file>.jpg "
                    "(mask tint, boxes, class and score). Ends with a summary and the sanity watch's warnings "
                    "(e.g. nothing found at all: check the normalization). Needs no broker.")
    inspect.add_argument("--config", metavar="FILE", required=True, help="YAML config describing the model")
    what = inspect.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", metavar="DIR", help="folder of images (png, jpg, jpeg, bmp, tif, tiff)")
    what.add_argument("--video", metavar="FILE", help="video file (every frame is inspected)")
    inspect.add_argument("--out", metavar="DIR", default="inspect-out", help="output folder (inspect-out)")
    inspect.add_argument("--overlays", action="store_true", help="also write an annotated copy of each image")
    inspect.add_argument("--json", action="store_true",
                         help="print the summary as one JSON object (images, ng, ok, defects, seconds, "
                              "latency_ms_mean, results, overlays, warnings)")

    check = commands.add_parser(
        "check", help="validate a config and report the environment",
        description="The technician's doctor: validates the config and checks JetPack/L4T, Python, numpy/OpenCV, "
                    "TensorRT, CUDA, cuDNN, pycuda, power mode, jetson_clocks, jtop, cached engines, state/cache "
                    "directories, free memory against the budget, disk space, clock sync, every source (opened "
                    "and timed) and the MQTT broker (DNS, TCP, MQTT handshake with authentication). Each line is "
                    "pass, warn, fail or info with the fix in one sentence. Exits 1 when anything fails.")
    check.add_argument("--config", metavar="FILE", help="YAML config to validate (default: built-in demo settings)")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")

    bench = commands.add_parser(
        "bench", help="measure pipeline throughput: backend-only vs end to end, or many cameras (--sources)",
        description="Without --sources: feed one preprocessed batch to the backend in a tight loop, then run the "
                    "whole pipeline (video-file source, preprocess, infer, postprocess) on the same model, and print "
                    "both throughputs and their ratio. With --sources N: N video sources at --resolution, paced at "
                    "--fps, through the whole pipeline for --seconds; prints aggregate and per-source fps, latency "
                    "percentiles (grab to result), drops by reason, the batch-size histogram and CPU use. "
                    "scripts/bench_sources.py runs the scaling table (N = 1, 2, 4, 8, 10, 16).")
    bench.add_argument("--config", metavar="FILE", help="YAML config (default: the demo model)")
    bench.add_argument("--frames", type=_positive_int, default=300, metavar="N",
                       help="frames per measurement round (300)")
    bench.add_argument("--rounds", type=_positive_int, default=3, metavar="R",
                       help="alternating backend-only / end-to-end rounds; the medians are compared (3)")
    bench.add_argument("--sources", type=_positive_int, metavar="N",
                       help="many-camera mode: N sources playing a synthetic MJPG video in a loop")
    bench.add_argument("--resolution", type=_resolution, default=(1920, 1080), metavar="WxH",
                       help="with --sources: frame size (1920x1080)")
    bench.add_argument("--fps", type=float, default=30.0, metavar="F",
                       help="with --sources: pace of each source; 0 reads as fast as the pipeline takes (30)")
    bench.add_argument("--seconds", type=_positive_float, default=15.0, metavar="S",
                       help="with --sources: measured seconds after a 2 s warm-up (15)")
    bench.add_argument("--max-batch", type=_positive_int, metavar="B",
                       help="with --sources: pipeline.max_batch (default min(N, 8))")
    bench.add_argument("--json", action="store_true", help="print the result as one JSON object")

    build = commands.add_parser(
        "build", help="prepare the model: FP16/INT8 variant or TensorRT engine, cached and accuracy-gated",
        description="Build (or load from the cache) what the configured backend serves: the FP16 / INT8 ONNX "
                    "variant for ONNX Runtime, or a TensorRT engine built on this device in a child process. "
                    "Reduced precision must pass the accuracy gate against FP32 (IoU agreement >= "
                    "engine.gate.iou_floor), else it falls back INT8 -> FP16 -> FP32. `edge-agent run` goes "
                    "through the same path, so a build beforehand makes the first start take seconds.")
    build.add_argument("--config", metavar="FILE", help="YAML config (default: the demo model)")
    build.add_argument("--model", metavar="X.onnx",
                       help="build this ONNX model; without --config its input size, layout and classes are read "
                            "from the model and the rest assumed (the assumptions are printed)")
    build.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="override backend.precision")
    build.add_argument("--force", action="store_true", help="rebuild even when the cache holds a valid entry")
    build.add_argument("--json", action="store_true",
                       help="print one JSON object: backend, precision_requested, precision_served, cache "
                            "(hit|built|none), seconds, artifact, artifact_bytes, engine_memory_bytes, gate "
                            "{iou_agreement, max_probability_drift, passed, ...}, fallbacks")

    selftest = commands.add_parser(
        "selftest", help="acceptance test after installing: accuracy, speed and memory per precision",
        description="Build FP16 and INT8 engines for the model on this board (through the engine cache), run "
                    "the configured images (folder sources, else the gate's validation images, else synthetic parts) "
                    "and compare their defect masks with ONNX Runtime FP32, then measure "
                    "throughput, latency, memory and allocations after warm-up per precision. Prints a pass/fail "
                    "table (or --json) and says which checks could not run here (no TensorRT or GPU: the ONNX "
                    "Runtime parts still run). Exits 1 when a check fails.")
    selftest.add_argument("--config", metavar="FILE", help="YAML config (default: the demo model)")
    selftest.add_argument("--frames", type=_positive_int, default=16, metavar="N",
                          help="images compared with FP32 (16)")
    selftest.add_argument("--iterations", type=_positive_int, default=50, metavar="N",
                          help="timed inference calls per precision, at pipeline.max_batch (50)")
    selftest.add_argument("--iou-floor", type=float, default=0.95, metavar="X",
                          help="lowest defect-mask IoU against FP32 that passes (0.95)")
    selftest.add_argument("--require-gpu", action="store_true",
                          help="fail when the TensorRT checks cannot run (use on Jetson boards)")
    selftest.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    selftest.add_argument("--json", action="store_true", help="print the JSON report instead of the table")

    report = commands.add_parser(
        "report", help="FP32 vs FP16 vs INT8 on this machine: speed, memory, accuracy, as HTML/JSON/Markdown",
        description="Measure the FP32 reference (ONNX Runtime, standing for the original framework) and every "
                    "precision of every backend available here (ONNX Runtime FP16/INT8; TensorRT FP16/INT8 where "
                    "TensorRT exists) on your images: build time, latency p50/p95/p99 and throughput per batch "
                    "size, memory, CPU/GPU utilisation, mask IoU and defect-count agreement with FP32 and the "
                    "accuracy gate's verdict. Writes report.html (one self-contained page with charts), "
                    "report.json and report.md. Quick start: edge-agent report --model X.onnx --images DIR")
    report.add_argument("--config", metavar="FILE", help="YAML config (default: the demo model, or --model)")
    report.add_argument("--model", metavar="X.onnx", help="the model to report on; without --config its input and "
                                                          "output are read from the file and the rest assumed "
                                                          "(stated at the top of the report)")
    report.add_argument("--images", metavar="DIR", help="your images (PNG/JPEG/BMP/TIFF): accuracy and timing run "
                                                        "on them (default: the demo's synthetic parts)")
    report.add_argument("--calibration", metavar="DIR", help="INT8 calibration images (default: "
                                                             "engine.calibration.folder, else --images)")
    report.add_argument("--out", metavar="DIR", default="edge-agent-report",
                        help="where report.html, report.json and report.md go (./edge-agent-report)")
    report.add_argument("--batches", type=_batches, default=[1, 2, 4, 8], metavar="1,2,4,8",
                        help="batch sizes to time (1,2,4,8)")
    report.add_argument("--seconds", type=_positive_float, default=3.0, metavar="S",
                        help="timed seconds per variant and batch size, in 10 interleaved rounds (3)")
    report.add_argument("--sources", type=_batches, metavar="1,2,4,8,10,16",
                        help="also measure many cameras: N looping MJPG video sources at --sources-fps for each N "
                             "given, against one unpaced source (the scaling table of edge-agent bench --sources)")
    report.add_argument("--sources-resolution", type=_resolution, default=(1920, 1080), metavar="WxH",
                        help="frame size of those sources (1920x1080)")
    report.add_argument("--sources-fps", type=_positive_float, default=30.0, metavar="F",
                        help="pace of each of those sources (30)")
    report.add_argument("--json", action="store_true", help="print report.json on stdout instead of the table")

    deploy = commands.add_parser(
        "deploy", help="roll a new model out to this board's running agent and follow it",
        description="Hand a model to the agent on this board (the same path as an MQTT rollout, see docs/fleet.md): "
                    "it is downloaded (resumable) or copied, verified (size, SHA-256, optional Ed25519 signature), "
                    "built and gated in a low-priority child process while the old model keeps inspecting, then "
                    "swapped in between two batches; or rejected with the reason, the old model serving on. Prints "
                    "each state; exits 0 when active, 1 when rejected or rolled back, 4 when no running agent "
                    "picked the request up (it is then applied at the agent's next start).")
    deploy.add_argument("--config", metavar="FILE", help="the agent's YAML config (its state directory is used)")
    deploy.add_argument("--model", metavar="URL|FILE", required=True,
                        help="an ONNX file on this board, or an http(s):// URL the agent downloads")
    deploy.add_argument("--sha256", metavar="HEX", help="the model's SHA-256 (required for a URL; checked for a file)")
    deploy.add_argument("--size", type=_positive_int, metavar="BYTES", help="the model's size (required for a URL)")
    deploy.add_argument("--rollout-id", metavar="ID", help="names the rollout in reports (default: local-<time>)")
    deploy.add_argument("--name", help="a human name of the model (default: the file name)")
    deploy.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="serve at this precision")
    deploy.add_argument("--signature", metavar="HEX", help="Ed25519 signature of the model (when the board needs one)")
    deploy.add_argument("--no-wait", action="store_true", help="write the request and return at once")
    deploy.add_argument("--timeout", type=_positive_float, default=3600.0, metavar="S",
                        help="give up following after S seconds (3600); the rollout goes on")
    deploy.add_argument("--json", action="store_true", help="print each report as one JSON object")

    status = commands.add_parser(
        "status", help="show the model this board serves and its last rollout",
        description="Which model serves (from the config or from a rollout, with its SHA-256), the last rollout's "
                    "state and figures, and the models kept for rollback. Reads the agent's state directory.")
    status.add_argument("--config", metavar="FILE", help="the agent's YAML config (default: built-in demo settings)")
    status.add_argument("--json", action="store_true", help="print one JSON object")

    commands.add_parser("version", help="print the version", description="Print edge-agent's version.")
    return parser


def _resolution(text: str) -> Any:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) >= 32 and int(height) >= 32):
        raise argparse.ArgumentTypeError("give WIDTHxHEIGHT of at least 32x32, e.g. 1920x1080; got {!r}".format(text))
    return int(width), int(height)


def _batches(text: str) -> List[int]:
    from edge_agent.report.command import parse_batches

    return parse_batches(text)
