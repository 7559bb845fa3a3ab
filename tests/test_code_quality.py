"""JetPack 5 boards run Python 3.8: edge_agent/ must not use newer syntax or stdlib calls."""

import subprocess
import sys
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent


def _tool(name):
    return str(BIN / name) if (BIN / name).exists() else name


def test_edge_agent_is_python_38_compatible():
    proc = subprocess.run([_tool("vermin"), "-q", "-t=3.8-", "--no-tips", "--violations", "--eval-annotations",
                           "edge_agent"], cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, "vermin found code newer than Python 3.8:\n" + proc.stdout + proc.stderr


def test_ruff_is_clean():
    proc = subprocess.run([_tool("ruff"), "check", "edge_agent", "tests", "scripts"], cwd=str(REPO),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_agent_never_imports_torch():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "edge_agent").rglob("*.py")
                 if "import torch" in p.read_text()]
    assert offenders == []


def test_every_script_starts():
    """Scripts are not imported by the tests otherwise: `--help` catches a broken import early."""
    scripts = sorted((REPO / "scripts").glob("*.py"))
    assert scripts
    for script in scripts:
        if script.name == "train_demo_model.py":
            try:
                import torch  # noqa: F401  (only the training script needs it: the 'train' extra)
            except ImportError:
                continue
        proc = subprocess.run([sys.executable, str(script), "--help"], cwd=str(REPO), capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, "{} --help failed:\n{}".format(script.name, proc.stderr[-2000:])
