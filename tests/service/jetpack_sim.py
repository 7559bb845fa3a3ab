"""A JetPack's system Python, rebuilt from this machine's pyenv interpreters, for install tests.

JetPack 5 is Ubuntu 20.04: Python 3.8, python3-venv bundling pip 20.0.2 and setuptools 44, and in the
system site-packages setuptools 45.2 (python3-setuptools), pip 20.0.2 (python3-pip) and numpy 1.17.4
(python3-numpy, pulled in by JetPack's OpenCV). JetPack 6 is Ubuntu 22.04: Python 3.10, pip 22.0.2,
setuptools 59.6 and numpy 1.21.5. Those are exactly what made the old installer install `UNKNOWN-0.0.0`
(setuptools < 61 ignores `[project]`) and keep numpy 1.17 next to onnxruntime.

`system_python()` builds such a prefix: the interpreter binary copied (it finds its prefix from its
own location), the standard library linked in, a real `site-packages` holding the old packages, and an
`ensurepip` that bundles the old pip and setuptools, so `python -m venv` behaves as Ubuntu's does.
Wheels are downloaded once into .cache/jetpack-sim (ignored by git).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, NamedTuple, Tuple

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"


class JetPack(NamedTuple):
    name: str
    l4t: str  # first line of /etc/nv_tegra_release
    python: str  # pyenv version
    venv_bundle: Tuple[str, ...]  # wheels python3-venv's ensurepip installs into a new venv
    system_packages: Tuple[str, ...]  # what apt put into the system site-packages


JETPACKS: Dict[str, JetPack] = {
    "jetpack5": JetPack(
        "JetPack 5", "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64", "3.8.18",
        ("pip==20.0.2", "setuptools==44.0.0"), ("pip==20.0.2", "setuptools==45.2.0", "numpy==1.17.4")),
    "jetpack6": JetPack(
        "JetPack 6", "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64", "3.10.13",
        ("pip==22.0.2", "setuptools==59.6.0"), ("pip==22.0.2", "setuptools==59.6.0", "numpy==1.21.5")),
}


def pip_env() -> Dict[str, str]:
    """The environment for pip runs in these tests: a board's (PyPI only, no pip.conf: this machine's
    extra local indexes lack the Requires-Python data that old pips need), downloads cached in .cache/pip."""
    env = dict(os.environ, PIP_CACHE_DIR=str(CACHE / "pip"), PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_CONFIG_FILE=os.devnull)
    for name in ("PYTHONPATH", "PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        env.pop(name, None)
    return env


def interpreter(jetpack: JetPack) -> Path:
    return PYENV / jetpack.python / "bin" / ("python" + jetpack.python.rsplit(".", 1)[0])


def _wheels(jetpack: JetPack) -> Path:
    """Download (once) every wheel the simulated system needs, for that Python."""
    folder = CACHE / "jetpack-sim" / jetpack.python
    stamp = folder / ".complete"
    wanted = "\n".join(sorted(set(jetpack.venv_bundle + jetpack.system_packages)))
    if stamp.exists() and stamp.read_text() == wanted:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for requirement in sorted(set(jetpack.venv_bundle + jetpack.system_packages)):  # one by one: two setuptools
        subprocess.run([str(interpreter(jetpack)), "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--dest", str(folder), requirement],
                       check=True, env=pip_env(), timeout=600)
    stamp.write_text(wanted)
    return folder


def _wheel_file(folder: Path, requirement: str) -> Path:
    name, version = requirement.split("==")
    found = sorted(folder.glob("{}-{}-*.whl".format(name, version)))
    assert found, "no wheel for {} in {}".format(requirement, folder)
    return found[0]


def system_python(jetpack: JetPack, prefix: Path) -> Path:
    """Build the simulated system Python under `prefix`; returns its `bin/python3`."""
    source = PYENV / jetpack.python
    if not source.is_dir():
        raise RuntimeError("the JetPack simulation needs pyenv's Python {} in {}".format(jetpack.python, source))
    wheels = _wheels(jetpack)
    short = "python" + jetpack.python.rsplit(".", 1)[0]
    (prefix / "bin").mkdir(parents=True)
    shutil.copy2(str(source / "bin" / short), str(prefix / "bin" / short))  # a copy: prefix found from here
    os.symlink(short, str(prefix / "bin" / "python3"))
    os.symlink(str(source / "include"), str(prefix / "include"))  # Python.h (python3-dev)
    stdlib = prefix / "lib" / short
    stdlib.mkdir(parents=True)
    for entry in (source / "lib" / short).iterdir():
        if entry.name not in ("site-packages", "ensurepip"):
            os.symlink(str(entry), str(stdlib / entry.name))
    (stdlib / "site-packages").mkdir()

    # ensurepip bundling the distribution's old pip and setuptools (Ubuntu's python3-venv)
    ensurepip = stdlib / "ensurepip"
    shutil.copytree(str(source / "lib" / short / "ensurepip"), str(ensurepip),
                    ignore=shutil.ignore_patterns("*.whl", "__pycache__"))
    projects = []
    for requirement in jetpack.venv_bundle:
        wheel = _wheel_file(wheels, requirement)
        shutil.copy2(str(wheel), str(ensurepip / "_bundled" / wheel.name))
        name, version, tag = wheel.name.split("-")[:3]
        projects.append('    ("{}", "{}", "{}"),\n'.format(name, version, tag))
    code = (ensurepip / "__init__.py").read_text()
    code = re.sub(r"_PROJECTS = \[\n.*?\n\]", lambda _: "_PROJECTS = [\n" + "".join(projects) + "]", code,
                  count=1, flags=re.S)
    pip_version = jetpack.venv_bundle[0].split("==")[1]
    code = re.sub(r'_PIP_VERSION = "[^"]*"', '_PIP_VERSION = "{}"'.format(pip_version), code, count=1)
    (ensurepip / "__init__.py").write_text(code)

    # the system site-packages: what python3-pip, python3-setuptools and python3-numpy installed
    subprocess.run([str(source / "bin" / short), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--find-links", str(wheels), "--target", str(stdlib / "site-packages")]
                   + list(jetpack.system_packages), check=True, env=pip_env(), timeout=300)
    python = prefix / "bin" / "python3"
    probe = subprocess.run([str(python), "-c", "import sys, numpy, setuptools; print(sys.prefix, numpy.__version__, "
                            "setuptools.__version__)"], capture_output=True, text=True, cwd="/", timeout=60)
    assert probe.returncode == 0 and probe.stdout.split()[0] == str(prefix), probe.stdout + probe.stderr
    return python


def l4t_root(jetpack: JetPack, root: Path) -> Path:
    """A staging root that says it is this JetPack's L4T (as /etc/nv_tegra_release does on a board)."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "nv_tegra_release").write_text(jetpack.l4t + ", DATE: Tue Jan  7 03:05:36 UTC 2025\n")
    return root
