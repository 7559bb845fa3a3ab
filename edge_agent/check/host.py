"""Host checks: state and cache directories, free memory against the budget, disk space, clock
synchronisation, and cached TensorRT engines against the installed TensorRT."""

import ctypes
import importlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, List, Optional

import psutil

from edge_agent.check.result import FAIL, INFO, PASS, WARN, CheckResult

DISK_WARN_MB = 1024  # engines are 10-200 MB each; the outbox grows while the broker is away
DISK_FAIL_MB = 200
TIME_ERROR = 5  # adjtimex(2): the kernel clock is not synchronised


def checks(config: Optional[Any]) -> List[CheckResult]:
    from edge_agent.paths import cache_dir, state_dir

    results = [_clock()]
    if config is None:
        return results
    folders = [("state-dir", state_dir(config), "the MQTT outbox"), ("cache-dir", cache_dir(config), "engines")]
    for name, folder, purpose in folders:
        results.append(_directory(name, folder, purpose))
    results.append(_disk([folder for _, folder, _ in folders]))
    results.append(_memory(config.memory.limit_mb))
    results.append(_engines(cache_dir(config)))
    return results


def _directory(name: str, folder: Path, purpose: str) -> CheckResult:
    fix = "sudo systemctl start edge-agent creates it for the service user (StateDirectory/CacheDirectory)"
    if folder.is_dir():
        if os.access(str(folder), os.W_OK | os.X_OK):
            return CheckResult(name, PASS, "{} writable ({}), owner {}".format(folder, purpose, _owner(folder)))
        return CheckResult(name, FAIL, "{} is not writable by {} ({})".format(folder, _whoami(), purpose),
                           "sudo chown -R edge-agent:edge-agent {} (or run the check as the service "
                           "user)".format(folder))
    parent = _existing_parent(folder)
    if os.access(str(parent), os.W_OK | os.X_OK):
        return CheckResult(name, PASS, "{} absent; will be created ({})".format(folder, purpose))
    return CheckResult(name, WARN, "{} absent and {} not writable by {}".format(folder, parent, _whoami()), fix)


def _disk(folders: List[Path]) -> CheckResult:
    usages = {}
    for folder in folders:
        parent = _existing_parent(folder)
        usage = shutil.disk_usage(str(parent))
        usages[str(parent)] = usage.free / 2**20
    where, free_mb = min(usages.items(), key=lambda item: item[1])
    text = "{:.0f} MB free at {}".format(free_mb, where)
    if free_mb < DISK_FAIL_MB:
        return CheckResult("disk", FAIL, text, "free space (old logs: sudo journalctl --vacuum-size=200M)")
    if free_mb < DISK_WARN_MB:
        return CheckResult("disk", WARN, text + " (less than {} MB)".format(DISK_WARN_MB),
                           "free space: engines and the outbox need room (sudo journalctl --vacuum-size=200M)")
    return CheckResult("disk", PASS, text)


def _memory(limit_mb: int) -> CheckResult:
    memory = psutil.virtual_memory()
    available = memory.available / 2**20
    text = "{:.0f} MB available of {:.0f} MB; budget memory.limit_mb {}".format(available, memory.total / 2**20,
                                                                              limit_mb)
    if available < limit_mb:
        return CheckResult("memory", FAIL, text, "lower memory.limit_mb, use a smaller model or batch, or stop "
                                                 "other programs (on Jetson the GPU shares this RAM)")
    if available < limit_mb * 1.25:
        return CheckResult("memory", WARN, text + ": little headroom", "lower memory.limit_mb or free memory")
    return CheckResult("memory", PASS, text)


def _clock() -> CheckResult:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError) as exc:
        return CheckResult("clock", INFO, "synchronisation state unknown ({})".format(exc))
    if state == TIME_ERROR:
        return CheckResult("clock", WARN, "the system clock is not synchronised (NTP): event timestamps may be off",
                           "sudo timedatectl set-ntp true and make the plant's NTP server reachable")
    return CheckResult("clock", PASS, "synchronised")


def _engines(folder: Path) -> CheckResult:
    manifests = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    built_by = {}
    for path in manifests:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        version = manifest.get("fields", {}).get("tensorrt_version") if isinstance(manifest, dict) else None
        if version:
            built_by[path.name] = str(version)
    if not built_by:
        return CheckResult("engines", INFO, "no cached TensorRT engines in {}".format(folder))
    try:
        current = str(importlib.import_module("tensorrt").__version__)
    except Exception:  # a broken binary module raises more than ImportError
        return CheckResult("engines", WARN, "{} cached engine(s) but TensorRT is not importable".format(len(built_by)),
                           "see the tensorrt line above")
    stale = sorted(name for name, version in built_by.items() if version != current)
    if stale:
        return CheckResult("engines", WARN, "{} of {} cached engine(s) were built by another TensorRT than {}".format(
            len(stale), len(built_by), current), "nothing to do: they are rebuilt at the next start (minutes); "
            "`edge-agent build` does it now")
    return CheckResult("engines", PASS, "{} cached engine(s) match TensorRT {}".format(len(built_by), current))


def _existing_parent(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _owner(path: Path) -> str:
    import pwd

    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, OSError):
        return str(path.stat().st_uid)


def _whoami() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


