"""Platform checks: JetPack/L4T, Python, numpy/OpenCV, TensorRT, CUDA, cuDNN, pycuda, power mode,
jetson_clocks and the jtop service. Off a Jetson the agent runs on ONNX Runtime: one INFO line says so,
and the GPU stack's items are shown only where they are present."""

import glob
import importlib
import os
import platform as py_platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

from edge_agent.check.result import FAIL, INFO, PASS, WARN, CheckResult

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
JETPACK_BY_L4T = {"35": "JetPack 5", "36": "JetPack 6", "38": "JetPack 7"}
GPU_STACK = ("tensorrt", "cuda", "cudnn", "pycuda", "gpu")


def checks() -> List[CheckResult]:
    jetson = l4t_version()
    results = [_jetpack(jetson), _python()]
    results += _numpy_opencv(jetson)
    results += [_onnxruntime(), _tensorrt(jetson), _cuda(jetson), _cudnn(jetson), _pycuda(jetson), _cpu(), _gpu(jetson)]
    results += _power(jetson)
    if jetson is None:  # what is missing was said once, by the jetpack line
        results = [r for r in results if r.name not in GPU_STACK or r.status == PASS]
    results.append(_gstreamer(jetson))
    return results


def l4t_version() -> Optional[str]:
    """"# R36 (release), REVISION: 4.3, ..." -> "36.4.3"; None off a Jetson."""
    try:
        first = TEGRA_RELEASE.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    match = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", first)
    return "{}.{}".format(match.group(1), match.group(2)) if match else first.strip("# ")


def _jetpack(l4t: Optional[str]) -> CheckResult:
    if l4t is None:
        return CheckResult("jetpack", INFO, "not a Jetson (no {}): ONNX Runtime on the CPU will be used; TensorRT, "
                           "CUDA and pycuda matter on a Jetson only".format(TEGRA_RELEASE))
    generation = JETPACK_BY_L4T.get(l4t.split(".")[0])
    model = _read("/proc/device-tree/model") or "Jetson"
    if generation is None:
        return CheckResult("jetpack", WARN, "{}, L4T R{}: a JetPack release edge-agent was not tested on".format(
            model, l4t), "use JetPack 5.1, 6.x or 7.x")
    return CheckResult("jetpack", PASS, "{}, L4T R{} ({})".format(model, l4t, generation))


def _python() -> CheckResult:
    text = "{} ({})".format(py_platform.python_version(), sys.executable)
    if sys.prefix == sys.base_prefix:
        return CheckResult("python", INFO, text + ", not in a virtual environment")
    system_site = "include-system-site-packages = true" in _read(os.path.join(sys.prefix, "pyvenv.cfg")).lower()
    return CheckResult("python", INFO, "{}, venv {} system site-packages".format(
        text, "with" if system_site else "without"))


