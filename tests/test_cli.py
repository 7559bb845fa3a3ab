import json
import subprocess
import sys

import pytest

from edge_agent import __version__

from conftest import REPO


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "edge_agent.cli"] + list(args), capture_output=True,
                          text=True, cwd=str(REPO), timeout=timeout)


def test_version():
    proc = _cli("version")
    assert proc.returncode == 0 and proc.stdout.strip() == "edge-agent " + __version__


@pytest.mark.parametrize("command, words", [
    ([], ["demo", "run", "check", "bench", "version"]),
    (["demo"], ["--frames", "--duration", "--json", "--config", "mask_iou"]),
    (["run"], ["--config", "SIGTERM"]),
    (["check"], ["--config", "--json"]),
    (["bench"], ["--frames", "ratio"]),
])
def test_help_explains_every_command(command, words):
    proc = _cli(*(command + ["--help"]))
    assert proc.returncode == 0
    for word in words:
        assert word in proc.stdout


def test_demo_json_contract():
    """The issue's acceptance: 300 frames, mask IoU >= 0.7 against the synthetic ground truth."""
    proc = _cli("demo", "--frames", "300", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    for key in ("frames", "fps", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "defects", "mask_iou",
                "rss_mb", "backend", "precision"):
        assert key in summary, key
    assert summary["frames"] == 300
    assert summary["fps"] > 0
    assert 0 < summary["latency_ms_p50"] <= summary["latency_ms_p95"] <= summary["latency_ms_p99"]
    assert summary["defects"] > 0
    assert summary["mask_iou"] >= 0.7
    assert summary["backend"] == "onnxruntime" and summary["precision"] == "fp32"
    assert summary["rss_mb"] > 0


def test_demo_duration_stops_in_time():
    proc = _cli("demo", "--duration", "1.5", "--json")
    assert proc.returncode == 0, proc.stderr
    assert 1.4 <= json.loads(proc.stdout)["seconds"] < 3.0


def test_demo_with_a_broken_config_exits_2(write_config):
    proc = _cli("demo", "--config", str(write_config("sources: [{type: synthetic, fps: fast}]\n")))
    assert proc.returncode == 2
    assert "sources[0].fps" in proc.stderr and "Traceback" not in proc.stderr


def test_check_reports_the_environment_without_failing_here():
    proc = _cli("check", "--json")
    report = json.loads(proc.stdout)
    names = {c["name"]: c for c in report["checks"]}
    for name in ("config", "python", "numpy", "opencv", "onnxruntime", "onnx", "dependencies", "cpu", "jetpack"):
        assert name in names, name
    # off a Jetson the GPU stack is shown only where present; the jetpack line says the rest once
    for name in ("tensorrt", "pycuda", "gpu"):
        assert name in names or names["jetpack"]["status"] == "info", name
    assert names["config"]["status"] == "pass"
    assert names["onnxruntime"]["status"] == "pass"
    assert proc.returncode == (0 if report["ok"] else 1)
    assert "Traceback" not in proc.stderr


def test_check_fails_on_a_broken_config(write_config):
    proc = _cli("check", "--config", str(write_config({"memory": {"limit_mb": 1}})))
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "memory.limit_mb" in proc.stdout


def test_bench_prints_both_throughputs_and_the_ratio():
    proc = _cli("bench", "--frames", "40", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["backend_fps"] > 0 and result["pipeline_fps"] > 0
    assert result["ratio"] == pytest.approx(result["pipeline_fps"] / result["backend_fps"], rel=1e-3)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_demo_duration_must_be_a_finite_positive_number(value):
    proc = _cli("demo", "--duration", value, "--json", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--duration" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value, fragment", [
    ("localhost:notaport", "the port 'notaport' is not a number"),
    ("localhost:70000", "the port '70000' is not a number from 1 to 65535"),
    (":1883", "give a broker host name"),
    ("[fd00::5", "IPv6 address goes in brackets"),
])
def test_demo_mqtt_with_a_bad_port_is_one_clear_error(value, fragment):
    proc = _cli("demo", "--mqtt", value, "--frames", "1", timeout=60)
    assert proc.returncode == 1 and fragment in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_mqtt_override_accepts_host_port_and_ipv6():
    from edge_agent.cli import _mqtt_override

    assert _mqtt_override("broker")["mqtt"]["port"] == 1883
    assert _mqtt_override("10.0.0.5:8883")["mqtt"] == {"enabled": True, "host": "10.0.0.5", "port": 8883}
    assert _mqtt_override("[fd00::5]:1884")["mqtt"]["host"] == "fd00::5"
    assert _mqtt_override("fd00::5")["mqtt"] == {"enabled": True, "host": "fd00::5", "port": 1883}
