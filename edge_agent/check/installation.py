"""Installation checks: every installed dependency inside the version range that requires it, onnx
importable, and, where systemd runs, the service's state and its MemoryMax against memory.limit_mb.

A broken install shows here: JetPack 5's pip 20 used to keep the system's numpy 1.17 next to an
onnxruntime that needs 1.21, and every other check still passed.
"""

import importlib
import os
import shutil
import subprocess
from typing import Callable, Dict, List, Optional, Set

from edge_agent.check.result import FAIL, INFO, PASS, WARN, CheckResult

REINSTALL = "sudo scripts/install.sh (it rebuilds the venv and proves it before switching)"


def checks(limit_mb: Optional[int], show: Optional[Callable[[], Dict[str, str]]] = None) -> List[CheckResult]:
    results = [dependencies(), _onnx()]
    if show is None and _systemd_running():
        show = _systemctl_show
    if show is not None:
        results += service(show(), limit_mb)
    return results


def dependencies(root: str = "edge-agent") -> CheckResult:
    """Walk the requirements from edge-agent down; every installed version must satisfy every range."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        metadata.version(root)
    except metadata.PackageNotFoundError:
        return CheckResult("dependencies", INFO, "edge-agent is not installed as a package (a source tree?): "
                                                 "version ranges not checked")
    seen: Set[str] = set()
    pending = [root]
    problems = []
    while pending:
        name = pending.pop()
        key = _canonical(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue  # an optional extra, or not for this Python or platform
            try:
                installed = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                problems.append("{} needs {} (not installed)".format(name, requirement))
                continue
            if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
                problems.append("{} needs {}{} but {} is installed".format(
                    name, requirement.name, requirement.specifier, installed))
            pending.append(requirement.name)
    if problems:
        return CheckResult("dependencies", FAIL, "; ".join(sorted(problems)), REINSTALL)
    return CheckResult("dependencies", PASS, "{} packages, every version inside its required range".format(len(seen)))


def _onnx() -> CheckResult:
    try:
        module = importlib.import_module("onnx")
    except Exception as exc:  # a broken binary module raises more than ImportError
        return CheckResult("onnx", FAIL, "not importable: {}: {}".format(type(exc).__name__, exc), REINSTALL)
    return CheckResult("onnx", PASS, str(module.__version__))


def service(state: Dict[str, str], limit_mb: Optional[int]) -> List[CheckResult]:
    """The installed service as systemd sees it: loaded, running, restarts, and its memory ceiling."""
    if state.get("LoadState") != "loaded":
        return [CheckResult("service", INFO, "edge-agent.service is not installed here")]
    active, sub = state.get("ActiveState", "?"), state.get("SubState", "?")
    restarts = int(state.get("NRestarts") or 0)
    detail = "{} ({}), {} restart(s) since it was started".format(active, sub, restarts)
    logs = "read why: journalctl -u edge-agent -p warning -b"
    if active == "failed":
        result = CheckResult("service", FAIL, detail + ", result " + state.get("Result", "?"), logs)
    elif active != "active":
        result = CheckResult("service", WARN, detail, "sudo systemctl start edge-agent; " + logs)
    elif restarts:
        result = CheckResult("service", WARN, detail, logs)
    else:
        result = CheckResult("service", PASS, detail)
    return [result, _memory_max(state.get("MemoryMax", ""), limit_mb)]


def _memory_max(value: str, limit_mb: Optional[int]) -> CheckResult:
    from edge_agent.budget import SERVICE_RUNTIME_MB

    if not value.isdigit():
        return CheckResult("memory-max", INFO, "the service has no MemoryMax ({})".format(value or "unknown"))
    ceiling = int(value) / 2**20
    if limit_mb is None:
        return CheckResult("memory-max", INFO, "MemoryMax {:.0f} MB".format(ceiling))
    detail = "MemoryMax {:.0f} MB for memory.limit_mb {} (+{} MB for the runtime)".format(
        ceiling, limit_mb, SERVICE_RUNTIME_MB)
    fix = "sudo scripts/install.sh again (it sets MemoryMax from memory.limit_mb), or lower memory.limit_mb"
    if limit_mb >= ceiling:
        return CheckResult("memory-max", FAIL, detail + ": the kernel would kill the service before the budget "
                                                        "is reached", fix)
    if limit_mb + SERVICE_RUNTIME_MB > ceiling:
        return CheckResult("memory-max", WARN, detail + ": little room beyond the model", fix)
    return CheckResult("memory-max", PASS, detail)


def _systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def _systemctl_show() -> Dict[str, str]:
    properties = "LoadState,ActiveState,SubState,NRestarts,Result,MemoryMax"
    try:
        out = subprocess.run(["systemctl", "show", "edge-agent.service", "--property=" + properties],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
