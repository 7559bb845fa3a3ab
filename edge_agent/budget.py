"""Memory budget admission: sum what a backend will take, before it takes anything.

Every backend describes its load as a `MemoryPlan` of named terms (engine or weights, context
scratch, I/O buffers x slots, host staging); the budget adds a margin and compares the total with
`memory.limit_mb`, with what the system has free and, under systemd, with what the service's cgroup
still allows (`memory.max`, set by MemoryMax=: past it the kernel kills the service). On a Jetson
the GPU's memory *is* system RAM, so every term, host or device, counts against `MemAvailable`; on a
discrete GPU device terms are compared with the GPU's free memory instead. Over budget ->
`BudgetExceeded` (exit code 3) with each term in MB and what to change. The admitted figures are
kept for telemetry (`publish`).
"""

from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import psutil

from edge_agent.errors import EdgeAgentError

MB = 2 ** 20
# What the service holds outside the model's plan (Python, OpenCV, ONNX Runtime or TensorRT and CUDA
# libraries, frames in flight): install.sh sets MemoryMax= to memory.limit_mb plus this.
SERVICE_RUNTIME_MB = 1024


class BudgetExceeded(EdgeAgentError):
    """The model would not fit in the memory budget; nothing was allocated."""

    exit_code = 3


class MemoryTerm(NamedTuple):
    name: str
    nbytes: int
    where: str  # "host" or "device"
    scales_with_batch: bool = False
    scales_with_slots: bool = False
    key: str = ""  # stable short name for telemetry (memory_plan_<key>_mb); the name is for people

    @property
    def mb(self) -> float:
        return self.nbytes / MB


class MemoryPlan(NamedTuple):
    """What a backend will allocate for one model, term by term."""

    backend: str
    precision: str
    terms: List[MemoryTerm]
    unified: bool  # GPU memory is system RAM (Jetson) or there is no GPU at all
    max_batch: int = 1
    slots: int = 1
    already_held: int = 0  # bytes of these terms allocated before this check (a refined plan)

    @property
    def host_bytes(self) -> int:
        return sum(t.nbytes for t in self.terms if t.where == "host")

    @property
    def device_bytes(self) -> int:
        return sum(t.nbytes for t in self.terms if t.where == "device")

    @property
    def total_bytes(self) -> int:
        return self.host_bytes + self.device_bytes


class BudgetReport(NamedTuple):
    plan: MemoryPlan
    margin_bytes: int
    limit_bytes: int
    available_bytes: int  # system MemAvailable when checked
    device_free_bytes: Optional[int]  # discrete GPU only
    cgroup_room_bytes: Optional[int] = None  # memory.max minus memory.current; None without a limit

    @property
    def total_bytes(self) -> int:
        return self.plan.total_bytes + self.margin_bytes

    def as_dict(self) -> Dict[str, object]:
        return {
            "backend": self.plan.backend, "precision": self.plan.precision, "unified": self.plan.unified,
            "terms_mb": {t.name: round(t.mb, 2) for t in self.plan.terms},
            "margin_mb": round(self.margin_bytes / MB, 2), "total_mb": round(self.total_bytes / MB, 2),
            "limit_mb": round(self.limit_bytes / MB, 2), "available_mb": round(self.available_bytes / MB, 2),
            "device_free_mb": None if self.device_free_bytes is None else round(self.device_free_bytes / MB, 2),
            "cgroup_room_mb": None if self.cgroup_room_bytes is None else round(self.cgroup_room_bytes / MB, 2),
        }


def system_available_bytes() -> int:
    """MemAvailable on Linux (what the kernel can give without swapping), the same figure elsewhere."""
    return int(psutil.virtual_memory().available)


