#!/usr/bin/env python3
"""Soak: run the daemon (`edge-agent run`) against a real mosquitto for N minutes with periodic
faults, and check that nothing grows and nothing is lost.

    python scripts/soak.py --minutes 60            # the figure in docs/benchmarks.md
    python scripts/soak.py --minutes 2 --json      # what CI runs (tests/faults/test_soak.py)

Faults, in turn, every --fault-every seconds: a broker outage (stop, wait, start), a SIGHUP with
an unusable config (refused: the old one keeps running), a SIGHUP with a changed valid config
(applied), a burst of SIGHUPs. Every 5 s it samples the agent's RSS, open files, threads and
outbox rows. At the end it stops the agent with SIGTERM and checks:

- exit status 0 within 60 s of the SIGTERM, and an empty outbox;
- every valid reload applied (the main thread still answers signals);
- metrics and defect-event `seq` continuous per session (0 lost);
- RSS growth between the first and the last quarter after warm-up below --max-rss-growth-pct;
- open files and threads flat (the last quarter's maximum within a small slack of the first's).

Exit status 1 when a check fails. The machine may be shared: RSS is compared by medians of
windows, not single samples.
"""

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "telemetry"))

from telemetry_helpers import Broker, Collector  # noqa: E402

from onnx_models import dark_spot_model  # noqa: E402

SAMPLE_S = 5.0
WARMUP_FRACTION = 0.2
FD_SLACK = 4
THREAD_SLACK = 3
STOP_S = 60.0  # SIGTERM to exit


def config(folder: Path, port: int, model: Path, fps: int) -> dict:
    return {
        "device": {"id": "soak", "site": "lab", "line": "l1"},
        "model": {"path": str(model), "input": {"width": 64, "height": 64},
                  "output": {"classes": ["background", "dark"]}, "thresholds": {"min_area_px": 150}},
        "sources": [{"type": "synthetic", "name": "cam0", "fps": fps, "width": 160, "height": 120}],
        "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, "metrics_interval_s": 1.0,
                 "reconnect_min_s": 1, "reconnect_max_s": 2},
        "paths": {"state_dir": str(folder / "state"), "cache_dir": str(folder / "cache")},
        "logging": {"level": "info"},
    }


def unit_environment() -> dict:
    """The `Environment=` settings of the systemd unit, so the soak runs the agent as the service does."""
    env = {}
    for line in (REPO / "systemd" / "edge-agent.service").read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line[len("Environment="):].partition("=")
            env[key] = value
    return env


def write(path: Path, data) -> None:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))


