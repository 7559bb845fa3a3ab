"""systemd/edge-agent.service: `systemd-analyze verify` must print nothing (a misspelt directive
only warns and still exits 0, so any output is a failure)."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "edge-agent.service"
INSTALLED_EXEC = "/opt/edge-agent/venv/bin/edge-agent"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def _unit_for_verify(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at an edge-agent that exists here: verify checks the binary,
    and this machine has no /opt/edge-agent. Everything else is verified as shipped."""
    here = Path(sys.executable).parent / "edge-agent"
    binary = str(here) if here.exists() else shutil.which("true")
    text = UNIT.read_text()
    assert text.count("ExecStart=" + INSTALLED_EXEC) == 1
    copy = tmp_path / "edge-agent.service"
    copy.write_text(text.replace("ExecStart=" + INSTALLED_EXEC, "ExecStart=" + binary))
    return copy


@needs_analyze
def test_systemd_analyze_verify_prints_nothing(tmp_path):
    proc = subprocess.run(["systemd-analyze", "verify", str(_unit_for_verify(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr


@needs_analyze
def test_verify_catches_a_misspelt_directive(tmp_path):
    """The check above can fail: a typo produces output even though the exit status is 0."""
    unit = _unit_for_verify(tmp_path)
    unit.write_text(unit.read_text().replace("WatchdogSec=", "WatchDogSec="))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "WatchDogSec" in proc.stdout + proc.stderr


@needs_analyze
def test_security_exposure_stays_low(tmp_path):
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(_unit_for_verify(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    line = [x for x in proc.stdout.splitlines() if "Overall exposure level" in x][0]
    score = float(line.split(":")[1].split()[0])
    assert score <= 2.5, line  # 1.9 when written; hardening must not silently regress


def test_lifecycle_settings():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # keep the directives' case
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].startswith(INSTALLED_EXEC + " run --config /etc/edge-agent/config.yaml")
    # an unattended station never gives up, but a config error (exit 2) is not retried
    assert service["Restart"] == "always" and int(service["WatchdogSec"]) > 0
    assert unit["Unit"]["StartLimitIntervalSec"] == "0" and "StartLimitBurst" not in service
    assert service["RestartPreventExitStatus"].split() == ["2"]
    # CSI cameras: the Argus socket reaches the private /tmp, and the daemon serving it starts first
    assert service["PrivateTmp"] == "yes" and service["BindPaths"] == "-/tmp/argus_socket"
    assert "nvargus-daemon.service" in unit["Unit"]["After"].split()
    assert service["User"] == "edge-agent" and "video" in service["SupplementaryGroups"].split()
    for key in ("ConfigurationDirectory", "StateDirectory", "CacheDirectory"):
        assert service[key] == "edge-agent"
    assert "MemoryHigh" in service and "MemoryMax" in service
    # GPU and cameras stay reachable: nothing that restricts /dev
    for key in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock"):
        assert key not in service
