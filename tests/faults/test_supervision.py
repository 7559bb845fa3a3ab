"""No background thread dies silently: the evidence writer, the jsonl sink, the live view's encoder
and HTTP server and the Prometheus server each crash once (a real thread, something it calls made
to raise) and are restarted by the supervisor, their failure counted and shown in the agent's
health, and then work again."""

import json
import time
import urllib.request

import numpy as np
import pytest

import edge_agent.evidence
import edge_agent.view.server
from edge_agent.evidence import EvidenceStore
from edge_agent.inspection import JsonlSink, read_results
from edge_agent.inspection_config import EvidenceConfig, JsonlSinkConfig
from edge_agent.metrics import Registry
from edge_agent.pipeline import InferenceResult
from edge_agent.postprocess import DefectRegion
from edge_agent.preprocess import Geometry
from edge_agent.sources import Frame
from edge_agent.view import LiveView, ViewConfig

from .supervision_helpers import SupervisorWatch, fail_once, wait_for


@pytest.fixture
def supervised():
    watch = SupervisorWatch()
    yield watch
    watch.close()


def _result(index, defect=True):
    image = np.full((48, 64, 3), 200, np.uint8)
    frame = Frame("cam", index, time.time(), time.monotonic(), image, None)
    regions = [DefectRegion("dark", 100, (10, 10, 10, 10), 0.9, 0.8)] if defect else []
    return InferenceResult(frame, regions, Geometry(1, 1, 0, 0, 0, 0, 64, 48), 5.0, 1, notes={})


def _get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def test_the_evidence_writer_restarts_and_saves_the_next_frame(tmp_path, supervised, monkeypatch):
    registry = Registry()
    store = EvidenceStore(EvidenceConfig(enabled=True), tmp_path / "store", ["dark"], registry).start()
    try:
        fail_once(monkeypatch, edge_agent.evidence, "draw_overlay", RuntimeError("overlay exploded"))
        store.on_result(_result(0))
        supervised.assert_recovered("evidence", "overlay exploded")
        store.on_result(_result(1))
        wait_for(lambda: registry.counter_total("evidence_saved") == 1, what="the next frame saved")
    finally:
        store.close()
    saved = sorted(p.name for p in (tmp_path / "store").glob("*/*"))
    assert len(saved) == 3 and all("-cam-1-NG" in name for name in saved), saved  # frame 0 was lost, 1 kept


def test_the_jsonl_sink_restarts_and_writes_the_next_line(tmp_path, supervised, monkeypatch):
    path = tmp_path / "results.jsonl"
    sink = JsonlSink(JsonlSinkConfig(enabled=True), path, Registry()).start()
    try:
        fail_once(monkeypatch, sink._lines, "write", RuntimeError("rotation bug"))  # a full disk is not a crash:
        sink.on_result(_result(0))  # test_local_sinks_disk_full.py
        supervised.assert_recovered("jsonl-sink", "rotation bug")
        sink.on_result(_result(1))
        wait_for(lambda: [row["index"] for row in read_results(path)] == [1], what="the next line")
    finally:
        sink.close()
    assert [row["index"] for row in read_results(path)] == [1]


def _view(tmp_path):
    return LiveView(ViewConfig(listen="127.0.0.1:0", max_fps=30), ["cam"], ["dark"], Registry(), tmp_path / "c")


def test_the_view_encoder_restarts_and_encodes_the_next_frame(tmp_path, supervised, monkeypatch):
    view = _view(tmp_path).start()
    try:
        fail_once(monkeypatch, edge_agent.view.server, "draw_overlay", MemoryError("no memory for the overlay"))
        view.on_result(_result(0))
        supervised.assert_recovered("view-encoder", "no memory for the overlay")
        assert view.jpeg("cam") is None  # the frame being encoded was lost
        time.sleep(0.05)  # past max_fps' period: the next frame is copied for the view
        view.on_result(_result(1))
        wait_for(lambda: view.jpeg("cam") is not None, what="the next frame encoded")
        status, body = _get(view.url + "frame/cam.jpg")
        assert status == 200 and body[:2] == b"\xff\xd8"
    finally:
        view.close()


def test_the_view_http_server_restarts_and_answers_again(tmp_path, supervised, monkeypatch):
    view = _view(tmp_path).start()
    try:
        # the serving loop itself fails (as when accept() runs out of file descriptors)
        fail_once(monkeypatch, view._server, "handle_request", OSError(24, "Too many open files"))
        supervised.assert_recovered("view-http", "Too many open files")
        status, body = _get(view.url)
        assert status == 200 and b"<html" in body.lower()
        status, body = _get(view.url + "api/state")
        assert status == 200 and json.loads(body)["sources"]["cam"]["seq"] == 0
    finally:
        view.close()


def test_the_prometheus_server_restarts_and_is_scraped_again(supervised, monkeypatch):
    pytest.importorskip("prometheus_client")
    from telemetry.telemetry_helpers import free_port

    from edge_agent.telemetry.prometheus import PrometheusExporter

    registry = Registry()
    registry.counter("frames_processed", source="cam0").inc(3)
    exporter = PrometheusExporter(registry, "127.0.0.1:{}".format(free_port())).start()
    try:
        fail_once(monkeypatch, exporter._server, "handle_request", OSError(24, "Too many open files"))
        supervised.assert_recovered("prometheus", "Too many open files")
        status, body = _get("http://127.0.0.1:{}/metrics".format(exporter.port))
        assert status == 200 and b'edge_agent_frames_processed_total{source="cam0"} 3.0' in body
    finally:
        exporter.close()
