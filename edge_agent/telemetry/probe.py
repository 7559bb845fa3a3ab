"""System probe: board and process health as flat numbers with the unit in the key.

Providers are chosen once at start, in order of preference for the GPU side: jetson-stats `jtop`
(optional extra) -> Tegra sysfs -> NVML (discrete NVIDIA GPUs) -> none; psutil always adds CPU,
RAM, swap, disk and the agent's own memory. An absent or invalid sensor is left out.

GPU memory: NVML gives the discrete GPU's own memory in use (`gpu_mem_used_mb`, every process). On a
Jetson the GPU's buffers are RAM (edge_agent.telemetry.jetson_memory): this process's share
(`gpu_mem_process_mb`) and the board's (`gpu_mem_shared_mb`), never to be added to RSS. The
provider's `facts()["gpu_memory"]` names where the figure came from.
"""

import glob
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import psutil

from edge_agent.supervisor import SUPERVISOR, Task
from edge_agent.telemetry.jetson_memory import TegraGpuMemory, is_tegra, jtop_gpu_memory

log = logging.getLogger(__name__)

MB = 2**20
FIRST_CPU_SAMPLE_S = 0.5  # the probe's first CPU reading, after start
MIN_CPU_INTERVAL_S = 0.2  # CPU use over a shorter interval is noise (psutil says 0.0 right after priming)
# jtop and some thermal drivers report -256 (or other impossible values) for an offline sensor.
PLAUSIBLE_C = (-40.0, 150.0)


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _celsius(value: Optional[float]) -> Optional[float]:
    if value is None or not PLAUSIBLE_C[0] <= value <= PLAUSIBLE_C[1]:
        return None
    return round(value, 1)


class Provider:
    name = "none"

    def read(self) -> Dict[str, float]:
        return {}

    def facts(self) -> Dict[str, str]:
        return {}

    def close(self) -> None:
        pass


class PsutilProvider(Provider):
    name = "psutil"

    def __init__(self, disk_path: Path) -> None:
        self.disk_path = disk_path
        self.process = psutil.Process()
        psutil.cpu_percent(None)  # the first call only starts the measurement
        self.process.cpu_percent(None)
        self._cpu_at = time.monotonic()

    def read(self) -> Dict[str, float]:
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        values = {
            "load_1m": round(os.getloadavg()[0], 2),
            "ram_total_mb": round(memory.total / MB, 1),
            "ram_used_mb": round((memory.total - memory.available) / MB, 1),
            "ram_available_mb": round(memory.available / MB, 1),
            "swap_used_mb": round(swap.used / MB, 1),
            "process_rss_mb": round(self.process.memory_info().rss / MB, 1),
            "process_threads": float(self.process.num_threads()),
        }
        now = time.monotonic()
        if now - self._cpu_at >= MIN_CPU_INTERVAL_S:  # else unknown yet: left out, never 0.0
            self._cpu_at = now
            values["cpu_util_pct"] = psutil.cpu_percent(None)
            values["process_cpu_pct"] = round(self.process.cpu_percent(None), 1)
        try:
            disk = psutil.disk_usage(str(self.disk_path))
            values["disk_free_mb"] = round(disk.free / MB, 1)
            values["disk_used_pct"] = disk.percent
        except OSError:
            pass  # state directory not created yet: leave the disk figures out
        return values


