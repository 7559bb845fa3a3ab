"""A full disk under the evidence store and the jsonl sink (a real 1 MB tmpfs): what cannot be
written is dropped, counted and reported in the agent's health; the writer threads do not crash
(so the supervisor never gives up and systemd never restarts inspection for it), and writing
resumes by itself when space comes back."""

import time

import numpy as np
import pytest

from edge_agent.evidence import EvidenceStore
from edge_agent.inspection import JsonlSink, read_results
from edge_agent.inspection_config import EvidenceConfig, JsonlSinkConfig
from edge_agent.metrics import Registry
from edge_agent.pipeline import InferenceResult
from edge_agent.postprocess import DefectRegion
from edge_agent.preprocess import Geometry
from edge_agent.sources import Frame
from edge_agent.supervisor import SUPERVISOR

from .disk_helpers import fill, mount_tmpfs
from .supervision_helpers import wait_for


@pytest.fixture
def tiny_disk(tmp_path):
    unmount = mount_tmpfs(tmp_path / "disk", "1m", "the local writers' disk-full path is not run")
    yield tmp_path / "disk"
    unmount()


def _result(index):
    image = np.random.default_rng(index).integers(0, 255, (240, 320, 3), np.uint8)  # JPEGs of ~100 KB
    frame = Frame("cam", index, time.time(), time.monotonic(), image, None)
    regions = [DefectRegion("dark", 100, (10, 10, 10, 10), 0.9, 0.8)]
    return InferenceResult(frame, regions, Geometry(1, 1, 0, 0, 0, 0, 320, 240), 5.0, 1, notes={})


def _task_failures(name):
    return sum(s.failures for s in SUPERVISOR.tasks() if s.name == name)


def test_a_full_disk_drops_and_reports_then_recovers(tiny_disk):
    registry = Registry()
    store = EvidenceStore(EvidenceConfig(enabled=True, max_mb=64), tiny_disk / "evidence", ["dark"], registry).start()
    sink = JsonlSink(JsonlSinkConfig(enabled=True), tiny_disk / "results.jsonl", registry).start()
    failures_before = _task_failures("evidence") + _task_failures("jsonl-sink")
    filler = fill(tiny_disk)
    try:
        for index in range(6):
            result = _result(index)
            store.on_result(result)
            sink.on_result(result)
            time.sleep(0.05)
        wait_for(lambda: registry.counter_total("evidence_write_errors") >= 3
                 and registry.counter_total("jsonl_write_errors") >= 1, what="write errors counted")
        reasons = " ".join(registry.health.snapshot().reasons)
        assert "evidence: cannot write to" in reasons and "No space left on device" in reasons, reasons
        assert "jsonl: cannot write to" in reasons, reasons
        assert _task_failures("evidence") + _task_failures("jsonl-sink") == failures_before  # not a crash
        assert not list((tiny_disk / "evidence").glob("*/*.tmp"))  # no half-written files left

        filler.unlink()  # space comes back
        saved = registry.counter_total("evidence_saved")
        result = _result(99)
        store.on_result(result)
        sink.on_result(result)
        wait_for(lambda: registry.counter_total("evidence_saved") == saved + 1, what="evidence saved again")
        wait_for(lambda: 99 in [row["index"] for row in read_results(tiny_disk / "results.jsonl")],
                 what="a jsonl line written again")
        wait_for(lambda: not registry.health.snapshot().reasons, what="health clear again")
    finally:
        store.close()
        sink.close()
