"""`edge-agent deploy` and `edge-agent status` as a technician types them, against a running agent
(no broker); the deployed model keeps serving after a restart; bad input gets one clear error."""

import json
import subprocess
import sys

import yaml

from edge_agent.rollout.request import request_schema

from .test_fleet_rollout import ROOT, SCHEMAS, Agent, assert_contiguous, segments, sha256
from onnx_models import dark_spot_model


def cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "edge_agent.cli"] + list(args), cwd=str(ROOT), capture_output=True,
                          text=True, timeout=timeout)


def local_config(tmp_path, old):
    data = {
        "model": {"path": str(old), "input": {"width": 64, "height": 64},
                  "output": {"classes": ["background", "dark"]}},
        "sources": [{"type": "synthetic", "name": "cam0", "width": 96, "height": 72}],
        "paths": {"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache")},
        "rollout": {"download": {"min_free_mb": 0}, "max_fps_drop": 1.0, "gate": {"recent_frames": 8}},
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_deploy_a_file_to_the_running_agent_then_status_and_restart(tmp_path):
    old = dark_spot_model(tmp_path / "old.onnx")
    new = dark_spot_model(tmp_path / "new.onnx", gain=25.0)
    config = local_config(tmp_path, old)
    agent = Agent(tmp_path, config)
    try:
        agent.wait_frames(50)
        done = cli("deploy", "--config", str(config), "--model", str(new), "--rollout-id", "line2-v7")
        assert done.returncode == 0, done.stdout + done.stderr + agent.log()
        assert "line2-v7: active" in done.stdout and sha256(new) in done.stdout
        assert "line2-v7: preparing" in done.stdout or "line2-v7: gating" in done.stdout
        status = cli("status", "--config", str(config), "--json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["serving"]["sha256"] == sha256(new) and report["serving"]["rollout_id"] == "line2-v7"
        assert report["kept"][0]["sha256"] == sha256(old)
        agent.wait_frames(json.loads(status.stdout)["last_report"]["swapped_at_frame"] + 30)
    finally:
        assert agent.stop() == 0, agent.log()
    frames = agent.frames()
    assert_contiguous(frames)
    assert segments(frames) == ["old.onnx", sha256(new) + ".onnx"]

    agent.frame_log.unlink()
    again = Agent(tmp_path, config)  # a restart serves the rolled-out model, not the configured one
    try:
        again.wait_frames(20)
    finally:
        again.stop()
    assert segments(again.frames()) == [sha256(new) + ".onnx"]
    text = cli("status", "--config", str(config))
    assert "rolled out as line2-v7" in text.stdout


def test_deploy_refuses_bad_input_with_one_clear_error(tmp_path):
    old = dark_spot_model(tmp_path / "old.onnx")
    config = local_config(tmp_path, old)
    wrong = cli("deploy", "--config", str(config), "--model", str(old), "--sha256", "ab" * 32)
    assert wrong.returncode != 0 and "does not match" in wrong.stderr and "Traceback" not in wrong.stderr
    url = cli("deploy", "--config", str(config), "--model", "http://127.0.0.1:9/m.onnx")
    assert url.returncode != 0 and "--sha256 and --size" in url.stderr and "Traceback" not in url.stderr
    missing = cli("deploy", "--config", str(config), "--model", str(tmp_path / "nope.onnx"))
    assert missing.returncode != 0 and "no such file" in missing.stderr


def test_the_published_request_schema_is_the_code_s():
    published = json.loads((SCHEMAS / "mqtt-desired-deployment.schema.json").read_text())
    generated = request_schema()
    published.pop("$id"), published.pop("description")
    assert published == json.loads(json.dumps(generated)), (
        "docs/schemas/mqtt-desired-deployment.schema.json is stale: regenerate it from "
        "edge_agent.rollout.request.request_schema() (see docs/fleet.md)")


class _ReportsInTurn:
    """The agent's report file as `_follow` reads it: each refresh shows the next state."""

    def __init__(self, states, rollout_id="r1"):
        self._reports = [{"rollout_id": rollout_id, "state": s} for s in states]
        self.report = None
        self.desired_path = "desired-deployment.json"

    def refresh(self):
        if self._reports:
            self.report = self._reports.pop(0)


def test_deploy_json_prints_one_document_with_every_state(capsys, monkeypatch):
    from edge_agent.rollout import deploy_command

    monkeypatch.setattr(deploy_command.time, "sleep", lambda s: None)
    store = _ReportsInTurn(["received", "downloading", "gating", "active"])
    assert deploy_command._follow(store, "r1", timeout_s=30, pickup_s=10, as_json=True) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)  # exactly one JSON document on stdout
    assert document["state"] == "active" and document["exit_status"] == 0
    assert document["states"] == ["received", "downloading", "gating", "active"]
    assert "r1: gating" in err  # progress for people goes to stderr

    rejected = _ReportsInTurn(["received", "rejected"])
    assert deploy_command._follow(rejected, "r1", timeout_s=30, pickup_s=10, as_json=False) == 1
    assert "r1: rejected" in capsys.readouterr().out
