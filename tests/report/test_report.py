"""`edge-agent report` as a user types it: the quick start on a foreign model, the files it writes,
the page in a real headless Chromium, and the report without matplotlib."""

import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_agent.engine.calibration import write_demo_sets
from edge_agent.report.figures import COLOURS
from edge_agent.report.render import page

from conftest import REPO
from onnx_models import tiny_unet_model


@pytest.fixture(scope="module", name="quick_start")
def quick_start_fixture(tmp_path_factory):
    """One run of the quick start: a foreign 32x32 model, 12 images, batches 1 and 2, the many-sources
    table for 2 cameras, JSON on stdout."""
    folder = tmp_path_factory.mktemp("report")
    model = tiny_unet_model(folder / "customer.onnx")
    write_demo_sets(folder / "sets", calibration_count=12, validation_count=0)
    out = folder / "out"
    env = dict(os.environ, CACHE_DIRECTORY=str(folder / "cache"))
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "report", "--model", str(model), "--images",
                           str(folder / "sets" / "calibration"), "--batches", "1,2", "--seconds", "0.3",
                           "--sources", "2", "--sources-resolution", "320x240", "--sources-fps", "15",
                           "--out", str(out), "--json"], capture_output=True, text=True, cwd=str(REPO), env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), out, proc.stderr  # stdout is exactly one JSON document


def test_quick_start_states_its_assumptions_and_measures_every_cpu_precision(quick_start):
    document, out, _ = quick_start
    assumptions = " ".join(document["assumptions"])
    assert "NCHW 32x32 with 3 channel(s)" in assumptions and "ImageNet" in assumptions
    assert "INT8 is calibrated on the --images folder" in assumptions
    rows = {(r["backend"], r["precision"]): r for r in document["rows"]}
    for precision in ("fp32", "fp16", "int8"):
        row = rows[("onnxruntime", precision)]
        assert row["status"] == "measured", row
        assert set(row["batches"]) == {"1", "2"}
        for cell in row["batches"].values():
            assert cell["fps"] > 0 and 0 < cell["latency_ms_p50"] <= cell["latency_ms_p95"] <= cell["latency_ms_p99"]
        assert row["memory"]["host_held_mb"] > 0 and "cpu_util_pct" in row["utilisation"]
    for precision in ("fp16", "int8"):
        accuracy = rows[("onnxruntime", precision)]["accuracy"]
        assert 0 <= accuracy["mask_iou"] <= 1 and accuracy["images"] == 12
        assert 0 <= accuracy["defect_count_agreement"] <= 1
        assert rows[("onnxruntime", precision)]["gate"]["passed"] in (True, False)
    assert rows[("onnxruntime", "int8")]["gate"]["iou_agreement"] is not None
    if shutil.which("nvidia-smi") is None:  # this machine: no TensorRT, and the report says so
        assert rows[("tensorrt", "fp16")]["status"] == "not available"
        assert any(n.startswith("TensorRT: not measured. TensorRT is not available") for n in document["notes"])
        assert "TensorRT FP16" not in (out / "report.md").read_text().split("## Summary")[1]
    assert document["model"]["sha256"] and document["software"]["onnxruntime"]
    assert json.loads((out / "report.json").read_text())["rows"] == document["rows"]
    assert "| ONNX Runtime INT8 |" in (out / "report.md").read_text()


def test_the_many_sources_table_is_measured_against_one_unpaced_source(quick_start):
    document, out, _ = quick_start
    scaling = document["scaling"]
    assert scaling["resolution"] == "320x240" and scaling["source_fps"] == 15
    single, two = scaling["rows"]
    assert single["sources"] == "1, unpaced" and single["ratio"] == 1.0
    assert two["sources"] == "2" and two["ratio"] == pytest.approx(two["fps"] / single["fps"], abs=1e-3)
    assert 0 < two["fps"] <= 2 * 15 * 1.2  # two cameras at 15 fps cannot give more than they capture
    assert two["captured"] >= two["dropped"] >= 0
    assert "Many sources: 320x240 MJPG at 15 fps" in (out / "report.md").read_text()
    assert "id='scaling'" in (out / "report.html").read_text()


def test_the_page_is_one_self_contained_file(quick_start):
    _, out, _ = quick_start
    text = (out / "report.html").read_text()
    assert text.count("<svg") == 4 and "ONNX Runtime INT8" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|[^"'#>\s]+\.(css|js|png|svg))""", text)
    assert "<script" not in text and "@import" not in text
    assert not re.search(r"url\((?!#)", text)  # only references inside the page (SVG clip paths)


def test_chromium_renders_the_charts(quick_start, tmp_path):
    """A real headless browser opens the file offline; the screenshot must show the charts' colours."""
    _, out, _ = quick_start
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed: scripts/test.sh installs the Debian package 'chromium'")
    shot = tmp_path / "report.png"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1200,2600", "--screenshot=" + str(shot), (out / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (2600, 1200)
    for colour in COLOURS[:3]:  # the three measured variants' lines and bars
        bgr = np.array([int(colour[5:7], 16), int(colour[3:5], 16), int(colour[1:3], 16)])
        close = np.all(np.abs(image.astype(int) - bgr) <= 12, axis=2)
        assert close.sum() > 200, "colour {} hardly appears: the charts did not render".format(colour)


def test_without_matplotlib_the_report_says_charts_were_skipped(quick_start, monkeypatch):
    from edge_agent.report.figures import charts

    document, _, _ = quick_start
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    drawn, skipped = charts(document, {})
    assert drawn == [] and "matplotlib is not installed" in skipped
    text = page(dict(document, charts_skipped=skipped), drawn)
    assert "Charts were skipped: matplotlib is not installed" in text and "<svg" not in text