class TegraSysfsProvider(Provider):
    """Jetson without jtop: GPU load and clock, thermal zones, INA3221 rails, nvpmodel mode."""

    name = "tegra-sysfs"
    GPU_DEVICES = ("devices/platform/gpu.0", "devices/gpu.0", "devices/platform/17000000.ga10b",
                   "devices/platform/17000000.gv11b", "devices/17000000.ga10b", "devices/17000000.gv11b")

    def __init__(self, sys_root: Path = Path("/sys"), var_root: Path = Path("/var"),
                 proc_root: Path = Path("/proc")) -> None:
        self.sys_root = sys_root
        self.var_root = var_root
        self.gpu = next((sys_root / d for d in self.GPU_DEVICES if (sys_root / d / "load").exists()), None)
        self.memory = TegraGpuMemory(sys_root, proc_root)

    @classmethod
    def detect(cls, sys_root: Path = Path("/sys"), etc_root: Path = Path("/etc"),
               proc_root: Path = Path("/proc")) -> bool:
        family = sys_root / "devices/soc0/family"
        try:
            return family.read_text().strip().lower() == "tegra"
        except OSError:
            return is_tegra(etc_root, proc_root)

    def read(self) -> Dict[str, float]:
        values: Dict[str, float] = {}
        if self.gpu is not None:
            load = _read_float(self.gpu / "load")
            if load is not None:
                values["gpu_util_pct"] = round(load / 10.0, 1)  # per mille
            freq = next((_read_float(Path(p)) for p in glob.glob(str(self.gpu / "devfreq/*/cur_freq"))), None)
            if freq is not None:
                values["gpu_freq_mhz"] = round(freq / 1e6, 1)
        for zone in sorted(glob.glob(str(self.sys_root / "class/thermal/thermal_zone*"))):
            name = _read_text(Path(zone) / "type")
            milli = _read_float(Path(zone) / "temp")
            celsius = _celsius(milli / 1000.0 if milli is not None else None)
            if name and celsius is not None:
                values["temp_{}_c".format(_key(re.sub(r"[-_]therm(al)?$", "", name)))] = celsius
        total = 0.0
        for label_file in glob.glob(str(self.sys_root / "bus/i2c/drivers/ina3221*/*/hwmon/hwmon*/in*_label")):
            label = _read_text(Path(label_file))
            channel = Path(label_file).name[2:-len("_label")]
            folder = Path(label_file).parent
            millivolt = _read_float(folder / "in{}_input".format(channel))
            milliamp = _read_float(folder / "curr{}_input".format(channel))
            if label and millivolt is not None and milliamp is not None:
                power = round(millivolt * milliamp / 1000.0, 1)
                values["power_{}_mw".format(_key(label))] = power
                if "in" in _key(label).split("_"):  # VDD_IN: the board's input rail
                    total = power
        if total:
            values["power_total_mw"] = total
        values.update(self.memory.read())
        return values

    def facts(self) -> Dict[str, str]:
        status = _read_text(self.var_root / "lib/nvpmodel/status")
        facts = {"nvpmodel": status.split(":")[-1]} if status else {}
        self.memory.read()
        facts["gpu_memory"] = "unified with RAM, from " + self.memory.source
        return facts


class JtopProvider(Provider):
    name = "jtop"

    def __init__(self) -> None:
        from jtop import jtop  # optional extra (AGPL-3.0), imported only here

        self._jtop = jtop()
        self._jtop.start()
        if not self._jtop.ok():
            self._jtop.close()
            raise RuntimeError("jtop service not responding")

    def read(self) -> Dict[str, float]:
        values = jtop_values(self._jtop.stats)
        values.update(jtop_gpu_memory(self._jtop)[0])
        return values

    def facts(self) -> Dict[str, str]:
        mode = getattr(self._jtop, "nvpmodel", None)
        facts = {"nvpmodel": str(mode)} if mode is not None else {}
        facts["gpu_memory"] = "unified with RAM, from " + jtop_gpu_memory(self._jtop)[1]
        return facts

    def close(self) -> None:
        self._jtop.close()


def jtop_values(stats: Dict[str, Any]) -> Dict[str, float]:
    """Map jtop's `stats` dict to our keys, dropping 'OFF' strings and -256 sentinels."""
    values: Dict[str, float] = {}
    for name, raw in stats.items():
        number = _number(raw)
        if number is None:
            continue
        if name == "GPU":
            values["gpu_util_pct"] = number
        elif name == "EMC":
            values["emc_util_pct"] = number
        elif name.startswith("Temp "):
            celsius = _celsius(number)
            if celsius is not None:
                values["temp_{}_c".format(_key(name[5:]))] = celsius
        elif name.startswith("Power "):
            rail = _key(name[6:])
            values["power_total_mw" if rail == "tot" else "power_{}_mw".format(rail)] = number
    return values


