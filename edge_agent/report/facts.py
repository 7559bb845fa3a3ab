"""What a figure in the report depends on: the machine, the software versions and the model."""

import datetime
import importlib
import os
import platform
from pathlib import Path
from typing import Any, Dict

import psutil

from edge_agent import __version__
from edge_agent.check.platform import cuda_version, l4t_version
from edge_agent.engine.cache import file_sha256

LIBRARIES = ("onnxruntime", "onnx", "numpy", "cv2", "tensorrt", "pycuda", "matplotlib")


def machine() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux, or /proc hidden: platform's answer stays
    return {"hostname": platform.node(), "cpu": cpu, "cpu_cores": os.cpu_count(), "architecture": platform.machine(),
            "ram_mb": round(psutil.virtual_memory().total / 2**20), "os": platform.platform(),
            "jetson_l4t": l4t_version(), "cuda": cuda_version(),
            "load_1m_at_start": round(os.getloadavg()[0], 2)}


def software() -> Dict[str, Any]:
    versions: Dict[str, Any] = {"python": platform.python_version(), "edge-agent": __version__}
    for name in LIBRARIES:
        try:
            module = importlib.import_module(name)
        except Exception:  # absent or broken: the report says "not installed" rather than failing
            versions[name] = None
            continue
        versions[name] = str(getattr(module, "__version__", "?"))
    return versions


def model(path: Path) -> Dict[str, Any]:
    return {"path": str(path), "name": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
