"""scripts/install.sh and uninstall.sh into a staging root: dry-run, real, idempotent, never
overwriting the config. The real run reuses this test's virtual environment (--use-venv) instead
of pip-installing from PyPI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install.sh"
UNINSTALL = ROOT / "scripts" / "uninstall.sh"
VENV = Path(sys.prefix)


def _run(script, *args, check=True):
    proc = subprocess.run(["bash", str(script)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300, cwd=str(ROOT), stdin=subprocess.DEVNULL)
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


@pytest.mark.parametrize("cuda", [[], ["--cuda", "/nonexistent"]], ids=["with-nvcc-default", "without-nvcc"])
def test_real_install_into_a_root_is_idempotent_and_keeps_the_config(tmp_path, cuda):
    target = tmp_path / "root"
    first = _run(INSTALL, "--root", target, "--use-venv", VENV, *cuda).stdout
    assert "pycuda: skipped (not a Jetson" in first
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
    second = _run(INSTALL, "--root", target, "--use-venv", VENV, *cuda).stdout
    assert "0 change(s) made" in second, second
    assert _tree(target) == before  # byte for byte, mtimes included
    assert "kept as it is" in second

    # the installed command works from the staging root and reads the written config's syntax
    check = subprocess.run([str(target / "opt/edge-agent/venv/bin/edge-agent"), "--help"], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0

    # the memory drop-in follows the config's memory.limit_mb (edited, then install.sh again)
    memory = target / "etc/systemd/system/edge-agent.service.d/memory.conf"
    assert "limit_mb: 1500" in config.read_text()
    assert "MemoryMax=2524M" in memory.read_text()  # the config's 1500 MB + the runtime's 1024
    config.write_text(config.read_text().replace("limit_mb: 1500", "limit_mb: 6144"))
    third = _run(INSTALL, "--root", target, "--use-venv", VENV, *cuda).stdout
    assert "MemoryMax=7168M" in memory.read_text() and "1 change(s) made" in third, third

    # uninstall keeps config, data and the site's own override; --purge removes them after asking
    override = target / "etc/systemd/system/edge-agent.service.d/override.conf"
    override.write_text("[Service]\nEnvironment=SITE=1\n")
    kept = _run(UNINSTALL, "--root", target).stdout
    assert not unit.exists() and not (target / "opt/edge-agent").exists() and not memory.exists()
    assert config.exists() and "kept:" in kept and override.exists() and "your overrides: override.conf" in kept
    assert VENV.exists()  # the venv symlink's target survives
    refused = _run(UNINSTALL, "--root", target, "--purge", check=False)
    assert refused.returncode == 1 and "pass --yes" in refused.stderr and config.exists()
    _run(UNINSTALL, "--root", target, "--purge", "--yes")
    assert not config.exists() and not override.exists()


def test_purge_says_what_would_be_lost(tmp_path):
    import sqlite3

    target = tmp_path / "root"
    state = target / "var/lib/edge-agent"
    state.mkdir(parents=True)
    with sqlite3.connect(str(state / "outbox.sqlite")) as db:
        db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, payload BLOB)")
        db.executemany("INSERT INTO outbox (payload) VALUES (?)", [(b"x",)] * 3)
    engines = target / "var/cache/edge-agent/engines/defect_unet"
    engines.mkdir(parents=True)
    for name in ("fp16-abc.plan", "fp16-abc.plan.json", "int8-def.plan", "int8-def.plan.json"):
        (engines / name).write_text("x")
    out = _run(UNINSTALL, "--root", target, "--purge", "--dry-run").stdout
    assert "3 unsent telemetry message(s)" in out and "2 cached engine(s)" in out
    assert (state / "outbox.sqlite").exists()  # dry run: nothing deleted


def _jetson_root(target: Path) -> Path:
    (target / "etc").mkdir(parents=True)
    (target / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n")
    return target


def _fake_cuda(folder: Path) -> Path:
    """A CUDA toolkit as far as pycuda's prerequisites go: nvcc answers, curand.h exists."""
    (folder / "bin").mkdir(parents=True)
    (folder / "include").mkdir()
    (folder / "include/curand.h").write_text("/* test */\n")
    nvcc = folder / "bin/nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.6, V12.6.68'\n")
    nvcc.chmod(0o755)
    return folder


