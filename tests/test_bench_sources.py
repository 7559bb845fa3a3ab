"""`edge-agent bench --sources N`: the many-camera report from a real pipeline run."""

import json
import subprocess
import sys

from edge_agent.bench_sources import bench_video, format_report, measure, source_config
from edge_agent.config_loader import load_config

from conftest import REPO


def test_measure_reports_every_figure_and_accounts_for_every_frame(tmp_path, dark_model):
    config = load_config(None, {"model": {"path": str(dark_model), "input": {"width": 64, "height": 64},
                                          "output": {"classes": ["background", "dark"]}}})
    video = bench_video(tmp_path, 160, 120)
    result = measure(source_config(config, video, 3, 60.0, max_batch=2), seconds=1.0, warmup_s=0.3)
    assert result["sources"] == 3 and result["resolution"] == "160x120" and result["max_batch"] == 2
    assert set(result["per_source"]) == {"cam0", "cam1", "cam2"}
    assert result["fps"] > 0 and 0 < result["fairness"] <= 1
    assert result["fps"] == sum(s["fps"] for s in result["per_source"].values()) or abs(
        result["fps"] - sum(s["fps"] for s in result["per_source"].values())) < 0.1
    assert sum(int(k) * v for k, v in result["batch_sizes"].items()) == sum(
        s["frames"] for s in result["per_source"].values())
    assert set(result["batch_sizes"]) <= {"1", "2"}
    assert result["latency_ms_p50"] <= result["latency_ms_p99"]
    assert result["dropped"] == sum(result["dropped_by_reason"].values())
    assert result["cpu_process_percent"] > 0
    text = format_report(result)
    for words in ("aggregate", "latency", "dropped", "batch sizes", "CPU", "cam2"):
        assert words in text


def test_bench_sources_from_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "bench", "--sources", "2", "--resolution",
                           "160x120", "--fps", "20", "--seconds", "1", "--json"], capture_output=True, text=True,
                          cwd=str(REPO), timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["sources"] == 2 and result["max_batch"] == 2 and result["source_fps"] == 20
    assert 0 < result["fps"] <= 2 * 20 * 1.2  # paced: at most what the cameras deliver


def test_bench_rejects_a_bad_resolution():
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "bench", "--sources", "2", "--resolution",
                           "big"], capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert proc.returncode == 2 and "WIDTHxHEIGHT" in proc.stderr and "Traceback" not in proc.stderr
