import subprocess
import sys

import pytest

from edge_agent.budget import MB, BudgetExceeded, MemoryBudget, MemoryPlan, MemoryTerm
from edge_agent.metrics import Registry

TERMS = [MemoryTerm("engine (weights)", 700 * MB, "device", key="engine"),
         MemoryTerm("context scratch", 300 * MB, "device", scales_with_batch=True, key="scratch"),
         MemoryTerm("I/O buffers x 2 slots (device)", 200 * MB, "device", True, True, key="io"),
         MemoryTerm("host staging (pinned) x 2 slots", 200 * MB, "host", True, True, key="staging")]


def plan(unified=True, precision="fp32", already_held=0):
    return MemoryPlan("tensorrt", precision, TERMS, unified=unified, max_batch=8, slots=2, already_held=already_held)


def test_fitting_plan_is_admitted_and_published():
    budget = MemoryBudget(2048, 64, available=lambda: 4096 * MB)
    report = budget.admit(plan())
    assert report.total_bytes == 1464 * MB
    registry = Registry()
    budget.publish(registry)
    gauges = {(name, dict(labels).get("term")): value for name, labels, value in registry.gauges()}
    assert gauges[("memory_plan_mb", "scratch")] == 300 and gauges[("memory_plan_mb", "engine")] == 700
    assert gauges[("memory_plan_mb", "margin")] == 64
    assert gauges[("memory_plan_total_mb", None)] == 1464 and gauges[("memory_limit_mb", None)] == 2048
    assert report.as_dict()["terms_mb"]["engine (weights)"] == 700
    assert registry.unit("memory_plan_mb") == "mb"  # telemetry keys are lowercase: memory_plan_scratch_mb


def test_published_figures_become_telemetry_keys_and_labels():
    from edge_agent.telemetry.window import MetricsWindow

    budget = MemoryBudget(2048, 64, available=lambda: 4096 * MB)
    budget.admit(plan())
    registry = Registry()
    budget.publish(registry)
    values, _ = MetricsWindow(registry).collect({}, {})
    terms = {row["term"]: row["memory_plan_mb"] for row in values["by_term"]}  # the term is a label, not a key part
    assert terms["scratch"] == 300 and terms["margin"] == 64
    assert values["memory_limit_mb"] == 2048 and values["memory_plan_total_mb"] == 1464


def test_over_the_limit_lists_every_term_and_the_fixes():
    with pytest.raises(BudgetExceeded) as info:
        MemoryBudget(1024, 64, available=lambda: 8192 * MB).admit(plan())
    text = str(info.value)
    assert info.value.exit_code == 3
    assert "needs 1464.0 MB but memory.limit_mb is 1024" in text
    for line in ("engine (weights)", "context scratch", "I/O buffers x 2 slots (device)",
                 "host staging (pinned) x 2 slots", "margin (memory.margin_mb)", "total"):
        assert line in text
    assert "700.0 MB" in text and "1464.0 MB" in text
    assert "pipeline.max_batch from 8 to 4 (saves about 350.0 MB)" in text
    assert "memory.slots from 2 to 1 (saves 200.0 MB" in text
    assert "backend.precision: fp16 or int8" in text


def test_on_jetson_every_term_counts_against_memavailable():
    budget = MemoryBudget(4096, 64, available=lambda: 1000 * MB)
    with pytest.raises(BudgetExceeded, match=r"1464.0 MB more of system memory but only 1000.0 MB.*shared by CPU"):
        budget.admit(plan(unified=True))


def test_on_a_discrete_gpu_device_terms_count_against_gpu_free_memory():
    budget = MemoryBudget(4096, 64, available=lambda: 1000 * MB, device_free=lambda: 2000 * MB)
    budget.admit(plan(unified=False))  # host 264 MB of 1000, device 1200 MB of 2000
    tight = MemoryBudget(4096, 64, available=lambda: 1000 * MB, device_free=lambda: 1000 * MB)
    with pytest.raises(BudgetExceeded, match="1200.0 MB of GPU memory but the GPU has 1000.0 MB free"):
        tight.admit(plan(unified=False))


def test_memory_already_held_is_not_asked_for_twice():
    budget = MemoryBudget(4096, 64, available=lambda: 800 * MB)
    budget.admit(plan(already_held=700 * MB))  # the engine is loaded: 764 MB more still fit


def test_demo_refuses_to_start_over_budget_with_exit_code_3(tmp_path, dark_model, write_config):
    config = write_config({"model": {"path": str(dark_model), "input": {"width": 64, "height": 64},
                                     "output": {"classes": ["background", "defect"]}},
                           "pipeline": {"max_batch": 64}, "memory": {"limit_mb": 16, "margin_mb": 8}})
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "demo", "--config", str(config), "--frames", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "memory budget: onnxruntime fp32 (max batch 64, 1 slot) does not fit" in proc.stderr
    assert "I/O buffers" in proc.stderr and "lower pipeline.max_batch from 64 to 32" in proc.stderr
    assert "Traceback" not in proc.stderr