class NvmlProvider(Provider):
    name = "nvml"

    def __init__(self) -> None:
        import pynvml  # nvidia-ml-py, present where a discrete NVIDIA driver is

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def read(self) -> Dict[str, float]:
        nvml, handle = self._nvml, self._handle
        values: Dict[str, float] = {}
        readers: List[Callable[[], None]] = [
            lambda: values.update(gpu_util_pct=float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)),
            lambda: values.update(gpu_mem_used_mb=round(nvml.nvmlDeviceGetMemoryInfo(handle).used / MB, 1)),
            lambda: values.update(temp_gpu_c=float(nvml.nvmlDeviceGetTemperature(handle, 0))),
            lambda: values.update(power_gpu_mw=float(nvml.nvmlDeviceGetPowerUsage(handle))),
            lambda: values.update(gpu_freq_mhz=float(nvml.nvmlDeviceGetClockInfo(handle, 0))),
        ]
        for reader in readers:
            try:
                reader()
            except nvml.NVMLError:
                continue  # this sensor is not supported on this GPU: leave it out
        return values

    def facts(self) -> Dict[str, str]:
        name = self._nvml.nvmlDeviceGetName(self._handle)
        return {"gpu_name": name.decode() if isinstance(name, bytes) else str(name),
                "gpu_memory": "NVML: the GPU's own memory in use, all processes"}

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def choose_gpu_provider(sys_root: Path = Path("/sys"), etc_root: Path = Path("/etc"),
                        proc_root: Path = Path("/proc")) -> Provider:
    """The first GPU provider that works here; the reasons the others were skipped go to the log."""
    candidates: List[Callable[[], Provider]] = [JtopProvider]
    if TegraSysfsProvider.detect(sys_root, etc_root, proc_root):
        candidates.append(lambda: TegraSysfsProvider(sys_root, proc_root=proc_root))
    candidates.append(NvmlProvider)
    for make in candidates:
        try:
            return make()
        except Exception as exc:  # any failure of an optional provider means: try the next one
            log.debug("system probe: %s unavailable: %s", getattr(make, "name", make), exc)
    return Provider()


class SystemProbe:
    """Samples the providers in its own thread; readers take the latest snapshot without waiting."""

    def __init__(self, interval_s: float, disk_path: Path, memory_facts: Dict[str, float],
                 gpu: Optional[Provider] = None) -> None:
        """`gpu`: the GPU-side provider to use (tests give one on a fake tree); default: the first that works."""
        self.interval_s = interval_s
        self.gpu = gpu if gpu is not None else choose_gpu_provider()
        self.host = PsutilProvider(disk_path)
        self.memory_facts = dict(memory_facts)
        self.latest: Dict[str, float] = {}
        self._task: Optional[Task] = None

    @property
    def providers(self) -> List[str]:
        return [p.name for p in (self.gpu, self.host) if p.name != "none"]

    def facts(self) -> Dict[str, str]:
        return self.gpu.facts()

    def start(self) -> "SystemProbe":
        self.sample()
        self._task = SUPERVISOR.spawn("telemetry-probe", self._loop)
        return self

    def sample(self) -> Dict[str, float]:
        values: Dict[str, float] = dict(self.memory_facts)
        for provider in (self.host, self.gpu):
            try:
                values.update(provider.read())
            except (OSError, RuntimeError, ValueError) as exc:
                log.debug("system probe %s failed this time: %s", provider.name, exc)
        budget = values.get("memory_budget_mb")
        if budget and "process_rss_mb" in values:
            # the budget gates admission; this says how the running process compares with it
            values["memory_budget_used_pct"] = round(values["process_rss_mb"] / budget * 100.0, 1)
        self.latest = values  # one reference swap: readers see a whole snapshot
        return values

    def _loop(self, stop: threading.Event) -> None:
        # The start sample came right after the CPU counters were primed, too soon for a CPU
        # reading (psutil says 0.0): take a real one shortly, before the first metrics window ends.
        if not stop.wait(min(FIRST_CPU_SAMPLE_S, self.interval_s)):
            self.sample()
        while not stop.wait(self.interval_s):
            self.sample()

    def close(self) -> None:
        if self._task is not None:
            self._task.stop()
            self._task.join(timeout=5)
        self.gpu.close()


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_float(path: Path) -> Optional[float]:
    text = _read_text(path)
    try:
        return float(text) if text else None
    except ValueError:
        return None
