#!/usr/bin/env python3
"""Scaling table for many sources: N x WxH video sources at F fps, with an interleaved baseline.

    python scripts/bench_sources.py [--counts 1,2,4,8,10,16] [--resolution 1920x1080] [--fps 30]
                                    [--seconds 15] [--rounds 1] [--baseline REV] [--json]

Each measurement runs `edge-agent bench --sources N` (edge_agent/bench_sources.py) in a fresh
child process, in the order unpaced single source, then every N, round after round, so that all
of them share the machine's load. `--baseline REV` also runs the same measurement module against
the package as it was at git revision REV (checked out into a temporary worktree), interleaved
with ours, and prints the ratios. The goals compare with the single unpaced source of the same run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "edge_agent" / "bench_sources.py"

# run in the child: the measurement module of *this* checkout against whichever edge_agent is importable
CHILD = """
import importlib.util, json, sys, tempfile
from pathlib import Path
spec = importlib.util.spec_from_file_location("bench_sources_child", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
from edge_agent.config_loader import load_config
sources, width, height = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fps, seconds = float(sys.argv[5]), float(sys.argv[6])
video = bench.bench_video(Path(sys.argv[7]), width, height)
overrides = json.loads(sys.argv[9])
config = bench.source_config(load_config(None, overrides), video, sources, fps, int(sys.argv[8]) or None)
print(json.dumps(bench.measure(config, seconds)))
"""


def measure(python: str, path: Optional[Path], sources: int, resolution: str, fps: float, seconds: float,
            folder: Path, max_batch: int, overrides: Dict[str, Any]) -> Dict[str, Any]:
    width, height = resolution.split("x")
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    command = [python, "-c", CHILD, str(MODULE), str(sources), width, height, str(fps), str(seconds), str(folder),
               str(max_batch), json.dumps(overrides)]
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, cwd=str(path or REPO),
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,2,4,8,10,16", help="source counts (1,2,4,8,10,16)")
    parser.add_argument("--resolution", default="1920x1080", help="frame size WxH (1920x1080)")
    parser.add_argument("--fps", type=float, default=30.0, help="pace of every source (30)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run (15)")
    parser.add_argument("--max-batch", type=int, default=0, help="pipeline.max_batch (default: min(N, 8))")
    parser.add_argument("--latency-target-ms", type=float, help="pipeline.latency_target_ms of ours (default: "
                        "the config's default; 0 fills batches up to max_batch)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds over all counts; medians are reported (1)")
    parser.add_argument("--baseline", metavar="REV", help="also measure git revision REV, interleaved")
    parser.add_argument("--json", action="store_true", help="print all measurements as JSON")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    runs = [("unpaced", 1, 0.0)] + [("{}".format(n), n, args.fps) for n in counts]
    results: Dict[str, Dict[str, List[Dict[str, Any]]]] = {"ours": {}, "baseline": {}}
    with tempfile.TemporaryDirectory(prefix="edge-agent-scaling-") as tmp:
        folder = Path(tmp)
        trees = {"ours": None}
        if args.baseline:
            base = folder / "baseline"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline],
                           check=True, stdout=subprocess.DEVNULL)
            trees["baseline"] = base
        try:
            for round_index in range(args.rounds):
                for label, n, fps in runs:
                    for which, tree in trees.items():
                        print("round {} {:8s} {:>8s} source(s) ...".format(round_index + 1, which, label),
                              file=sys.stderr, flush=True)
                        overrides = {} if tree is not None or args.latency_target_ms is None else {
                            "pipeline": {"latency_target_ms": args.latency_target_ms}}
                        result = measure(sys.executable, tree, n, args.resolution, fps, args.seconds, folder,
                                         args.max_batch, overrides)
                        results[which].setdefault(label, []).append(result)
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder / "baseline")],
                               check=False)
    if args.json:
        print(json.dumps(results))
    else:
        print(table(results, runs, args))
    return 0


def _median(rows: List[Dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def table(results: Dict[str, Dict[str, List[Dict[str, Any]]]], runs: List[Any], args: argparse.Namespace) -> str:
    target = "default" if args.latency_target_ms is None else "{:g} ms".format(args.latency_target_ms)
    lines = ["{} sources at {:g} fps, {} s per run, {} round(s), max_batch {}, latency target {}; ratio = aggregate / "
             "single unpaced source of the same version".format(args.resolution, args.fps, args.seconds, args.rounds,
                                                                args.max_batch or "min(N, 8)", target), "",
        "| version | sources | aggregate fps | ratio | slowest / fastest source | p50 / p99 latency | dropped "
        "(shed) | batch sizes | agent CPU (% of a core) | frames per agent CPU-second |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for which, by_label in results.items():
        if not by_label:
            continue
        single = _median(by_label["unpaced"], "fps")
        for label, _, _ in runs:
            rows = by_label[label]
            last = rows[-1]
            shed = sum(r["dropped_by_reason"].get("shed", 0) for r in rows)
            lines.append("| {} | {} | {:.1f} | {:.2f} | {:.1f} / {:.1f} ({:.2f}) | {:.0f} / {:.0f} ms | {} ({}) | {} | "
                         "{:.0f} | {:.1f} |".format(
                             which, "1, unpaced" if label == "unpaced" else label, _median(rows, "fps"),
                             _median(rows, "fps") / single, _median(rows, "fps_min_source"),
                             _median(rows, "fps_max_source"), _median(rows, "fairness"),
                             _median(rows, "latency_ms_p50"), _median(rows, "latency_ms_p99"),
                             sum(r["dropped"] for r in rows), shed,
                             " ".join("{}:{}".format(k, v) for k, v in last["batch_sizes"].items()),
                             _median(rows, "cpu_process_percent"),
                             statistics.median(r["fps"] / max(r["cpu_process_percent"], 1e-6) * 100 for r in rows)))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