def _import(module: str) -> Tuple[Optional[Any], str]:
    try:
        return importlib.import_module(module), ""
    except Exception as exc:  # a broken binary module raises more than ImportError
        return None, "{}: {}".format(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


def _numpy_opencv(l4t: Optional[str]) -> List[CheckResult]:
    numpy, numpy_error = _import("numpy")
    if numpy is None:
        return [CheckResult("numpy", FAIL, "not importable: " + numpy_error,
                            "reinstall edge-agent in its venv (sudo scripts/install.sh)")]
    results = [CheckResult("numpy", PASS, numpy.__version__)]
    cv2, cv2_error = _import("cv2")
    if cv2 is None:
        if "NumPy 1.x" in cv2_error or "numpy.core.multiarray" in cv2_error:
            results.append(CheckResult("opencv", FAIL, "built for NumPy 1.x but numpy {} is installed ({})".format(
                numpy.__version__, cv2_error), "pip install 'numpy<2' in the venv (scripts/install.sh does this)"))
        else:
            results.append(CheckResult("opencv", FAIL, "not importable: " + cv2_error,
                                       "reinstall edge-agent in its venv (sudo scripts/install.sh)"))
        return results
    gstreamer = "GStreamer:                   YES" in cv2.getBuildInformation()
    detail = "{} from {}, GStreamer {}".format(cv2.__version__, Path(cv2.__file__).parent.parent,
                                              "yes" if gstreamer else "no")
    if l4t is not None and not gstreamer:
        results.append(CheckResult("opencv", WARN, detail + ": CSI cameras and hardware decoding need GStreamer",
                                   "use JetPack's OpenCV: pip uninstall opencv-python-headless in the venv"))
    else:
        results.append(CheckResult("opencv", PASS, detail))
    return results


def _gstreamer(l4t: Optional[str]) -> CheckResult:
    """Whether the Jetson hardware decode elements are there (docs/sources.md has the pipelines)."""
    from edge_agent.sources.gstreamer import element_status

    status = element_status()
    if all(v is None for v in status.values()):
        detail = "GStreamer tools not installed (gst-inspect-1.0): hardware decode elements unknown"
        if l4t is None:
            return CheckResult("gstreamer", INFO, detail + "; not needed for files, folders or USB cameras")
        return CheckResult("gstreamer", WARN, detail, "sudo apt install gstreamer1.0-tools nvidia-l4t-gstreamer")
    present = [name for name, ok in status.items() if ok]
    missing = [name for name, ok in status.items() if not ok]
    detail = "hardware decode elements: {}{}".format(
        ", ".join(present) or "none", "; missing " + ", ".join(missing) if missing else "")
    if not missing:
        return CheckResult("gstreamer", PASS, detail)
    if l4t is None:
        return CheckResult("gstreamer", INFO, detail + " (not a Jetson: use the software pipelines, avdec_h264 / "
                                                       "jpegdec)")
    return CheckResult("gstreamer", WARN, detail, "sudo apt install nvidia-l4t-gstreamer (JetPack's GStreamer "
                                                  "plugins), then run `edge-agent check` again")


def _onnxruntime() -> CheckResult:
    ort, error = _import("onnxruntime")
    if ort is None:
        return CheckResult("onnxruntime", FAIL, "not importable: " + error,
                           "reinstall edge-agent in its venv (sudo scripts/install.sh)")
    return CheckResult("onnxruntime", PASS, "{} ({})".format(ort.__version__, ", ".join(ort.get_available_providers())))


def _cpu() -> CheckResult:
    model = py_platform.processor() or py_platform.machine()
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return CheckResult("cpu", INFO, "{}, {} cores, {}".format(model, os.cpu_count(), py_platform.machine()))


def _gpu(l4t: Optional[str]) -> CheckResult:
    if l4t is not None:
        model = _read("/proc/device-tree/model") or "Jetson"
        return CheckResult("gpu", PASS, "integrated Jetson GPU ({})".format(model))
    gpus = glob.glob("/proc/driver/nvidia/gpus/*")
    if gpus:
        return CheckResult("gpu", PASS, "NVIDIA GPU present ({} device(s))".format(len(gpus)))
    return CheckResult("gpu", WARN, "no NVIDIA GPU found: ONNX Runtime on the CPU will be used",
                       "run on a Jetson (or a machine with an NVIDIA GPU) for TensorRT")


def _tensorrt(l4t: Optional[str]) -> CheckResult:
    trt, error = _import("tensorrt")
    if trt is not None:
        return CheckResult("tensorrt", PASS, str(getattr(trt, "__version__", "present")))
    fix = "apt install python3-libnvinfer and recreate the venv with --system-site-packages (scripts/install.sh)"
    if l4t is not None:
        return CheckResult("tensorrt", FAIL, "not importable on a Jetson: " + error, fix)
    return CheckResult("tensorrt", WARN, "not importable ({}): the onnxruntime backend will be used".format(error),
                       "nothing to do off a Jetson; on a Jetson: " + fix)


def cuda_version() -> Optional[str]:
    text = _read("/usr/local/cuda/version.json")
    match = re.search(r'"cuda"\s*:\s*\{[^}]*"version"\s*:\s*"([\d.]+)"', text)
    if match:
        return match.group(1)
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc:
        out = _run([nvcc, "--version"])
        found = re.search(r"release ([\d.]+)", out)
        if found:
            return found.group(1)
    return None


def _cuda(l4t: Optional[str]) -> CheckResult:
    version = cuda_version()
    if version is not None:
        return CheckResult("cuda", PASS, "CUDA {} (/usr/local/cuda)".format(version))
    if l4t is not None:
        return CheckResult("cuda", FAIL, "no CUDA toolkit in /usr/local/cuda", "sudo apt install nvidia-jetpack")
    return CheckResult("cuda", WARN, "no CUDA toolkit found", "nothing to do off a Jetson")


def _cudnn(l4t: Optional[str]) -> CheckResult:
    for header in ["/usr/include/cudnn_version.h"] + sorted(glob.glob("/usr/include/*/cudnn_version*.h")):
        text = _read(header)
        parts = [re.search(r"#define CUDNN_{}\s+(\d+)".format(k), text) for k in ("MAJOR", "MINOR", "PATCHLEVEL")]
        if all(parts):
            return CheckResult("cudnn", PASS, ".".join(p.group(1) for p in parts if p))
    status = WARN if l4t is not None else INFO
    return CheckResult("cudnn", status, "not found (TensorRT 8.x uses it for some layers; 10+ does not need it)",
                       "sudo apt install nvidia-jetpack" if l4t is not None else "")


def _pycuda(l4t: Optional[str]) -> CheckResult:
    module, error = _import("pycuda")
    if module is not None:
        return CheckResult("pycuda", PASS, str(getattr(module, "VERSION_TEXT", "present")))
    return CheckResult("pycuda", WARN if l4t is not None else INFO, "not importable ({})".format(error),
                       "sudo scripts/install.sh builds it against the local CUDA" if l4t is not None else "")


def _power(l4t: Optional[str]) -> List[CheckResult]:
    if l4t is None:
        return [CheckResult("power", INFO, "not a Jetson: no power modes, jetson_clocks or jtop")]
    results = []
    out = _run(["nvpmodel", "-q"])
    mode = re.search(r"NV Power Mode:\s*(\S+)", out)
    if mode:
        results.append(CheckResult("power-mode", PASS, "nvpmodel mode {}".format(mode.group(1))))
    else:
        results.append(CheckResult("power-mode", WARN, "nvpmodel -q gave no mode",
                                   "check `sudo nvpmodel -q`; use the mode your throughput was measured in"))
    pinned = _gpu_clocks_pinned()
    if pinned is None:
        results.append(CheckResult("jetson_clocks", INFO, "GPU clock limits not readable here"))
    elif pinned:
        results.append(CheckResult("jetson_clocks", PASS, "on (GPU clock pinned at its maximum)"))
    else:
        results.append(CheckResult("jetson_clocks", WARN, "off: GPU clocks scale, so latency varies",
                                   "sudo jetson_clocks (and enable it at boot) for steady latency"))
    results.append(_jtop())
    return results


def _gpu_clocks_pinned() -> Optional[bool]:
    for folder in glob.glob("/sys/class/devfreq/*"):
        name = os.path.basename(os.path.realpath(folder))
        if "gpu" in name or name.endswith(".gv11b") or name.endswith(".ga10b") or name.endswith(".gb10b"):
            low, high = _read(folder + "/min_freq").strip(), _read(folder + "/max_freq").strip()
            if low and high:
                return low == high
    return None


def _jtop() -> CheckResult:
    if not os.path.exists("/run/jtop.sock"):
        return CheckResult("jtop", WARN, "jtop service not running (/run/jtop.sock absent): board metrics come "
                           "from sysfs, without power rails", "sudo pip3 install jetson-stats && sudo reboot")
    return CheckResult("jtop", PASS, "jtop service socket present (/run/jtop.sock)")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n")
    except OSError:
        return ""


def _run(command: List[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
