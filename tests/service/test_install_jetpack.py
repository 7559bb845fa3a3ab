"""install.sh on simulated JetPack 5 and 6 system Pythons, online from PyPI and offline from a wheelhouse.

Each simulation is the system Python of that JetPack (tests/service/jetpack_sim.py): its old pip and
setuptools < 61 in the venv bundle and the system site-packages, numpy 1.17.4 (JetPack 5) there too,
and /etc/nv_tegra_release in the staging root. The installer runs from the source tree's directory,
as a technician runs it from a clone. The real package must be installed (`edge-agent version`), pip's
metadata consistent (`pip check`: numpy satisfies every dependency), and five demo frames must run.

These install from PyPI (about two minutes each, network-bound; the three installs run concurrently,
started when the first of these tests needs them). Downloads are cached in .cache/pip.

To show that the previous installer fails them, run this file in a checkout of the commit before:
    git worktree add /tmp/before d7f85b2 && cp tests/service/jetpack_sim.py tests/service/test_install_jetpack.py \
        /tmp/before/tests/service/ && cd /tmp/before && python3 -m venv .venv && .venv/bin/pip install -e .[dev] \
        && .venv/bin/python -m pytest tests/service/test_install_jetpack.py
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edge_agent import __version__
from service.jetpack_sim import JETPACKS, REPO, interpreter, l4t_root, pip_env, system_python

INSTALL = REPO / "scripts" / "install.sh"
WHEELHOUSE_SH = REPO / "scripts" / "wheelhouse.sh"
JOB_TIMEOUT_S = 1200
OFFLINE_JETPACK = "jetpack6"


class Job:
    """A background script run; `result()` waits for it and returns (returncode, output)."""

    def __init__(self, argv, log: Path, env=None):
        self.log = log
        self.argv = [str(a) for a in argv]
        self._out = open(str(log), "w")
        self.proc = subprocess.Popen(["bash"] + self.argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     cwd=str(REPO), env=env or pip_env())

    def result(self):
        try:
            self.proc.wait(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        return self.proc.returncode, self.log.read_text()


@pytest.fixture(scope="module")
def simulations(tmp_path_factory):
    """Both JetPacks' system Pythons, their online installs and one wheelhouse, started together."""
    base = tmp_path_factory.mktemp("jetpack")
    sims = {}
    for key, jetpack in JETPACKS.items():
        if not interpreter(jetpack).exists():
            pytest.skip("the JetPack simulations need pyenv's Python {} ({} is absent)".format(
                jetpack.python, interpreter(jetpack)))
        python = system_python(jetpack, base / key / "system")
        root = l4t_root(jetpack, base / key / "root")
        install = Job([INSTALL, "--root", root, "--python", python, "--no-pycuda", "--no-start"],
                      base / key / "install.log")
        sims[key] = {"jetpack": jetpack, "python": python, "root": root, "install": install}
    offline = sims[OFFLINE_JETPACK]
    offline["wheelhouse"] = base / "wheelhouse"
    offline["wheelhouse_job"] = Job([WHEELHOUSE_SH, "--python", offline["python"], "--jetson", "--no-pycuda",
                                     offline["wheelhouse"]], base / "wheelhouse.log")
    yield sims
    for sim in sims.values():
        for job in (sim["install"], sim.get("wheelhouse_job")):
            if job is not None and job.proc.poll() is None:
                job.proc.kill()
                job.proc.wait()


def _venv(root: Path) -> Path:
    return root / "opt" / "edge-agent" / "venv"


