"""The shipped Node-RED flow runs for real (Node-RED from npm, installed once into .cache/node-red)
against a real broker and counts every verdict of a bounded `edge-agent demo` run."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from .telemetry_helpers import REPO, agent_config, free_port, start_agent, write_agent_config

FLOW = REPO / "docs" / "dashboards" / "node-red-edge-agent.json"
CACHE = REPO / ".cache" / "node-red"
RED = CACHE / "node_modules" / "node-red" / "red.js"
VERSION = "4.1.15"
FRAMES = 40


def _node_red():
    """red.js, installing Node-RED from npm into the cache the first time (a minute, once)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("node and npm are needed: run scripts/test.sh (it installs Debian's nodejs and npm)")
    if not RED.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(CACHE),
                               "node-red@" + VERSION], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and RED.exists(), "npm install node-red failed:\n" + done.stderr[-2000:]
    return RED


def _flow_for_test(broker_port, out_file):
    """The shipped flow, pointed at the test broker, with the verdict counter's output also written
    to a file (the shipped flow shows it in the debug sidebar, which a headless run cannot read)."""
    flow = json.loads(FLOW.read_text())
    for node in flow:
        if node["type"] == "mqtt-broker":
            node["port"] = str(broker_port)
        if node["id"] == "ea_verdict_count":
            node["wires"][0].append("test_file")
    flow.append({"id": "test_file", "type": "file", "z": "ea_tab", "name": "verdict counts", "filename": str(out_file),
                 "filenameType": "str", "appendNewline": True, "createDir": True, "overwriteFile": "false",
                 "encoding": "none", "wires": [[]]})
    return flow


def test_node_red_flow_counts_every_verdict_of_a_demo_run(tmp_path, broker, collector_factory):
    red = _node_red()
    user_dir = tmp_path / "node-red"
    user_dir.mkdir()
    out_file = tmp_path / "verdict-counts.jsonl"
    (user_dir / "flows.json").write_text(json.dumps(_flow_for_test(broker.port, out_file)))
    (user_dir / "settings.js").write_text(
        "module.exports = {uiHost: '127.0.0.1', uiPort: %d, flowFile: 'flows.json', credentialSecret: false,\n"
        "  logging: {console: {level: 'info'}}, editorTheme: {tours: false}};\n" % free_port())
    log = open(str(tmp_path / "node-red.log"), "w")
    proc = subprocess.Popen(["node", str(red), "--userDir", str(user_dir), "--settings", str(user_dir / "settings.js")],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, NODE_OPTIONS=""))
    try:
        deadline = time.monotonic() + 90
        while "Connected to broker" not in (tmp_path / "node-red.log").read_text():
            assert proc.poll() is None, (tmp_path / "node-red.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Node-RED did not connect:\n" + (tmp_path / "node-red.log").read_text()
            time.sleep(0.5)
        time.sleep(1)  # its subscriptions follow the connection
        collector = collector_factory(broker.port)
        data = agent_config(tmp_path, broker.port, fps=30)
        data["telemetry"] = {"verdicts": "all"}
        demo = start_agent(write_agent_config(tmp_path, data), tmp_path / "demo.log", command="demo",
                           extra=["--frames", str(FRAMES), "--json"])
        assert demo.wait(120) == 0, (tmp_path / "demo.log").read_text()[-2000:]
        demo.log_handle.close()
        collector.wait_for(lambda c: len(c.json("/events/verdict")) >= FRAMES, what="the demo's verdicts")
        published = collector.json("/events/verdict")
        deadline = time.monotonic() + 30
        while True:
            counts = [json.loads(line) for line in out_file.read_text().splitlines()] if out_file.exists() else []
            if len(counts) >= len(published) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert len(published) == FRAMES
    assert len(counts) == FRAMES, "Node-RED counted {} of {} verdicts".format(len(counts), FRAMES)
    last = counts[-1]
    ng = sum(1 for v in published if v["verdict"] == "NG")
    assert (last["ok"], last["ng"]) == (FRAMES - ng, ng)
    assert abs(last["reject_rate"] - ng / FRAMES) < 1e-9
    assert {c["frame_id"] for c in counts} == {v["frame_id"] for v in published}