def cgroup_memory(cgroup_root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup"),
                  ) -> Optional[Tuple[int, int]]:
    """(memory.max, memory.current) in bytes of this process's cgroup v2; None when unlimited or unknown."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return None
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    if relative is None:
        return None
    folder = cgroup_root / relative.lstrip("/")
    try:
        limit = (folder / "memory.max").read_text().strip()
        current = int((folder / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else (int(limit), current)


def service_memory_limits_mb(limit_mb: int) -> Tuple[int, int]:
    """(MemoryHigh, MemoryMax) in MB for a service whose config says memory.limit_mb."""
    memory_max = int(limit_mb) + SERVICE_RUNTIME_MB
    return memory_max - SERVICE_RUNTIME_MB // 4, memory_max


class MemoryBudget:
    def __init__(self, limit_mb: int, margin_mb: int = 64,
                 available: Callable[[], int] = system_available_bytes,
                 device_free: Optional[Callable[[], int]] = None,
                 cgroup: Callable[[], Optional[Tuple[int, int]]] = cgroup_memory) -> None:
        self.limit_bytes = int(limit_mb) * MB
        self.margin_bytes = int(margin_mb) * MB
        self._available = available
        self._device_free = device_free
        self._cgroup = cgroup
        self.report: Optional[BudgetReport] = None

    def admit(self, plan: MemoryPlan) -> BudgetReport:
        """The report when `plan` fits; raises BudgetExceeded listing every term when it does not."""
        available = self._available()
        device_free = None if plan.unified or self._device_free is None else self._device_free()
        cgroup = self._cgroup()
        room = None if cgroup is None else cgroup[0] - cgroup[1]
        report = BudgetReport(plan, self.margin_bytes, self.limit_bytes, available, device_free, room)
        problems = []
        if report.total_bytes > self.limit_bytes:
            problems.append("needs {:.1f} MB but memory.limit_mb is {:.0f}".format(
                report.total_bytes / MB, self.limit_bytes / MB))
        # What is already allocated has left MemAvailable; only the rest must still fit.
        system_need = (report.total_bytes if plan.unified else plan.host_bytes + self.margin_bytes)
        system_need -= plan.already_held
        if system_need > available:
            problems.append("needs {:.1f} MB more of system memory but only {:.1f} MB is available "
                            "(MemAvailable{})".format(system_need / MB, available / MB,
                                                      ", shared by CPU and GPU" if plan.unified else ""))
        if cgroup is not None and room is not None and system_need > room:
            problems.append("needs {:.1f} MB more but the service's memory limit leaves only {:.1f} MB (cgroup "
                            "memory.max {:.0f} MB, {:.0f} MB in use): the kernel would kill it".format(
                                system_need / MB, room / MB, cgroup[0] / MB, cgroup[1] / MB))
        if device_free is not None and plan.device_bytes - plan.already_held > device_free:
            problems.append("needs {:.1f} MB of GPU memory but the GPU has {:.1f} MB free".format(
                (plan.device_bytes - plan.already_held) / MB, device_free / MB))
        if problems:
            raise BudgetExceeded(_refusal(report, problems, cgroup_too_small=room is not None and system_need > room))
        self.report = report
        return report

    def publish(self, registry: "object") -> None:
        """Admitted figures as gauges: memory_plan_mb{term=<key>}, memory_plan_total_mb, memory_limit_mb,
        memory_available_at_load_mb (flattened by telemetry to e.g. memory_plan_scratch_mb)."""
        if self.report is None:
            return
        gauge = registry.gauge
        for term in self.report.plan.terms:
            gauge("memory_plan_mb", "mb", term=term.key or term.name).set(round(term.mb, 3))
        gauge("memory_plan_mb", "mb", term="margin").set(self.margin_bytes / MB)
        gauge("memory_plan_total_mb", "mb").set(round(self.report.total_bytes / MB, 3))
        gauge("memory_limit_mb", "mb").set(self.limit_bytes / MB)
        gauge("memory_available_at_load_mb", "mb").set(round(self.report.available_bytes / MB, 3))


def _refusal(report: BudgetReport, problems: List[str], cgroup_too_small: bool = False) -> str:
    plan = report.plan
    lines = ["memory budget: {} {} (max batch {}, {} slot{}) does not fit: {}.".format(
        plan.backend, plan.precision, plan.max_batch, plan.slots, "" if plan.slots == 1 else "s",
        "; ".join(problems))]
    for term in plan.terms:
        lines.append("  {:<36} {:>10.1f} MB  {}".format(term.name, term.mb, term.where))
    lines.append("  {:<36} {:>10.1f} MB  host".format("margin (memory.margin_mb)", report.margin_bytes / MB))
    lines.append("  {:<36} {:>10.1f} MB".format("total", report.total_bytes / MB))
    fixes = _fixes(plan)
    if cgroup_too_small:
        fixes.insert(0, "raise the service's MemoryMax (sudo scripts/install.sh sets it from memory.limit_mb; "
                        "or sudo systemctl edit edge-agent)")
    lines.append("Fix: " + "; or ".join(fixes) + ".")
    return "\n".join(lines)


def _fixes(plan: MemoryPlan) -> List[str]:
    fixes = []
    per_batch = sum(t.nbytes for t in plan.terms if t.scales_with_batch)
    if plan.max_batch > 1 and per_batch:
        smaller = max(1, plan.max_batch // 2)
        saved = per_batch * (plan.max_batch - smaller) / plan.max_batch
        fixes.append("lower pipeline.max_batch from {} to {} (saves about {:.1f} MB)".format(
            plan.max_batch, smaller, saved / MB))
    per_slot = sum(t.nbytes for t in plan.terms if t.scales_with_slots)
    if plan.slots > 1 and per_slot:
        fixes.append("lower memory.slots from {} to {} (saves {:.1f} MB, loses overlap of preprocessing "
                     "and inference)".format(plan.slots, plan.slots - 1, per_slot / plan.slots / MB))
    lower = {"fp32": "fp16 or int8", "fp16": "int8"}.get(plan.precision)
    if lower:
        fixes.append("a lower precision (backend.precision: {})".format(lower))
    fixes.append("raise memory.limit_mb if the board really has the room, or stop other processes")
    return fixes
