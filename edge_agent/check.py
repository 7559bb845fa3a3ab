"""`edge-agent check`: validate the config and report the environment, one line per check."""

import importlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

from edge_agent import __version__
from edge_agent.errors import ConfigError

PASS, WARN, FAIL, INFO = "pass", "warn", "fail", "info"


class CheckResult(NamedTuple):
    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> Dict[str, str]:
        return self._asdict()


def run_checks(config_path: Optional[str], as_json: bool = False) -> int:
    results = collect(config_path)
    failed = any(r.status == FAIL for r in results)
    if as_json:
        print(json.dumps({"version": __version__, "ok": not failed, "checks": [r.as_dict() for r in results]}))
    else:
        for r in results:
            print("{:<5} {:<14} {}".format(r.status.upper(), r.name, r.detail))
            if r.fix and r.status in (WARN, FAIL):
                print("      {:<14} fix: {}".format("", r.fix))
    return 1 if failed else 0


def collect(config_path: Optional[str]) -> List[CheckResult]:
    results = [_check_config(config_path), CheckResult("edge-agent", INFO, __version__),
               CheckResult("python", INFO, "{} ({})".format(platform.python_version(), sys.executable))]
    results += [_module("numpy", "numpy", required=True), _module("opencv", "cv2", required=True),
                _module("onnxruntime", "onnxruntime", required=True),
                _module("tensorrt", "tensorrt", required=False, fix="on a Jetson, install JetPack's "
                        "python3-libnvinfer and create the venv with --system-site-packages"),
                _module("pycuda", "pycuda", required=False, fix="pip install 'edge-agent[jetson]' (builds "
                        "against the local CUDA)")]
    results += [_cpu(), _gpu()]
    return results


def _check_config(path: Optional[str]) -> CheckResult:
    from edge_agent.config import load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        return CheckResult("config", FAIL, str(exc), "edit the config as the message says")
    where = path or "built-in demo settings"
    return CheckResult("config", PASS, "{}: valid; model {}, backend {} {}, {} source(s)".format(
        where, Path(config.model.path).name, config.backend.type, config.backend.precision, len(config.sources)))


def _module(label: str, module: str, required: bool, fix: str = "") -> CheckResult:
    try:
        imported: Any = importlib.import_module(module)
    except Exception as exc:  # a broken binary module can raise more than ImportError
        status = FAIL if required else WARN
        return CheckResult(label, status, "not importable: {}".format(exc),
                           fix or "pip install edge-agent again in this environment")
    return CheckResult(label, PASS, str(getattr(imported, "__version__", "present")))


def _cpu() -> CheckResult:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return CheckResult("cpu", INFO, "{}, {} cores, {}".format(model, os.cpu_count(), platform.machine()))


def _gpu() -> CheckResult:
    tegra = Path("/etc/nv_tegra_release")
    if tegra.exists():
        model = Path("/proc/device-tree/model")
        name = model.read_text(errors="replace").strip("\x00\n") if model.exists() else "Jetson"
        return CheckResult("gpu", PASS, "{} ({})".format(name, tegra.read_text().splitlines()[0].strip("# ")))
    nvidia = Path("/proc/driver/nvidia/gpus")
    if nvidia.is_dir() and any(nvidia.iterdir()):
        return CheckResult("gpu", PASS, "NVIDIA GPU present ({} device(s))".format(len(list(nvidia.iterdir()))))
    return CheckResult("gpu", WARN, "no NVIDIA GPU found; ONNX Runtime on the CPU will be used",
                       "run on a Jetson (or a machine with an NVIDIA GPU) for TensorRT")
