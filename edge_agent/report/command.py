"""`edge-agent report`: the command's one entry, from parsed arguments to the written report."""

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edge_agent.config import DEMO_MODEL, AgentConfig
from edge_agent.engine.calibration import ImageSet, list_images, validation_set
from edge_agent.engine.progress import ProgressPrinter
from edge_agent.errors import ConfigError
from edge_agent.json_stdout import print_document
from edge_agent.quickstart import config_for_model
from edge_agent.report import Plan, create_report, scaling
from edge_agent.report.render import SUMMARY_HEAD, summary_rows, write_all

log = logging.getLogger(__name__)
MAX_IMAGES = 64
# many short rounds: a burst of load on a shared machine then falls on every variant alike
ROUNDS = 10


def parse_batches(text: str) -> List[int]:
    try:
        batches = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("expected batch sizes like 1,2,4,8, got {!r}".format(text)) from None
    if not batches or batches[0] < 1 or batches[-1] > 64:
        raise argparse.ArgumentTypeError("batch sizes must be between 1 and 64, got {!r}".format(text))
    return batches


def run_report_command(args: argparse.Namespace) -> int:
    config, assumptions = _config(args)
    frames, described = _frames(config, args.images)
    plan = Plan(batches=args.batches, seconds=args.seconds, rounds=ROUNDS)
    with ProgressPrinter(sys.stderr) as progress:
        document, charts = create_report(config, frames, described, plan, assumptions, progress)
        if args.sources:
            document["scaling"] = scaling.measure_scaling(config, args.sources, args.sources_resolution,
                                                          args.sources_fps, args.seconds * 3, progress)
    paths = write_all(document, charts, Path(args.out))
    if args.json:
        print_document(document)
        return 0
    rows = summary_rows(document)
    measured = [r for r in rows if len(r) == len(SUMMARY_HEAD)]
    widths = [max(len(r[i]) for r in measured + [SUMMARY_HEAD]) for i in range(len(SUMMARY_HEAD))]
    for line in [SUMMARY_HEAD] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    if document.get("scaling"):
        print("\n" + scaling.title(document["scaling"]))
        for line in [scaling.HEAD] + scaling.cells(document["scaling"]):
            print("  ".join(line))
    print()
    for note in document["notes"]:
        print("note: " + note)
    print("\nwrote {}".format(", ".join(str(p) for p in paths.values())))
    return 0


def _config(args: argparse.Namespace) -> Tuple[AgentConfig, List[str]]:
    overrides: Dict[str, Any] = {}
    if args.calibration:
        overrides["engine"] = {"calibration": {"folder": str(args.calibration)}}
    if args.model:
        config, assumptions = config_for_model(Path(args.model), args.config, overrides)
    else:
        from edge_agent.config_loader import load_config

        config = load_config(args.config, overrides)
        assumptions = [] if args.config else ["no --config or --model: the bundled demo model"]
    calibration = config.engine.calibration
    if calibration.folder is None and args.images and config.model.path.resolve() != DEMO_MODEL.resolve():
        count = len(list_images(Path(args.images), "--images"))
        minimum = min(calibration.min_images, max(1, count // 2))
        config = config.model_copy(update={"engine": config.engine.model_copy(update={
            "calibration": calibration.model_copy(update={"folder": Path(args.images), "min_images": minimum})})})
        assumptions.append("INT8 is calibrated on the --images folder ({} images, some held out for the accuracy "
                           "gate); pass --calibration DIR with 100-500 other images for a production "
                           "calibration".format(count))
    return config, assumptions


def _frames(config: AgentConfig, images: Optional[str]) -> Tuple[List[np.ndarray], str]:
    if images:
        files = list_images(Path(images), "--images")
        step = max(1, len(files) // MAX_IMAGES)
        chosen = ImageSet(images, files=tuple(files[::step][:MAX_IMAGES]))
        described = images if chosen.size == len(files) else "{}, every {}th of {} images".format(
            images, step, len(files))
        return list(chosen.frames()), described
    demo = validation_set(config)
    if demo.size == 0:
        raise ConfigError("no images to compare on: pass --images DIR")
    return list(demo.frames()), demo.description
