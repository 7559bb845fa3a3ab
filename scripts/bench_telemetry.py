#!/usr/bin/env python3
"""Telemetry benchmark, one run, three figures (docs/benchmarks.md, "Telemetry"):

1. messages/s the publisher sustains through the SQLite outbox to a local mosquitto (write, send,
   PUBACK, delete), live and when draining a backlog;
2. outbox growth per hour of broker outage at the default metrics interval (measured message
   sizes and the measured defect-event rate of the configured model and source);
3. frame rate with the broker up versus down, same process, sources unpaced.

Needs mosquitto (scripts/test.sh installs it). Example:
    python scripts/bench_telemetry.py --config my.yaml --phase-s 15
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edge_agent.agent import running_pipeline  # noqa: E402
from edge_agent.config_loader import load_config  # noqa: E402
from edge_agent.metrics import Registry  # noqa: E402
from edge_agent.pipeline import InferenceResult  # noqa: E402
from edge_agent.postprocess import DefectRegion  # noqa: E402
from edge_agent.preprocess import Geometry  # noqa: E402
from edge_agent.sources import Frame  # noqa: E402
from edge_agent.telemetry import open_telemetry, pipeline_facts  # noqa: E402
from edge_agent.telemetry.sink import Telemetry  # noqa: E402


class Mosquitto:
    def __init__(self, folder: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.conf = folder / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n{}log_dest none\n"
                             .format(self.port, user))
        self.proc = None

    def start(self) -> "Mosquitto":
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit("mosquitto did not start on port {}".format(self.port))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
            self.proc = None


def _config(args: argparse.Namespace, port: int, state: Path, **mqtt: Any) -> Any:
    section = {"enabled": True, "host": "127.0.0.1", "port": port, "reconnect_min_s": 1, "reconnect_max_s": 2,
               "event_queue_size": 1000000, "outbox_max_mb": 1024}
    section.update(mqtt)
    # verdicts off: one message per fake frame, as the figures in docs/benchmarks.md were measured
    return load_config(args.config, {"mqtt": section, "paths": {"state_dir": str(state)},
                                     "telemetry": {"verdicts": "none"}})


def _fake_result(index: int) -> InferenceResult:
    image = np.zeros((240, 320, 3), np.uint8)
    frame = Frame("cam0", index, time.time(), time.monotonic(), image, None)
    region = DefectRegion("scratch", 120, (10, 20, 30, 8), 0.93, 0.81)
    return InferenceResult(frame, [region], Geometry(1.0, 1.0, 0, 0, 0, 0, 320, 240), 5.0, 1)


def publisher_rate(args: argparse.Namespace, broker: Mosquitto, state: Path) -> Dict[str, float]:
    """Events through the outbox with the broker up (live), then a backlog drained after an outage."""
    results = {}
    for mode in ("live", "backlog"):
        folder = state / mode
        config = _config(args, broker.port, folder, metrics_interval_s=3600)
        if mode == "backlog":
            broker.stop()
        telemetry = Telemetry(config, Registry(), {"model_sha256": "0" * 64}).start()
        time.sleep(0.5)
        started = time.monotonic()
        for index in range(args.messages):
            telemetry.on_result(_fake_result(index))
        if mode == "backlog":
            while telemetry.outbox.rows < args.messages:
                time.sleep(0.05)
            broker.start()
            while not telemetry.health()[1].startswith("broker connected"):  # exclude the reconnect backoff
                time.sleep(0.005)
            started = time.monotonic()
        while telemetry.messages_acked < args.messages:
            time.sleep(0.01)
        results["{}_msgs_per_s".format(mode)] = round(args.messages / (time.monotonic() - started), 1)
        telemetry.close()
    return results


def frame_rates(args: argparse.Namespace, broker: Mosquitto, state: Path) -> Dict[str, float]:
    """One pipeline, default metrics interval: broker up for a phase, then down for a phase."""
    config = _config(args, broker.port, state / "pipeline")
    registry = Registry()
    stop = threading.Event()
    telemetry = open_telemetry(config, registry)
    with running_pipeline(config, registry, [telemetry]) as pipeline:
        telemetry.update_facts(pipeline_facts(config, pipeline))
        runner = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)
        runner.start()
        time.sleep(3)  # warm-up
        phases = {}
        for phase in ("up", "down"):
            if phase == "down":
                broker.stop()
                time.sleep(1)
            frames0, defects0 = pipeline.frames, registry.counter_total("defects")
            bytes0, started = telemetry.outbox.size_bytes, time.monotonic()
            time.sleep(args.phase_s)
            seconds = time.monotonic() - started
            phases[phase] = (pipeline.frames - frames0) / seconds
            if phase == "down":
                grown = telemetry.outbox.size_bytes - bytes0
                events_per_s = (registry.counter_total("defects") - defects0) / seconds
                sizes = dict((kind, avg) for kind, avg in telemetry.outbox.db.execute(
                    "SELECT kind, AVG(LENGTH(payload)) FROM outbox GROUP BY kind"))
        stop.set()
        runner.join()
    broker.start()
    telemetry.close(flush_timeout_s=30)
    interval = config.mqtt.metrics_interval_s
    metrics_bytes = sizes.get("metrics", 0.0)
    return {
        "fps_broker_up": round(phases["up"], 1),
        "fps_broker_down": round(phases["down"], 1),
        "fps_ratio_down_over_up": round(phases["down"] / phases["up"], 3),
        "defect_events_per_s": round(events_per_s, 1),
        "metrics_interval_s": interval,
        "metrics_message_bytes": round(metrics_bytes),
        "event_message_bytes": round(sizes.get("event", 0.0)),
        "outbox_growth_mb_per_h_metrics_only": round(3600 / interval * metrics_bytes / 2**20, 2),
        "outbox_growth_mb_per_h_with_events": round(grown / seconds * 3600 / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="agent YAML (model, sources); default: the built-in demo settings")
    parser.add_argument("--messages", type=int, default=20000, help="events pushed through the outbox (20000)")
    parser.add_argument("--phase-s", type=float, default=15.0, help="seconds per broker up / down phase (15)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        folder = Path(tmp)
        broker = Mosquitto(folder).start()
        try:
            result = publisher_rate(args, broker, folder)
            result.update(frame_rates(args, broker, folder))
        finally:
            broker.stop()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print("{:40s} {}".format(key, value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
