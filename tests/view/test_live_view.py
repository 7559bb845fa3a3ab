"""The live view, through `edge-agent demo --view` as a technician starts it, in a real headless
Chromium: the page loads, the image updates, the numbers change, the calibration button saves the
frame; plus the token rule and the promise that the frame loop never waits for the view."""

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from headless_browser import HeadlessBrowser, find_chromium

from edge_agent.config_loader import load_config
from edge_agent.errors import ConfigError
from edge_agent.metrics import Registry
from edge_agent.pipeline import InferenceResult
from edge_agent.postprocess import DefectRegion
from edge_agent.preprocess import Geometry
from edge_agent.sources import Frame
from edge_agent.view import LiveView, ViewConfig

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "images" / "live-view.png"


def _start_demo(tmp_path, extra_view=None):
    config = {"device": {"id": "press-3-cam-a"},  # the bundled demo model on the synthetic camera
              "sources": [{"type": "synthetic", "name": "cam-a", "fps": 6, "seed": 1000, "width": 320,
                           "height": 240}],
              "paths": {"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache")},
              "view": dict({"max_fps": 4}, **(extra_view or {}))}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))  # YAML is a superset of JSON
    process = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "demo", "--config", str(path),
                                "--view", "127.0.0.1:0", "--duration", "120", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    url = None
    lines = []
    deadline = time.monotonic() + 90
    while url is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"live view on (http://\S+)", line)
        if match:
            url = match.group(1)
    if url is None:
        process.kill()
        raise AssertionError("no live view URL in the demo's log:\n" + "".join(lines))
    process.log_lines = lines
    drain = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)  # keep the pipe from filling
    drain.start()
    return process, url


def _stop(process):
    process.send_signal(2)
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(10)  # SIGUSR1: the demo prints every thread's stack
        time.sleep(2)
        process.kill()
        raise AssertionError("the demo did not stop within 30 s of SIGINT; its log and stacks:\n" +
                             "".join(process.log_lines[-200:])) from None
    return process.returncode, out


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed; scripts/test.sh installs Debian's "
                                                     "chromium package (apt-get install chromium)")
def test_the_page_loads_updates_and_saves_a_calibration_image(tmp_path):
    process, url = _start_demo(tmp_path)
    browser = None
    try:
        browser = HeadlessBrowser(tmp_path / "profile")
        browser.navigate(url)
        browser.wait_for("document.getElementById('img-cam-a') && +document.body.dataset.loads >= 1", 30)
        first = browser.evaluate("[document.getElementById('img-cam-a').src, "
                                 "document.getElementById('frames').textContent]")
        browser.wait_for("+document.body.dataset.loads >= 4", 30)  # the image keeps being replaced
        browser.wait_for("document.getElementById('frames').textContent !== '{}'".format(first[1]), 10)
        browser.wait_for("parseFloat(document.getElementById('fps').textContent) > 0", 10)
        now = browser.evaluate("[document.getElementById('img-cam-a').src, "
                               "document.getElementById('frames').textContent, "
                               "document.getElementById('img-cam-a').naturalWidth]")
        assert now[0] != first[0] and int(now[1]) > int(first[1])
        assert now[2] == 320  # the source's full frame, not a thumbnail
        assert browser.evaluate("document.getElementById('health').textContent") == "running"
        browser.wait_for("document.querySelectorAll('#verdicts tr').length >= 3", 10)
        assert float(browser.evaluate("document.getElementById('p50').textContent")) > 0

        browser.evaluate("document.getElementById('save-cam-a').click()")
        browser.wait_for("document.getElementById('saved').textContent === '1'", 10)
        (saved,) = (tmp_path / "state" / "calibration").glob("cam-a-*.png")
        assert saved.stat().st_size > 1000
        time.sleep(1.0)  # let the button's label and a fresh frame settle for the picture
        browser.screenshot(tmp_path / "live-view.png")
        if os.environ.get("EDGE_AGENT_UPDATE_SCREENSHOT"):
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            SCREENSHOT.write_bytes((tmp_path / "live-view.png").read_bytes())
        assert (tmp_path / "live-view.png").stat().st_size > 20000
    finally:
        if browser is not None:
            browser.close()
        code, out = _stop(process)
    assert code == 0
    assert json.loads(out)["frames"] > 5


def test_a_token_is_required_off_loopback_and_checked(tmp_path):
    with pytest.raises(ConfigError, match="view.listen 0.0.0.0:8090 is reachable from other machines: set view.token"):
        load_config(None, {"view": {"listen": "0.0.0.0:8090"}})
    config = ViewConfig(listen="127.0.0.1:0", token="s3cret-token")
    view = LiveView(config, ["cam"], ["dark"], Registry(), tmp_path / "cal").start()
    try:
        base = view.url.split("?")[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "api/state", timeout=5)
        assert refused.value.code == 403
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "api/state?token=wrong-token", timeout=5)
        state = json.loads(urllib.request.urlopen(base + "api/state?token=s3cret-token", timeout=5).read())
        assert state["sources"] == {"cam": {"seq": 0, "ts": 0.0, "index": -1, "defects": 0}}
    finally:
        view.close()


def _result(index, image):
    frame = Frame("cam", index, time.time(), time.monotonic(), image, None)
    region = DefectRegion("dark", 100, (10, 10, 10, 10), 0.9, 0.8)
    return InferenceResult(frame, [region], Geometry(1, 1, 0, 0, 0, 0, 64, 48), 5.0, 1)


def test_the_frame_loop_never_waits_for_the_view(tmp_path):
    registry = Registry()
    view = LiveView(ViewConfig(listen="127.0.0.1:0", max_fps=30), ["cam"], ["dark"], registry, tmp_path / "c")
    view.start()
    try:
        image = np.full((48, 64, 3), 200, np.uint8)
        with view._lock:  # the encoder holds the slot: the loop must skip, not wait
            done = threading.Event()
            threading.Thread(target=lambda: (view.on_result(_result(0, image)), done.set()), daemon=True).start()
            assert done.wait(2.0)
        assert registry.counter_total("view_frames_skipped") == 1
        time.sleep(0.05)
        view.on_result(_result(1, image))
        deadline = time.monotonic() + 5
        while view.jpeg("cam") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert view.jpeg("cam")[:2] == b"\xff\xd8"
        assert view.snapshot()["verdicts"][0]["index"] == 1 and len(view.snapshot()["verdicts"]) == 2
    finally:
        view.close()
