"""Does the live view (plus evidence and the jsonl sink) slow the frame loop? Runs the bundled demo
model on the synthetic camera (fps 0: as fast as it goes) for N frames without local sinks and with
all three, alternating rounds in one run (the machine may be shared), and prints the fps of each and
their ratio. The view is polled by a client thread twice a second, as the page does.

    .venv/bin/python scripts/bench_local_sinks.py [--frames 150] [--rounds 3]
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from edge_agent.agent import running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.local_sinks import open_local_sinks
from edge_agent.metrics import Registry
from edge_agent.view.state import ViewState, pipeline_health


def one_round(frames: int, with_sinks: bool, folder: Path) -> float:
    overrides = {"sources": [{"type": "synthetic", "name": "cam", "fps": 0, "seed": 1000}],
                 "paths": {"state_dir": str(folder)}}
    if with_sinks:
        overrides.update({"view": {"listen": "127.0.0.1:0"}, "evidence": {"enabled": True},
                          "sinks": {"jsonl": {"enabled": True}}})
    config = load_config(None, overrides)
    registry = Registry()
    holder = {}
    local = open_local_sinks(config, registry, ViewState(registry, "bench", lambda: pipeline_health(
        holder.get("p"), "running")))
    stop = threading.Event()
    poller = None
    if local.view is not None:
        base = local.view.url.split("?")[0]

        def poll() -> None:
            while not stop.wait(0.5):
                state = json.loads(urllib.request.urlopen(base + "api/state", timeout=5).read())
                if state["sources"]["cam"]["seq"]:
                    urllib.request.urlopen(base + "frame/cam.jpg", timeout=5).read()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
    try:
        with running_pipeline(config, registry, local.ordered(None)) as pipeline:
            holder["p"] = pipeline
            started = time.monotonic()
            pipeline.run(threading.Event(), max_frames=frames)
            return frames / (time.monotonic() - started)
    finally:
        stop.set()
        local.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain, local = [], []
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            plain.append(one_round(args.frames, False, Path(folder)))
            local.append(one_round(args.frames, True, Path(folder)))
            print("round {}: without local sinks {:.1f} fps, with view+evidence+jsonl {:.1f} fps".format(
                r + 1, plain[-1], local[-1]), file=sys.stderr)
    a, b = statistics.median(plain), statistics.median(local)
    print("without local sinks : {:7.1f} fps (median of {})".format(a, args.rounds))
    print("view+evidence+jsonl : {:7.1f} fps (median of {})".format(b, args.rounds))
    print("ratio               : {:7.3f}  (with / without)".format(b / a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