def _assert_works(venv: Path, jetpack):
    """The installed package runs: its command, pip's dependency check, numpy in range, five frames."""
    def run(*argv):
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd="/", timeout=300)

    version = run(venv / "bin" / "edge-agent", "version")
    assert version.returncode == 0 and version.stdout.strip() == "edge-agent " + __version__, version
    check = run(venv / "bin" / "python", "-m", "pip", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    probe = run(venv / "bin" / "python", "-c", "import numpy, onnx, onnxruntime, cv2; print(numpy.__version__)")
    assert probe.returncode == 0, probe.stderr
    numpy_version = tuple(int(p) for p in probe.stdout.strip().split(".")[:2])
    assert (1, 20) <= numpy_version < (2, 0), probe.stdout  # above the system's 1.17, below 2 on L4T
    demo = run(venv / "bin" / "edge-agent", "demo", "--frames", "5", "--json")
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert json.loads(demo.stdout)["frames"] == 5


@pytest.mark.parametrize("key", sorted(JETPACKS))
def test_install_on_a_simulated_jetpack_installs_the_real_package(simulations, key):
    sim = simulations[key]
    returncode, output = sim["install"].result()
    assert returncode == 0, output[-4000:]
    assert "Jetson: L4T R" in output and "({}".format(sim["jetpack"].name) in output, output
    _assert_works(_venv(sim["root"]), sim["jetpack"])
    assert "numpy<2" in (sim["root"] / "opt/edge-agent/constraints.txt").read_text()

    # a second run finds the same install verified and changes nothing
    again = subprocess.run(["bash", str(INSTALL), "--root", str(sim["root"]), "--python", str(sim["python"]),
                            "--no-pycuda", "--no-start"], capture_output=True, text=True, cwd=str(REPO),
                           env=pip_env(), timeout=300)
    assert again.returncode == 0 and "0 change(s) made" in again.stdout, again.stdout + again.stderr


def _offline(argv, sim):
    """Run install.sh where PyPI cannot be reached: a network namespace with no interfaces when this
    machine allows one (root), else a proxy that refuses every connection."""
    env = pip_env()
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        wrapper = ["unshare", "-n"]
    else:
        wrapper = []
        env.update(https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9", PIP_PROXY="http://127.0.0.1:9")
    reach = subprocess.run(wrapper + [str(sim["python"]), "-c", "import urllib.request as u; "
                                      "u.urlopen('https://pypi.org/simple/', timeout=10)"],
                           capture_output=True, env=env, timeout=60)
    assert reach.returncode != 0, "PyPI is reachable: this would not test an offline install"
    started = time.monotonic()
    proc = subprocess.run(wrapper + ["bash", str(INSTALL)] + [str(a) for a in argv], capture_output=True, text=True,
                          cwd=str(REPO), env=env, timeout=600)
    return proc, time.monotonic() - started


def test_offline_install_from_a_wheelhouse(simulations, tmp_path):
    sim = simulations[OFFLINE_JETPACK]
    returncode, output = sim["wheelhouse_job"].result()
    assert returncode == 0, output[-4000:]
    wheelhouse = sim["wheelhouse"]
    names = sorted(p.name for p in wheelhouse.glob("*.whl"))
    for wanted in ("edge_agent-", "numpy-1.", "onnxruntime-", "onnx-", "opencv_python_headless-", "pip-",
                   "setuptools-"):
        assert any(n.startswith(wanted) for n in names), (wanted, names)

    root = l4t_root(sim["jetpack"], tmp_path / "root")
    proc, _ = _offline(["--root", root, "--python", sim["python"], "--wheelhouse", wheelhouse, "--no-pycuda",
                        "--no-start"], sim)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    _assert_works(_venv(root), sim["jetpack"])

    # a wheel missing from the wheelhouse: one sentence naming it, fast, nothing left behind
    partial = tmp_path / "partial"
    partial.mkdir()
    for wheel in wheelhouse.iterdir():
        if not wheel.name.startswith("onnx-"):
            os.link(str(wheel), str(partial / wheel.name))
    other = l4t_root(sim["jetpack"], tmp_path / "other")
    proc, seconds = _offline(["--root", other, "--python", sim["python"], "--wheelhouse", partial, "--no-pycuda",
                              "--no-start"], sim)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert seconds < 120, seconds  # pip's 30 s of retries per request would show here
    message = proc.stderr.strip()
    assert message.count("\n") == 0 and "No matching distribution found for onnx" in message, message
    assert "rebuild it with scripts/wheelhouse.sh" in message
    assert not (other / "opt/edge-agent/venv").exists() and not list((other / "opt/edge-agent/venvs").glob("*"))
    shutil.rmtree(str(partial))
