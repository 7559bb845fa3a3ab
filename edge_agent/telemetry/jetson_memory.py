"""GPU memory on a Jetson, where the GPU has no memory of its own: what it holds comes out of the
same RAM as every process's RSS (unified memory, counted once), so it is reported as a share of
memory already in use, never added on top of RSS.

Sources, first that works; `source` names the one used:

1. jtop (jetson-stats, AGPL-3.0, optional: imported only where installed, by the probe's
   JtopProvider): this process's row of `jetson.processes` (item 8, GPU memory in KB), else
   `jetson.memory["RAM"]["shared"]` (KB, the whole board);
2. nvmap debugfs `<sys>/kernel/debug/nvmap/iovmm/clients` (root only): one row per nvmap client,
   `CLIENT PROCESS PID SIZE` with the size in K, then a `total` row (the kernel's
   `nvmap_debug_iovmm_clients_show`); this process's rows are summed. jtop reads the same rows from
   `.../iovmm/maps`, which is tried second;
3. `<proc>/meminfo` `NvMapMemUsed` (kB): every process's GPU buffers on the board, which jtop shows as
   RAM "shared"; the debugfs `total` row when meminfo lacks it.

Roots are arguments so tests read a fake tree with the real file formats.
"""

import os
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

MB = 2**20
KB = 1024
NVMAP_TABLES = ("kernel/debug/nvmap/iovmm/clients", "kernel/debug/nvmap/iovmm/maps")
# a client row: name, process (its comm: may hold spaces), pid, size with a unit letter (K)
_ROW = re.compile(r"^(?P<client>\S+)\s+(?P<process>.+?)\s+(?P<pid>\d+)\s+(?P<size>\d+)(?P<unit>[KMG]?)\s*$")
_TOTAL = re.compile(r"^total\s+(?P<size>\d+)(?P<unit>[KMG]?)\s*$")
_UNITS = {"": 1, "K": KB, "M": KB * KB, "G": KB * KB * KB}

PROCESS_KEY = "gpu_mem_process_mb"  # this process's GPU buffers (part of the board's RAM)
BOARD_KEY = "gpu_mem_shared_mb"  # every process's GPU buffers on the board (part of the board's RAM)


def is_tegra(etc_root: Path = Path("/etc"), proc_root: Path = Path("/proc")) -> bool:
    """A Jetson: L4T's release file, or a device tree that says nvidia,tegra."""
    if (etc_root / "nv_tegra_release").exists():
        return True
    try:
        compatible = (proc_root / "device-tree/compatible").read_bytes()
    except OSError:
        return False
    return any(entry.startswith(b"nvidia,tegra") for entry in compatible.split(b"\0"))


def parse_nvmap_clients(text: str) -> Tuple[Dict[int, int], Optional[int]]:
    """({pid: bytes}, total bytes or None) from an nvmap debugfs client table. Rows of one pid (a
    process can open several nvmap clients) are summed; allocation detail lines, the header and the
    kernel's closing note are skipped."""
    per_pid: Dict[int, int] = {}
    total: Optional[int] = None
    for line in text.splitlines():
        match = _TOTAL.match(line)
        if match:
            total = int(match.group("size")) * _UNITS[match.group("unit")]
            continue
        match = _ROW.match(line)
        if match and not line[:1].isspace():
            pid = int(match.group("pid"))
            per_pid[pid] = per_pid.get(pid, 0) + int(match.group("size")) * _UNITS[match.group("unit")]
    return per_pid, total


def meminfo_kib(text: str, key: str) -> Optional[int]:
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == key:
            try:
                return int(rest.split()[0])
            except (IndexError, ValueError):
                return None
    return None


class TegraGpuMemory:
    """Reads the sysfs/debugfs/procfs sources (2 and 3 above) for process `pid`."""

    def __init__(self, sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc"),
                 pid: Optional[int] = None) -> None:
        self.sys_root = sys_root
        self.proc_root = proc_root
        self.pid = os.getpid() if pid is None else pid
        self.source = ""  # set by read()

    def read(self) -> Dict[str, float]:
        values: Dict[str, float] = {}
        sources = []
        total: Optional[int] = None
        for name in NVMAP_TABLES:
            try:
                text = (self.sys_root / name).read_text()
            except (OSError, UnicodeDecodeError):  # debugfs is root-only, or not mounted
                continue
            per_pid, total = parse_nvmap_clients(text)
            values[PROCESS_KEY] = round(per_pid.get(self.pid, 0) / MB, 1)
            sources.append("nvmap debugfs {} (this process)".format(self.sys_root / name))
            break
        try:
            shared = meminfo_kib((self.proc_root / "meminfo").read_text(), "NvMapMemUsed")
        except (OSError, UnicodeDecodeError):
            shared = None
        if shared is not None:
            values[BOARD_KEY] = round(shared * KB / MB, 1)
            sources.append("{} NvMapMemUsed (whole board)".format(self.proc_root / "meminfo"))
        elif total is not None:
            values[BOARD_KEY] = round(total / MB, 1)
            sources.append("nvmap debugfs total (whole board)")
        self.source = "; ".join(sources) or "not readable here ({} is root-only, {} has no NvMapMemUsed)".format(
            self.sys_root / NVMAP_TABLES[0], self.proc_root / "meminfo")
        return values


def jtop_gpu_memory(jetson: Any, pid: Optional[int] = None) -> Tuple[Dict[str, float], str]:
    """Source 1: (values, source) from a started jtop object; empty when it offers neither figure."""
    pid = os.getpid() if pid is None else pid
    values: Dict[str, float] = {}
    sources = []
    try:
        rows = [row for row in (jetson.processes or []) if int(row[0]) == pid]
        if rows:
            values[PROCESS_KEY] = round(sum(float(row[8]) for row in rows) * KB / MB, 1)
            sources.append("jtop processes (this process)")
    except (AttributeError, IndexError, TypeError, ValueError):  # another jtop version's layout
        pass
    try:
        values[BOARD_KEY] = round(float(jetson.memory["RAM"]["shared"]) * KB / MB, 1)
        sources.append("jtop memory RAM shared (whole board)")
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    return values, "; ".join(sources) or "jtop offers neither this process's nor the board's GPU memory"