def test_jetson_detection_from_the_root(tmp_path):
    target = _jetson_root(tmp_path / "root")
    out = _run(INSTALL, "--dry-run", "--root", target, "--cuda", _fake_cuda(tmp_path / "cuda")).stdout
    assert "Jetson: L4T R36.4.3 (JetPack 6" in out
    assert "numpy<2" in out and "pycuda: will be built against" in out


def test_pycuda_is_only_built_on_l4t_or_when_asked(tmp_path):
    off_jetson = _run(INSTALL, "--dry-run", "--root", tmp_path / "a").stdout
    assert "pycuda: skipped (not a Jetson" in off_jetson and "pycuda>=" not in off_jetson
    asked = _run(INSTALL, "--dry-run", "--root", tmp_path / "b", "--pycuda", "--cuda", _fake_cuda(tmp_path / "cuda"))
    assert "pycuda: will be built against" in asked.stdout and "pycuda>=2022.1" in asked.stdout
    refused = _run(INSTALL, "--dry-run", "--root", _jetson_root(tmp_path / "c"), "--no-pycuda").stdout
    assert "pycuda: not built (--no-pycuda)" in refused and "pycuda>=" not in refused


def test_pycuda_prerequisites_are_checked_before_anything_changes(tmp_path):
    target = _jetson_root(tmp_path / "root")
    proc = _run(INSTALL, "--root", target, "--cuda", tmp_path / "no-cuda", check=False)
    assert proc.returncode == 1
    message = proc.stderr.strip()
    assert message.count("\n") == 0, message  # one sentence, no compiler output
    assert "pycuda cannot be built here: it needs nvcc in {}/bin (sudo apt install nvidia-jetpack".format(
        tmp_path / "no-cuda") in message and "--no-pycuda" in message
    assert sorted(p.name for p in target.iterdir()) == ["etc"]  # nothing installed


def _build_tools_wheelhouse(folder: Path) -> Path:
    """pip, setuptools and wheel for this Python (what a new venv is upgraded with), cached in .cache."""
    cache = ROOT / ".cache" / "install-test-wheels" / "py{}{}".format(*sys.version_info[:2])
    if not list(cache.glob("setuptools-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest",
                        str(cache), "pip>=23.1", "setuptools>=61", "wheel"], check=True, timeout=600)
    folder.mkdir()
    for wheel in cache.glob("*.whl"):
        os.link(str(wheel), str(folder / wheel.name))
    return folder


def test_a_failed_pycuda_build_is_one_sentence_and_keeps_the_previous_install(tmp_path):
    import tarfile

    wheelhouse = _build_tools_wheelhouse(tmp_path / "wheelhouse")
    # a pycuda source release whose build fails as a real one does without curand.h: pages of errors
    source = tmp_path / "pycuda-2099.1"
    source.mkdir()
    (source / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: pycuda\nVersion: 2099.1\n")
    (source / "setup.py").write_text(
        "import sys\nfor i in range(11000):\n    print('pycuda/cuda.hpp:14: fatal compiler noise line %d' % i, "
        "file=sys.stderr)\nsys.exit(1)\n")
    with tarfile.open(str(wheelhouse / "pycuda-2099.1.tar.gz"), "w:gz") as archive:
        archive.add(str(source), arcname="pycuda-2099.1")
    (wheelhouse / "edge_agent-0.1.0-py3-none-any.whl").write_bytes(b"never reached")

    target = tmp_path / "root"
    _run(INSTALL, "--root", target, "--use-venv", VENV)  # the install in service
    link = target / "opt/edge-agent/venv"
    python = Path(sys.base_prefix) / "bin" / "python3"
    proc = _run(INSTALL, "--root", target, "--wheelhouse", wheelhouse, "--pycuda", "--python", python,
                "--cuda", _fake_cuda(tmp_path / "cuda"), check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = proc.stderr.strip()
    assert message.count("\n") == 0 and message.startswith("install.sh: installing pycuda"), message
    assert "--no-pycuda" in message and "previous install (if any) is unchanged" in message
    assert "compiler noise" not in proc.stdout + proc.stderr
    assert os.readlink(str(link)) == str(VENV)  # still the previous install
    assert not list((target / "opt/edge-agent/venvs").glob("*"))  # the new venv is gone


def test_unknown_option_is_refused_with_help(tmp_path):
    proc = _run(INSTALL, "--frobnicate", check=False)
    assert proc.returncode == 2 and "unknown option '--frobnicate'" in proc.stderr
    assert "--dry-run" in _run(INSTALL, "--help").stdout
