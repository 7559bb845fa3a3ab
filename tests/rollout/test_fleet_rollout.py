"""Rollouts to a running agent (`edge-agent run` in a subprocess) with real parts: mosquitto, an HTTP
server on loopback, the synthetic camera inspecting throughout, a frame log of every processed frame.

Done when: a rollout completes with 0 frames lost or repeated at the swap and a retained `active`
report naming the new model's hash; a model failing the gate leaves the old one serving with a
retained `rejected` report carrying the gate's figures.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from telemetry.conftest import broker, collector_factory  # noqa: F401
from telemetry.telemetry_helpers import Collector

from .model_server import ModelServer
from onnx_models import dark_spot_model

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "rollout" / "agent_harness.py"
SCHEMAS = ROOT / "docs" / "schemas"
BASE = "edge-agent/v1/plant-a/line-2/cell-7"
TERMINAL = ("active", "rejected", "rolled-back")


def sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    return {
        "old": dark_spot_model(tmp_path / "old.onnx"),
        "good": dark_spot_model(folder / "good.onnx", gain=25.0),  # agrees with the old model
        "inverted": dark_spot_model(folder / "inverted.onnx", gain=-20.0),  # marks bright pixels: fails the gate
        "crashing": dark_spot_model(folder / "crashing.onnx", gain=30.0),  # the harness breaks it at run time
        "folder": folder,
    }


def agent_yaml(tmp_path, models, port, **rollout):
    data = {
        "device": {"id": "cell-7", "site": "plant-a", "line": "line-2"},
        "model": {"path": str(models["old"]), "input": {"width": 64, "height": 64},
                  "output": {"classes": ["background", "dark"]}},
        # unpaced: the synthetic camera waits for the pipeline, so any missing index is a lost frame
        "sources": [{"type": "synthetic", "name": "cam0", "fps": 0, "width": 96, "height": 72}],
        "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, "metrics_interval_s": 1,
                 "reconnect_min_s": 1, "reconnect_max_s": 2},
        "paths": {"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache")},
        "rollout": dict({"download": {"min_free_mb": 0, "timeout_s": 5}, "max_fps_drop": 1.0,
                         "gate": {"recent_frames": 8}}, **rollout),
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Agent:
    def __init__(self, tmp_path, config, env=None):
        self.frame_log = tmp_path / "frames.log"
        self.log_path = tmp_path / "agent.log"
        environment = dict(os.environ, PYTHONPATH=str(ROOT), EA_TEST_FRAME_LOG=str(self.frame_log))
        environment.update(env or {})
        with open(self.log_path, "wb") as handle:
            self.process = subprocess.Popen([sys.executable, str(HARNESS), "run", "--config", str(config)],
                                            cwd=str(ROOT), env=environment, stdout=handle, stderr=subprocess.STDOUT)

    def frames(self):
        """[(index, model file)] in processing order."""
        if not self.frame_log.exists():
            return []
        rows = [line.split() for line in self.frame_log.read_text().splitlines()]
        return [(int(r[1]), r[2]) for r in rows if len(r) == 3]

    def wait_frames(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        while len(self.frames()) < count:
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, "the agent processed too few frames:\n" + self.log()
            time.sleep(0.1)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        return self.process.returncode


def publish_desired(port, payload):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="central", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(BASE + "/desired/deployment", json.dumps(payload), qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def request_for(server, path, rollout_id, **extra):
    return dict({"rollout_id": rollout_id, "url": server.url(path.name), "sha256": sha256(path),
                 "size": path.stat().st_size, "name": path.name}, **extra)


def reports_of(collector, rollout_id):
    with collector._lock:
        messages = list(collector.messages)
    return [r for r in (json.loads(p) for t, p, _ in messages if t == BASE + "/deployment")
            if r["rollout_id"] == rollout_id]


def wait_report(collector, rollout_id, states=TERMINAL, timeout=120):
    collector.wait_for(lambda c: any(r["state"] in states for r in reports_of(c, rollout_id)), timeout,
                       "deployment report {} in {}".format(rollout_id, states))
    return reports_of(collector, rollout_id)


def retained_report(port):
    """What a dashboard connecting now sees on …/deployment (retained), or None."""
    late = Collector(port, topic=BASE + "/deployment")
    try:
        late.wait_for(lambda c: c.messages, 10, "the retained deployment report")
        topic, payload, retain = late.messages[0]
        assert retain
        return json.loads(payload)
    finally:
        late.close()


def assert_contiguous(frames):
    indices = [i for i, _ in frames]
    assert indices == list(range(indices[0], indices[0] + len(indices))), "a frame was lost or repeated"


def segments(frames):
    """The models in the order they served, each once per continuous stretch."""
    out = []
    for _, model in frames:
        if not out or out[-1] != model:
            out.append(model)
    return out


def test_mqtt_rollout_swaps_without_losing_a_frame_and_a_failing_gate_is_rejected(
        tmp_path, broker, collector_factory, models):  # noqa: F811
    deployment_schema = json.loads((SCHEMAS / "mqtt-deployment.schema.json").read_text())
    request_schema = json.loads((SCHEMAS / "mqtt-desired-deployment.schema.json").read_text())
    collector = collector_factory(broker.port, topic=BASE + "/#")
    with ModelServer(models["folder"]) as server:
        agent = Agent(tmp_path, agent_yaml(tmp_path, models, broker.port))
        try:
            agent.wait_frames(100)
            # 1. a model that fails the gate: rejected with the figures, the old model serves on
            bad = request_for(server, models["inverted"], "r-bad")
            jsonschema.validate(bad, request_schema)
            publish_desired(broker.port, bad)
            reports = wait_report(collector, "r-bad")
            rejected = reports[-1]
            assert rejected["state"] == "rejected", reports
            assert "agreement with the serving model" in rejected["reason"]
            agreement = rejected["gate"]["agreement"]
            assert agreement["iou_agreement"] < agreement["floor"] == 0.5
            assert [r["state"] for r in reports][:2] == ["received", "downloading"]
            assert rejected["serving_sha256"] == sha256(models["old"])
            assert retained_report(broker.port)["state"] == "rejected"
            for report in reports:
                jsonschema.validate(report, deployment_schema)
            frames_after_reject = len(agent.frames())
            agent.wait_frames(frames_after_reject + 50)
            assert segments(agent.frames()) == ["old.onnx"]

            # 2. a good model, its first transfer cut mid-body: resumed, verified, built, gated, swapped
            # (published by the example script of docs/fleet.md, which waits for every board's report)
            good = models["good"]
            server.cut_after[good.name] = good.stat().st_size // 2
            script = subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "rollout_fleet.py"), "--port", str(broker.port),
                 "--broker", "127.0.0.1", "--site", "plant-a", "--url", server.url(good.name), "--file", str(good),
                 "--rollout-id", "r-good", "--discover-s", "1.5", "--timeout", "120"],
                capture_output=True, text=True, timeout=180)
            assert script.returncode == 0, script.stdout + script.stderr + agent.log()
            assert "1 of 1 board(s) active" in script.stdout and "line-2/cell-7" in script.stdout
            reports = wait_report(collector, "r-good")
            active = reports[-1]
            assert active["state"] == "active", active
            assert active["model_sha256"] == active["serving_sha256"] == sha256(good)
            states = [r["state"] for r in reports]
            for state in ("received", "downloading", "verifying", "preparing", "gating", "active"):
                assert state in states
            ranges = [r["range"] for r in server.requests if r["path"] == good.name]
            assert ranges == [None, "bytes={}-".format(good.stat().st_size // 2)]
            assert active["gate"]["agreement"]["iou_agreement"] >= 0.5
            retained = retained_report(broker.port)
            assert retained["state"] == "active" and retained["model_sha256"] == sha256(good)
            for report in reports:
                jsonschema.validate(report, deployment_schema)

            swapped_at = active["swapped_at_frame"]
            agent.wait_frames(swapped_at + 100)
            frames = agent.frames()
            assert_contiguous(frames)
            new_name = sha256(good) + ".onnx"
            assert segments(frames) == ["old.onnx", new_name]
            first_new = next(i for i, (_, m) in enumerate(frames) if m == new_name)
            assert first_new == swapped_at  # frames 0..swapped_at-1 by the old model, the rest by the new

            # the birth now names the new model
            collector.wait_for(lambda c: any(b["provenance"]["model_sha256"] == sha256(good)
                                             for b in c.json("/birth")), 20, "a birth naming the new model")
        finally:
            code = agent.stop()
        assert code == 0, agent.log()


def test_a_rollout_reaches_edge_agent_demo(tmp_path, broker, collector_factory, models):  # noqa: F811
    """`edge-agent demo --mqtt` takes rollouts like the service (the Done-when's "running demo agent")."""
    config = agent_yaml(tmp_path, models, broker.port)
    collector = collector_factory(broker.port, topic=BASE + "/#")
    with ModelServer(models["folder"]) as server, open(tmp_path / "demo.log", "wb") as log:
        demo = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "demo", "--config", str(config), "--mqtt",
                                 "127.0.0.1:{}".format(broker.port), "--duration", "120", "--json"],
                                cwd=str(ROOT), stdout=subprocess.PIPE, stderr=log)
        try:
            collector.wait_for(lambda c: c.json("/birth"), 30, "the demo's birth message")
            publish_desired(broker.port, request_for(server, models["good"], "r-demo"))
            active = wait_report(collector, "r-demo")[-1]
            assert active["state"] == "active", active
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                out, _ = demo.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                demo.send_signal(signal.SIGUSR1)  # the demo prints every thread's stack to its log
                time.sleep(2)
                demo.kill()
                raise AssertionError("the demo did not stop within 60 s of SIGINT; its log and stacks:\n" +
                                     (tmp_path / "demo.log").read_text()[-20000:]) from None
    assert demo.returncode == 0, (tmp_path / "demo.log").read_text()
    assert json.loads(out)["frames"] > active["swapped_at_frame"] > 0
    assert retained_report(broker.port)["model_sha256"] == sha256(models["good"])
