#!/usr/bin/env python3
"""Small defects at 1080p: tiling against one downscaled pass, accuracy and throughput, one run.

    python scripts/bench_tiling.py [--frames 12] [--rounds 2] [--tiles 320x240,640x480] [--overlap 32]
                                   [--json]

Frames: 1920x1080 mosaics of 320x240 synthetic inspection images (edge_agent.synthetic), so every
defect is drawn at the size the demo model was trained on: a 3 px scratch, a 7-26 px spot. In one
whole-frame pass the frame is shrunk 7.5 x 4.2 to the model's 256x256 input and those defects
shrink below a few pixels. A ground-truth defect counts as found when a reported region's box
matches its box with an intersection over union of at least 0.3 (any class; the same class is
counted too): a region that covers a defect and half the part around it does not count. Every
configuration runs through the agent's own path (folder source, pipeline, postprocess),
alternating round by round so that all see the same machine load; throughput is the median.
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from edge_agent.agent import running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.metrics import Registry
from edge_agent.pipeline import InferenceResult, ResultSink
from edge_agent.synthetic import SyntheticGenerator

WIDTH, HEIGHT, CELL = 1920, 1080, (320, 240)
Box = Tuple[int, int, int, int]


def mosaic(index: int) -> Tuple[np.ndarray, List[Tuple[str, Box]]]:
    """One 1920x1080 frame of 6x5 synthetic cells and its visible defects (class, box in frame pixels)."""
    generator = SyntheticGenerator(width=CELL[0], height=CELL[1], seed=4242)
    frame = np.empty((5 * CELL[1], 6 * CELL[0], 3), np.uint8)
    defects = []
    for row in range(5):
        for col in range(6):
            sample = generator.sample(index * 30 + row * 6 + col)
            x0, y0 = col * CELL[0], row * CELL[1]
            frame[y0:y0 + CELL[1], x0:x0 + CELL[0]] = sample.image
            for defect in sample.defects:
                x, y, w, h = defect.bbox
                if y0 + y + h <= HEIGHT:  # the bottom row is cut at 1080
                    defects.append((defect.cls, (x0 + x, y0 + y, w, h)))
    return frame[:HEIGHT], defects


class Regions(ResultSink):
    def __init__(self) -> None:
        self.by_frame: Dict[int, List[Tuple[str, Box]]] = {}

    def on_result(self, result: InferenceResult) -> None:
        self.by_frame[result.frame.index] = [(r.cls, r.bbox) for r in result.regions]


MATCH_IOU = 0.3


def _iou(a: Box, b: Box) -> float:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def run(folder: Path, tile: Optional[Tuple[int, int]], overlap: int, truth: List[List[Tuple[str, Box]]]) -> Dict:
    model_input: Dict[str, Any] = {}
    max_batch = 1
    if tile:
        model_input["tiling"] = {"tile": list(tile), "overlap": overlap}
        from edge_agent.tiling import TilingConfig

        max_batch = TilingConfig(tile=tile, overlap=overlap).tiles_for(WIDTH, HEIGHT)
    config = load_config(None, {"model": {"input": model_input}, "pipeline": {"max_batch": max_batch},
                                "sources": [{"type": "folder", "name": "line", "path": str(folder)}]})
    sink = Regions()
    with running_pipeline(config, Registry(), [sink]) as pipeline:
        started = time.perf_counter()
        frames = pipeline.run(threading.Event())
        seconds = time.perf_counter() - started
    found = same_class = total = reported = matched = 0
    for index, defects in enumerate(truth):
        regions = sink.by_frame.get(index, [])
        reported += len(regions)
        matched += sum(1 for _, r_box in regions if any(_iou(r_box, box) >= MATCH_IOU for _, box in defects))
        for cls, box in defects:
            total += 1
            hits = [r_cls for r_cls, r_box in regions if _iou(r_box, box) >= MATCH_IOU]
            found += bool(hits)
            same_class += cls in hits
    return {"tile": "{}x{}".format(*tile) if tile else "whole frame", "tiles_per_frame": max_batch,
            "frames": frames, "fps": frames / seconds, "defects": total, "found": found,
            "found_same_class": same_class, "regions_reported": reported, "regions_matching": matched}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=12, help="1080p frames (12)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; throughput medians (2)")
    parser.add_argument("--tiles", default="320x240,640x480", help="tile sizes to compare (320x240,640x480)")
    parser.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (32)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    tiles: List[Optional[Tuple[int, int]]] = [None] + [
        (int(w), int(h)) for w, h in (t.split("x") for t in args.tiles.split(","))]
    with tempfile.TemporaryDirectory(prefix="edge-agent-tiling-") as tmp:
        folder = Path(tmp)
        truth = []
        for index in range(args.frames):
            frame, defects = mosaic(index)
            cv2.imwrite(str(folder / "{:04d}.png".format(index)), frame)
            truth.append(defects)
        results: Dict[str, List[Dict]] = {}
        for _ in range(args.rounds):
            for tile in tiles:
                result = run(folder, tile, args.overlap, truth)
                results.setdefault(result["tile"], []).append(result)
    summary = []
    for rounds in results.values():
        row = dict(rounds[0])
        row["fps"] = round(statistics.median(r["fps"] for r in rounds), 2)
        summary.append(row)
    base = summary[0]
    for row in summary:
        row["found_ratio"] = round(row["found"] / max(1, base["found"]), 2)
        row["fps_ratio"] = round(row["fps"] / base["fps"], 3)
    if args.json:
        print(json.dumps(summary))
        return 0
    print("{} frames 1920x1080, {} defects drawn at training scale, {} round(s), overlap {} px".format(
        args.frames, base["defects"], args.rounds, args.overlap))
    print("| pass | tiles/frame | defects found (box IoU >= {}) | same class | regions reported (matching a "
          "defect) | found vs whole frame | fps | fps vs whole frame |".format(MATCH_IOU))
    print("|---|---|---|---|---|---|---|---|")
    for row in summary:
        print("| {tile} | {tiles_per_frame} | {found}/{defects} ({pct:.0f} %) | {found_same_class} "
              "| {regions_reported} ({regions_matching}) | {found_ratio:.2f}x | {fps:.2f} | {fps_ratio:.3f} |".format(
                  pct=100.0 * row["found"] / max(1, row["defects"]), **row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