class Soak:
    def __init__(self, folder: Path, minutes: float, fault_every: float, fps: int) -> None:
        self.folder = folder
        self.seconds = minutes * 60.0
        self.fault_every = fault_every
        self.fps = fps
        self.samples = []  # (t, rss_mb, fds, threads, outbox_rows)
        self.faults = []  # (t, name)
        (folder / "broker").mkdir()
        self.broker = Broker(folder / "broker").start()
        self.model = dark_spot_model(folder / "dark.onnx")
        self.config_path = folder / "config.yaml"
        self.good = config(folder, self.broker.port, self.model, fps)
        write(self.config_path, self.good)
        self.collectors = [Collector(self.broker.port)]
        self.log_path = folder / "agent.log"
        self.agent = None
        self.stopped_at = 0.0

    def run(self) -> dict:
        with open(str(self.log_path), "wb") as log:
            self.agent = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run", "--config",
                                           str(self.config_path)], cwd=str(REPO), stdout=log,
                                          stderr=subprocess.STDOUT, env=dict(os.environ, **unit_environment()))
        process = psutil.Process(self.agent.pid)
        started = time.monotonic()
        next_sample, next_fault, fault_index = started, started + self.fault_every, 0
        last_report = started
        try:
            while time.monotonic() - started < self.seconds:
                if self.agent.poll() is not None:
                    raise RuntimeError("the agent exited with {} during the soak; see {}".format(
                        self.agent.returncode, self.log_path))
                now = time.monotonic()
                if now >= next_sample:
                    self.samples.append((now - started, process.memory_info().rss / 2**20, process.num_fds(),
                                         process.num_threads(), self.outbox_rows()))
                    next_sample += SAMPLE_S
                if now >= next_fault:
                    self.fault(fault_index)
                    fault_index += 1
                    next_fault = time.monotonic() + self.fault_every
                if now - last_report >= 60:
                    last = self.samples[-1]
                    print("soak: {:.0f} min, RSS {:.1f} MB, fds {}, threads {}, outbox {}, faults {}".format(
                        (now - started) / 60, last[1], last[2], last[3], last[4], len(self.faults)),
                        file=sys.stderr, flush=True)
                    last_report = now
                time.sleep(0.2)
        finally:
            if self.broker.proc is None:
                self.broker.start()
            self.stopped_at = time.monotonic()
            self.agent.send_signal(signal.SIGTERM)
            try:
                code = self.agent.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.agent.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack into agent.log
                time.sleep(1.0)
                self.agent.kill()
                self.agent.wait()
                code = None
            time.sleep(1.0)
            for collector in self.collectors:
                collector.close()
            self.broker.stop()
        return self.verdict(code)

    def outbox_rows(self) -> int:
        try:
            with sqlite3.connect("file:{}?mode=ro".format(self.folder / "state" / "outbox.sqlite"), uri=True,
                                 timeout=1) as db:
                return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except sqlite3.Error:
            return -1

    def fault(self, index: int) -> None:
        kind = ("broker-outage", "bad-reload", "good-reload", "sighup-burst")[index % 4]
        self.faults.append((time.monotonic(), kind))
        if kind == "broker-outage":
            self.broker.stop()
            time.sleep(4.0)
            self.broker.start()
            # a fresh subscriber before the agent reconnects (its backoff is 1-2 s): a subscriber's
            # own reconnect could come after the agent's backlog and miss it
            self.collectors.append(Collector(self.broker.port))
        elif kind == "bad-reload":
            write(self.config_path, dict(self.good, memory={"limit_mb": 20}))  # passes the schema, cannot load
            self.agent.send_signal(signal.SIGHUP)
            time.sleep(2.0)
            write(self.config_path, self.good)
        elif kind == "good-reload":  # a changed frame rate: the pipeline restarts, its shape stays the same
            fps = self.fps + 1 if self.good["sources"][0]["fps"] == self.fps else self.fps
            self.good = config(self.folder, self.broker.port, self.model, fps)
            write(self.config_path, self.good)
            self.agent.send_signal(signal.SIGHUP)
        else:
            write(self.config_path, "memory: {}\nmemory: {}\n")  # refused: a duplicate key
            for _ in range(5):
                self.agent.send_signal(signal.SIGHUP)
                time.sleep(0.1)
            time.sleep(1.0)
            write(self.config_path, self.good)

    def received(self, suffix: str) -> list:
        unique = {}
        for collector in self.collectors:
            for message in collector.json(suffix):
                unique[(message["session"], message["seq"])] = message
        return list(unique.values())

    def verdict(self, code: int) -> dict:
        metrics = self.received("/metrics")
        events = self.received("/events/defect")
        lost = {}
        for name, messages in (("metrics", metrics), ("events", events)):
            missing = 0
            for session in {m["session"] for m in messages}:
                numbers = sorted({m["seq"] for m in messages if m["session"] == session})
                missing += numbers[-1] - len(numbers)
            lost[name] = missing
        steady = [s for s in self.samples if s[0] >= self.seconds * WARMUP_FRACTION]
        quarter = max(1, len(steady) // 4)
        first, last = steady[:quarter], steady[-quarter:]
        rss_first = statistics.median(s[1] for s in first) if first else 0.0
        rss_last = statistics.median(s[1] for s in last) if last else 0.0
        growth = (rss_last - rss_first) / rss_first * 100.0 if rss_first else 0.0
        left = self.outbox_rows()
        log = self.log_path.read_text(errors="replace")
        result = {
            "minutes": round(self.seconds / 60, 2),
            "exit_code": code,
            "faults": len(self.faults),
            "fault_kinds": sorted({k for _, k in self.faults}),
            # one sent in the last seconds may still be pending at the stop
            "good_reloads": sum(1 for t, k in self.faults if k == "good-reload" and t < self.stopped_at - 5.0),
            "reloads_applied": log.count("reload: applying the new config"),
            "metrics_received": len(metrics),
            "events_received": len(events),
            "lost_metrics_seq": lost["metrics"],
            "lost_events_seq": lost["events"],
            "outbox_left": left,
            "rss_mb_first_quarter": round(rss_first, 1),
            "rss_mb_last_quarter": round(rss_last, 1),
            "rss_growth_pct": round(growth, 2),
            "fds_first_max": max((s[2] for s in first), default=0),
            "fds_last_max": max((s[2] for s in last), default=0),
            "threads_first_max": max((s[3] for s in first), default=0),
            "threads_last_max": max((s[3] for s in last), default=0),
            "outbox_max_rows": max((s[4] for s in self.samples), default=0),
            "samples": len(self.samples),
        }
        return result


def check(result: dict, max_rss_growth_pct: float) -> list:
    problems = []
    if result["exit_code"] is None:
        problems.append("the agent did not stop within {:.0f} s of SIGTERM; killed (its thread stacks are at the "
                        "end of agent.log)".format(STOP_S))
    elif result["exit_code"] != 0:
        problems.append("the agent exited with {}".format(result["exit_code"]))
    if result["reloads_applied"] < result["good_reloads"]:
        problems.append("{} of {} valid reloads were applied".format(result["reloads_applied"], result["good_reloads"]))
    if result["lost_metrics_seq"] or result["lost_events_seq"]:
        problems.append("lost seq: {} metrics, {} events".format(result["lost_metrics_seq"], result["lost_events_seq"]))
    if result["outbox_left"] != 0:
        problems.append("{} message(s) left in the outbox after a clean stop".format(result["outbox_left"]))
    if result["rss_growth_pct"] > max_rss_growth_pct:
        problems.append("RSS grew {:.2f} % (limit {} %)".format(result["rss_growth_pct"], max_rss_growth_pct))
    if result["fds_last_max"] > result["fds_first_max"] + FD_SLACK:
        problems.append("open files grew from {} to {}".format(result["fds_first_max"], result["fds_last_max"]))
    if result["threads_last_max"] > result["threads_first_max"] + THREAD_SLACK:
        problems.append("threads grew from {} to {}".format(result["threads_first_max"], result["threads_last_max"]))
    if result["metrics_received"] == 0:
        problems.append("no metrics received")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (10)")
    parser.add_argument("--fault-every", type=float, default=20.0, metavar="S", help="seconds between faults (20)")
    parser.add_argument("--fps", type=int, default=20, help="synthetic camera frame rate (20)")
    parser.add_argument("--max-rss-growth-pct", type=float, default=1.0,
                        help="fail above this RSS growth, first vs last quarter after warm-up (1.0)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (agent.log, broker log)")
    args = parser.parse_args()
    if args.minutes <= 0 or args.fault_every <= 0:
        parser.error("--minutes and --fault-every must be greater than 0")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ea-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    result = Soak(folder, args.minutes, args.fault_every, args.fps).run()
    problems = check(result, args.max_rss_growth_pct)
    result["ok"] = not problems
    result["problems"] = problems
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print("{:24s} {}".format(key, value))
    if not args.keep:
        import shutil

        shutil.rmtree(str(folder), ignore_errors=True)
    return 0 if not problems else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
