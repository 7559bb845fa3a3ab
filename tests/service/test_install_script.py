"""scripts/install.sh and uninstall.sh into a staging root: dry-run, real, idempotent, never
overwriting the config. The real run reuses this test's virtual environment (--use-venv) instead
of pip-installing from PyPI."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install.sh"
UNINSTALL = ROOT / "scripts" / "uninstall.sh"
VENV = Path(sys.prefix)


def _run(script, *args, check=True):
    proc = subprocess.run(["bash", str(script)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120, cwd=str(ROOT))
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _tree(root: Path):
    return {str(p.relative_to(root)): (p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_symlink() else None,
                                       p.stat().st_mtime_ns if not p.is_symlink() else os.readlink(str(p)))
            for p in sorted(root.rglob("*"))}


def test_dry_run_prints_every_action_and_changes_nothing(tmp_path):
    target = tmp_path / "root"
    out = _run(INSTALL, "--dry-run", "--root", target).stdout
    assert not target.exists()
    assert "Python: 3." in out and "Jetson: no" in out and "CUDA:" in out and "TensorRT (Python):" in out
    for action in ("useradd --system", "-m venv --system-site-packages", "pip install",
                   "/etc/edge-agent/config.yaml", "/etc/systemd/system/edge-agent.service",
                   "systemctl enable edge-agent", "systemctl start edge-agent"):
        assert action in out, action
    assert "nothing was changed" in out


def test_real_install_into_a_root_is_idempotent_and_keeps_the_config(tmp_path):
    target = tmp_path / "root"
    first = _run(INSTALL, "--root", target, "--use-venv", VENV).stdout
    unit = target / "etc/systemd/system/edge-agent.service"
    assert unit.read_text() == (ROOT / "systemd/edge-agent.service").read_text()
    config = target / "etc/edge-agent/config.yaml"
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    assert "__DEVICE_ID__" not in config.read_text()
    assert (target / "opt/edge-agent/venv/bin/python").exists()
    assert os.readlink(str(target / "usr/local/bin/edge-agent")) == "/opt/edge-agent/venv/bin/edge-agent"
    assert "not run (staging root): useradd" in first  # nothing outside the root was touched
    assert "not run (staging root): systemctl enable edge-agent" in first

    config.write_text(config.read_text() + "# the technician's edit\n")
    before = _tree(target)
    second = _run(INSTALL, "--root", target, "--use-venv", VENV).stdout
    assert "0 change(s) made" in second, second
    assert _tree(target) == before  # byte for byte, mtimes included
    assert "kept as it is" in second

    # the installed command works from the staging root and reads the written config's syntax
    check = subprocess.run([str(target / "opt/edge-agent/venv/bin/edge-agent"), "--help"], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0

    # uninstall keeps config and data; --purge removes them
    kept = _run(UNINSTALL, "--root", target).stdout
    assert not unit.exists() and not (target / "opt/edge-agent").exists()
    assert config.exists() and "kept:" in kept
    assert VENV.exists()  # the venv symlink's target survives
    _run(UNINSTALL, "--root", target, "--purge")
    assert not config.exists()


def test_jetson_detection_from_the_root(tmp_path):
    target = tmp_path / "root"
    (target / "etc").mkdir(parents=True)
    (target / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n")
    out = _run(INSTALL, "--dry-run", "--root", target).stdout
    assert "Jetson: L4T R36.4.3 (JetPack 6" in out


def test_unknown_option_is_refused_with_help(tmp_path):
    proc = _run(INSTALL, "--frobnicate", check=False)
    assert proc.returncode == 2 and "unknown option '--frobnicate'" in proc.stderr
    assert "--dry-run" in _run(INSTALL, "--help").stdout
