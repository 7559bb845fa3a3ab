#!/usr/bin/env python3
"""The line's fps while a rollout builds and gates a candidate: bounded (build niceness + fps
governor, the defaults) vs unbounded (niceness 0, no governor), interleaved in one run.

The demo model serves on the synthetic camera (paced at --fps, or unpaced with --fps 0); the same
model is rolled out again and again under a new rollout id (the download is cached, the build
child runs the gate on recent frames each time), alternating the two settings. Each rollout's
report carries fps before the build, the median fps during it and the drop; the medians of the
drops are compared. Report the machine with the numbers (a shared machine changes them).

    python scripts/bench_rollout.py [--rounds 3] [--fps 25] [--json]
"""

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rollouts per setting (3)")
    parser.add_argument("--fps", type=float, default=25.0, help="camera rate; 0: unpaced (25)")
    parser.add_argument("--max-drop", type=float, default=0.2, help="rollout.max_fps_drop of the bounded runs (0.2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from edge_agent.agent import running_pipeline
    from edge_agent.config import DEMO_MODEL
    from edge_agent.config_loader import load_config
    from edge_agent.engine.cache import file_sha256, write_json_atomic
    from edge_agent.metrics import Registry
    from edge_agent.rollout.controller import Rollout

    folder = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    base = load_config(None, {
        "sources": [{"type": "synthetic", "name": "cam0", "fps": args.fps}],
        "paths": {"state_dir": str(folder / "state"), "cache_dir": str(folder / "cache")},
        "rollout": {"download": {"min_free_mb": 0}},
    })
    settings = {"bounded": {"build_nice": base.rollout.build_nice, "max_fps_drop": args.max_drop},
                "unbounded": {"build_nice": 0, "max_fps_drop": 1.0}}
    results = {name: [] for name in settings}
    request = {"url": str(DEMO_MODEL), "sha256": file_sha256(DEMO_MODEL), "size": DEMO_MODEL.stat().st_size}
    stop = threading.Event()
    with running_pipeline(base, Registry()) as pipeline:
        loop = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)
        loop.start()
        time.sleep(3.0)  # warm up
        for round_ in range(args.rounds):
            for name, overrides in settings.items():
                config = base.model_copy(update={"rollout": base.rollout.model_copy(update=overrides)})
                rollout = Rollout(config, config, pipeline).start()
                rollout_id = "{}-{}".format(name, round_)
                rollout.store.desired_path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(rollout.store.desired_path, dict(request, rollout_id=rollout_id))
                report = _wait(rollout, rollout_id)
                rollout.close()
                build = report.get("build", {})
                results[name].append(build)
                print("{:<10} round {}: {} | fps before {} during {} drop {} pauses {}".format(
                    name, round_, report["state"], build.get("fps_before"), build.get("fps_during_build"),
                    build.get("fps_drop"), build.get("build_pauses")), file=sys.stderr, flush=True)
        stop.set()
        loop.join(30)
    summary = {"machine": "{} {}, {} CPUs".format(platform.machine(), platform.processor() or "", _cpus()),
               "camera_fps": args.fps, "max_fps_drop": args.max_drop, "rounds": args.rounds}
    for name, builds in results.items():
        drops = [b["fps_drop"] for b in builds if b.get("fps_drop") is not None]
        summary[name] = {"fps_drop_median": round(statistics.median(drops), 4) if drops else None,
                         "fps_before_median": round(statistics.median(b["fps_before"] for b in builds), 2),
                         "fps_during_median": round(statistics.median(b["fps_during_build"] for b in builds
                                                                      if b.get("fps_during_build")), 2),
                         "pauses": sum(b.get("build_pauses", 0) for b in builds)}
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))
    return 0


def _wait(rollout, rollout_id, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = rollout.store.report
        if report and report.get("rollout_id") == rollout_id and report["state"] in ("active", "rejected"):
            return report
        time.sleep(0.2)
    raise SystemExit("rollout {} did not finish within {} s".format(rollout_id, timeout))


def _cpus():
    import os

    return os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
