"""`edge-agent inspect`: run the configured model over image files or a video and write per-image
results (results.jsonl), optionally an annotated copy of each image, and a summary with the
sanity watch's warnings. Needs no broker and no camera: the way to try a model before the line."""

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2

from edge_agent.errors import EdgeAgentError
from edge_agent.json_stdout import print_document
from edge_agent.pipeline import InferenceResult, ResultSink
from edge_agent.sources.readers import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0


class InspectionWriter(ResultSink):
    """Writes each result's line to results.jsonl (and its overlay) as it comes: inspect is offline,
    so writing on the frame loop's thread costs throughput only, and a kill keeps what was written."""

    def __init__(self, out: Path, overlays: bool, classes: List[str], describe_file: Any,
                 progress: Optional[Any] = None) -> None:
        from edge_agent.inspection import class_colours

        self.out = out
        self.overlays = out / "overlays" if overlays else None
        self.colours = class_colours(classes)
        self.describe_file = describe_file
        self.progress = progress
        self.images = 0
        self.ng = 0
        self.by_class: Counter = Counter()
        self.latency_total = 0.0
        self._results = open(str(out / "results.jsonl"), "w", encoding="utf-8")
        if self.overlays is not None:
            self.overlays.mkdir(parents=True, exist_ok=True)

    def on_result(self, result: InferenceResult) -> None:
        from edge_agent.inspection import draw_overlay, result_record

        record = result_record(result)
        record["file"] = self.describe_file(result.frame)
        self._results.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._results.flush()
        self.images += 1
        self.ng += record["verdict"] == "NG"
        self.by_class.update(r.cls for r in result.regions)
        self.latency_total += result.latency_ms
        if self.overlays is not None:
            image = draw_overlay(result.frame.image, result.regions, self.colours, result.frame_mask())
            name = Path(record["file"]).name.replace("#", "-") + ".jpg"
            cv2.imwrite(str(self.overlays / name), image)
        if self.progress is not None:
            self.progress(self.images)

    def close(self) -> None:
        self._results.close()


def run_inspect(args: argparse.Namespace) -> int:
    from edge_agent.agent import running_pipeline
    from edge_agent.config_loader import load_config
    from edge_agent.metrics import Registry

    source, describe = _source(args)
    config = load_config(args.config, {"sources": [source]})
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeAgentError("--out {}: cannot create the folder ({}); pass a writable folder".format(
            out, exc.strerror or exc)) from None
    registry = Registry()
    progress = _Progress(sys.stderr, not args.json)
    writer = InspectionWriter(out, args.overlays, config.model.output.defect_classes, describe, progress)
    started = time.monotonic()
    try:
        with running_pipeline(config, registry, [writer]) as pipeline:
            pipeline.run(threading.Event())
            warnings = pipeline.sanity.summary() if pipeline.sanity is not None else []
    finally:
        writer.close()
        progress.done()
    if writer.images == 0:
        raise EdgeAgentError("no image could be decoded from {}; pass images OpenCV can read".format(
            args.images or args.video))
    seconds = time.monotonic() - started
    summary: Dict[str, Any] = {
        "images": writer.images, "ng": writer.ng, "ok": writer.images - writer.ng,
        "defects": dict(writer.by_class), "seconds": round(seconds, 2),
        "latency_ms_mean": round(writer.latency_total / writer.images, 2),
        "results": str(out / "results.jsonl"),
        "overlays": str(writer.overlays) if writer.overlays is not None else None, "warnings": warnings}
    if args.json:
        print_document(summary)  # the one JSON document on the real stdout (see edge_agent.json_stdout)
    else:
        print("{images} image(s) in {seconds:.1f} s: {ng} NG, {ok} OK; defects {classes}; mean latency "
              "{latency_ms_mean:.1f} ms".format(classes=", ".join("{} {}".format(k, v) for k, v in sorted(
                  writer.by_class.items())) or "none", **summary))
        print("results: {}".format(summary["results"]))
        if summary["overlays"]:
            print("overlays: {}".format(summary["overlays"]))
        for line in warnings:
            print("WARN  {}".format(line))
    return 0


def _source(args: argparse.Namespace) -> Any:
    """The --images folder or the --video file as the only source, and how a frame names its file."""
    if args.images:
        folder = Path(args.images).resolve()
        if not folder.is_dir():
            raise EdgeAgentError("--images {}: not a folder; pass the folder that holds the images".format(
                args.images))
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            raise EdgeAgentError("--images {}: no image files ({}) in it".format(args.images,
                                                                                  ", ".join(IMAGE_SUFFIXES)))
        return ({"type": "folder", "name": "images", "path": str(folder)},
                lambda frame: os.path.relpath(frame.origin, str(folder)) if frame.origin else str(frame.index))
    video = Path(args.video).resolve()
    capture = cv2.VideoCapture(str(video))
    readable = video.is_file() and capture.isOpened()
    capture.release()
    if not readable:
        raise EdgeAgentError("--video {}: {}; pass a video file OpenCV can read (mp4, avi, mkv)".format(
            args.video, "cannot be opened" if video.is_file() else "no such file"))
    return ({"type": "video", "name": "video", "path": str(video)},
            lambda frame: "{}#{}".format(video.name, frame.index))


class _Progress:
    """'inspected N image(s)' on stderr every few seconds (in place on a terminal)."""

    def __init__(self, stream: Any, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last = time.monotonic()
        self._count = 0

    def __call__(self, count: int) -> None:
        self._count = count
        now = time.monotonic()
        if self.enabled and now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            self.stream.write(("\r" if self.tty else "") + "inspected {} image(s)".format(count) +
                              ("" if self.tty else "\n"))
            self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.tty and self._count:
            self.stream.write("\n")

