"""Memory admission for a rollout: the candidate must fit beside the serving model, twice over.

The serving model keeps what it holds (its admitted budget report). What is left of
`memory.limit_mb` (and of the system's and the service cgroup's room, which MemoryBudget checks
too) must hold, one after the other:

1. the build child: a Python process with ONNX Runtime and OpenCV, the candidate being prepared
   and its FP32 reference (the accuracy gate), or the candidate and the serving model's FP32
   (the agreement gate), and for TensorRT the builder's workspace. Once a build has run, its
   measured peak (the child's own and its children's maximum RSS, kept in deployment.json)
   replaces the estimate when it is larger;
2. the candidate opened in the agent for the swap (its backend's memory plan).

On a Jetson the GPU's memory is the same RAM, so both count once against the same room. When
either does not fit, the rollout is refused with every term in MB.
"""

from typing import Any, Dict, List, Optional

from edge_agent.backends import create_backend
from edge_agent.backends.base import PreparedModel
from edge_agent.backends.onnxruntime import OnnxRuntimeConfig
from edge_agent.budget import MB, BudgetExceeded, MemoryBudget, MemoryPlan, MemoryTerm
from edge_agent.config import AgentConfig
from edge_agent.engine.trt_target import builder_workspace_bytes
from edge_agent.errors import EdgeAgentError

# A fresh Python with edge_agent, ONNX Runtime and OpenCV imported: 82 MB measured on x86-64
# (Python 3.11, ORT 1.32); rounded up for aarch64 libraries.
BUILD_RUNTIME_MB = 120


class AdmissionRefused(EdgeAgentError):
    def __init__(self, message: str, figures: Dict[str, Any]) -> None:
        super().__init__(message)
        self.figures = figures


def _plan(config: AgentConfig, precision: Optional[str] = None) -> MemoryPlan:
    path = config.model.path
    if precision == "fp32":
        backend = OnnxRuntimeConfig(precision="fp32", threads=getattr(config.backend, "threads", 1))
        config = config.model_copy(update={"backend": backend})
    return create_backend(PreparedModel(path, config.backend.precision, path), config).memory_plan()


def build_plan(candidate: AgentConfig, serving: AgentConfig, measured_peak_bytes: Optional[int]) -> MemoryPlan:
    """The build child's peak as terms (see the module's text)."""
    built = _plan(candidate).total_bytes
    reference = _plan(candidate, "fp32").total_bytes
    old = _plan(serving, "fp32").total_bytes
    workspace = builder_workspace_bytes(candidate) if candidate.backend.type == "tensorrt" else 0
    terms: List[MemoryTerm] = [MemoryTerm("build child runtime (Python, ONNX Runtime, OpenCV)", BUILD_RUNTIME_MB * MB,
                                          "host", key="build_runtime")]
    if workspace:
        terms.append(MemoryTerm("TensorRT builder workspace", workspace, "host", key="build_workspace"))
    terms.append(MemoryTerm("candidate and the larger of its FP32 reference or the serving model's FP32",
                            built + max(reference, old), "host", key="build_models"))
    estimate = sum(t.nbytes for t in terms)
    if measured_peak_bytes and measured_peak_bytes > estimate:
        terms.append(MemoryTerm("measured peak of the last build beyond this estimate",
                                measured_peak_bytes - estimate, "host", key="build_measured"))
    return MemoryPlan("build child", candidate.backend.precision, terms, unified=True)


def admit(budget: Any, candidate: AgentConfig, serving: AgentConfig,
          measured_peak_bytes: Optional[int] = None) -> Dict[str, Any]:
    """Figures for the rollout report; raises AdmissionRefused (with the figures) when either does not fit."""
    held = budget.report.total_bytes if budget is not None and budget.report is not None else 0
    limit_mb = max(0, candidate.memory.limit_mb - held // MB)
    figures: Dict[str, Any] = {"serving_mb": round(held / MB, 1), "left_mb": limit_mb}
    room = MemoryBudget(limit_mb, candidate.memory.margin_mb)
    for key, what, plan in (("build_mb", "to build and gate the candidate", build_plan(candidate, serving,
                                                                                      measured_peak_bytes)),
                            ("candidate_mb", "to serve the candidate", _plan(candidate))):
        try:
            report = room.admit(plan)
        except BudgetExceeded as exc:
            figures[key + "_terms"] = {t.name: round(t.mb, 1) for t in plan.terms}
            raise AdmissionRefused("not enough memory {} beside the serving model ({:.1f} MB held by it): {}".format(
                what, held / MB, exc), {"memory": figures}) from None
        figures[key] = round(report.total_bytes / MB, 1)
    return figures
