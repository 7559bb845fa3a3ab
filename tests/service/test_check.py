"""`edge-agent check` on this machine (no Jetson, no GPU): warnings and infos, no failures,
no traceback; real failures (a missing camera, a broker that refuses) fail with a fix."""

import json
import subprocess
import sys

from edge_agent.check import collect, platform
from service.service_helpers import ROOT, config_data, write_yaml

STATUSES = {"pass", "warn", "fail", "info"}


def _check(config, *extra):
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", "check", "--config", str(config)] + list(extra),
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT))


def test_non_jetson_machine_gets_warnings_not_failures(short_tmp, model_path):
    config = write_yaml(short_tmp / "config.yaml", config_data(model_path))
    proc = _check(config, "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert proc.returncode == 0 and report["ok"], [c for c in report["checks"] if c["status"] == "fail"]
    assert {c["status"] for c in report["checks"]} <= STATUSES
    # off a Jetson: one INFO line, not a warning per missing GPU component
    assert checks["jetpack"]["status"] == "info" and "not a Jetson" in checks["jetpack"]["detail"]
    for name in ("tensorrt", "cuda", "cudnn", "pycuda", "gpu"):
        assert checks.get(name, {"status": "pass"})["status"] == "pass", checks[name]
    # a broken install would show here: version ranges and the binary modules
    assert checks["dependencies"]["status"] == "pass" and checks["onnx"]["status"] == "pass"
    assert "[ WARN" not in proc.stderr  # OpenCV's own warnings are silenced
    assert checks["config"]["status"] == "pass"
    assert checks["source cam0"]["status"] == "pass" and "fps" in checks["source cam0"]["detail"]
    for name in ("python", "numpy", "opencv", "onnxruntime", "clock", "state-dir", "cache-dir", "disk", "memory",
                 "engines", "broker"):
        assert name in checks, name
    for c in report["checks"]:
        if c["status"] in ("warn", "fail"):
            assert c["fix"], c  # every problem comes with its fix


def test_text_report_and_failures_set_the_exit_status(short_tmp, model_path):
    sources = [{"type": "synthetic", "name": "cam0"}, {"type": "camera", "name": "usb0", "device": "/dev/video-gone"}]
    config = write_yaml(short_tmp / "config.yaml", config_data(model_path, sources=sources))
    proc = _check(config)
    assert proc.returncode == 1
    assert "FAIL  source usb0" in proc.stdout and "does not exist" in proc.stdout
    assert "fix: check the cable" in proc.stdout
    assert "1 failed" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_invalid_config_fails_but_the_report_is_complete(short_tmp):
    config = short_tmp / "bad.yaml"
    config.write_text("pipeline:\n  max_bach: 2\n")
    proc = _check(config, "--json")
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert proc.returncode == 1 and checks["config"]["status"] == "fail"
    assert "max_batch" in checks["config"]["detail"]  # did-you-mean from the config loader
    assert "numpy" in checks and "clock" in checks


def test_on_a_jetson_a_missing_tensorrt_is_a_failure(monkeypatch, tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic, EABI: aarch64\n")
    monkeypatch.setattr(platform, "TEGRA_RELEASE", release)
    monkeypatch.setattr(platform, "_import", lambda name: (None, "ModuleNotFoundError: No module named " + name)
                        if name in ("tensorrt", "pycuda") else (__import__(name), ""))
    checks = {c.name: c for c in collect(None)}
    assert checks["jetpack"].status == "pass" and "L4T R36.4.3 (JetPack 6)" in checks["jetpack"].detail
    assert checks["tensorrt"].status == "fail" and "python3-libnvinfer" in checks["tensorrt"].fix
    assert checks["jtop"].status in ("warn", "pass")
