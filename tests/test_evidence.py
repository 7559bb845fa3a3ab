"""The evidence store: NG frames (and every Nth OK one) saved with overlay and verdict JSON,
size-capped with the oldest deleted first and counted; through `edge-agent run` with a real broker,
the MQTT defect event names the evidence file (and the image file), and sinks.jsonl gets the lines."""

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from telemetry.telemetry_helpers import MOSQUITTO, Broker, Collector, load_schema, start_agent, stop_agent

from edge_agent.agent import running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.evidence import EvidenceStore
from edge_agent.inspection import read_results
from edge_agent.metrics import Registry

from conftest import dark_square_image

NG_BOXES = {0: (20, 20, 40, 30), 3: (90, 50, 30, 30), 5: (10, 70, 50, 40)}  # image index -> defect box


def _images(folder, count=8):
    folder.mkdir()
    for i in range(count):
        image = dark_square_image(box=NG_BOXES[i]) if i in NG_BOXES else np.full((120, 160, 3), 200, np.uint8)
        cv2.imwrite(str(folder / "img-{:02d}.png".format(i)), image)


def _config(tmp_path, model, **extra):
    data = {"model": {"path": str(model), "input": {"width": 64, "height": 64},
                      "output": {"classes": ["background", "dark"]}, "thresholds": {"min_area_px": 50}},
            "sources": [{"type": "folder", "name": "bench", "path": str(tmp_path / "images")}],
            "paths": {"state_dir": str(tmp_path / "state")}}
    data.update(extra)
    return data


def _items(store):
    return sorted(str(p.relative_to(store))[:-len(".json")] for p in store.glob("*/*.json"))


def _run_with_store(tmp_path, dark_model, evidence):
    """The folder of test images through a pipeline with the evidence store in tmp_path/store."""
    _images(tmp_path / "images")
    config = load_config(None, _config(tmp_path, dark_model, evidence=evidence))
    registry = Registry()
    store = EvidenceStore(config.evidence, tmp_path / "store", ["dark"], registry).start()
    with running_pipeline(config, registry, [store]) as pipeline:
        pipeline.run(threading.Event())
    store.close()
    return config, registry


def test_ng_frames_and_sampled_ok_frames_are_kept_with_overlay_and_verdict(tmp_path, dark_model):
    config, registry = _run_with_store(tmp_path, dark_model, {"enabled": True, "ok_sample_every": 2})
    items = _items(tmp_path / "store")
    verdicts = [json.loads((tmp_path / "store" / (name + ".json")).read_text()) for name in items]
    ng = sorted(int(v["file"][-6:-4]) for v in verdicts if v["verdict"] == "NG")
    ok = sorted(int(v["file"][-6:-4]) for v in verdicts if v["verdict"] == "OK")
    assert ng == [0, 3, 5]
    assert ok == [1, 4, 7]  # every 2nd OK frame from the first: OK frames are 1, 2, 4, 6, 7
    for name, record in zip(items, verdicts):
        frame = cv2.imread(str(tmp_path / "store" / (name + ".jpg")))
        overlay = cv2.imread(str(tmp_path / "store" / (name + ".overlay.jpg")))
        assert frame.shape == overlay.shape == (120, 160, 3)
        assert record["evidence"] == name + ".jpg"
        if record["verdict"] == "NG":
            x, y, w, h = NG_BOXES[int(record["file"][-6:-4])]
            (region,) = record["regions"]
            assert all(abs(a - b) <= 3 for a, b in zip(region["bbox"], (x, y, w, h)))
            assert overlay[y + h // 2, x + w // 2, 2] > frame[y + h // 2, x + w // 2, 2] + 40  # tinted red
    assert registry.counter_total("evidence_saved") == 6


def test_the_store_is_capped_oldest_first_and_counts_deletions(tmp_path, dark_model):
    config, registry = _run_with_store(tmp_path, dark_model, {"enabled": True, "ok_sample_every": 1, "max_mb": 0.02})
    items = _items(tmp_path / "store")
    size = sum(p.stat().st_size for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert size <= 0.02 * 2**20
    deleted = registry.counter_total("evidence_deleted")
    assert deleted >= 1 and len(items) + deleted == 8
    kept = [int(json.loads((tmp_path / "store" / (n + ".json")).read_text())["index"]) for n in items]
    assert kept == list(range(8 - len(kept), 8))  # the newest survive
    assert not list((tmp_path / "store").rglob("*.tmp"))
    # a restart finds what is there and keeps the cap
    again = EvidenceStore(config.evidence, tmp_path / "store", ["dark"], Registry()).start()
    assert len(again._items) == len(items) and again.size == size
    again.close()


def test_run_publishes_events_naming_the_evidence_and_writes_jsonl(tmp_path, dark_model):
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed: run scripts/test.sh (it installs it)")
    _images(tmp_path / "images")
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker").start()
    collector = Collector(broker.port)
    data = _config(tmp_path, dark_model, evidence={"enabled": True, "ok_sample_every": 0},
                   sinks={"jsonl": {"enabled": True}},
                   mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "metrics_interval_s": 0.5},
                   device={"id": "cell-9", "site": "plant-a", "line": "line-2"})
    (tmp_path / "agent.yaml").write_text(json.dumps(data))
    agent = start_agent(tmp_path / "agent.yaml", tmp_path / "agent.log")
    try:
        collector.wait_for(lambda c: len(c.json("/events/defect")) >= 3, what="3 defect events")
        deadline = time.monotonic() + 20
        while agent.poll() is None and time.monotonic() < deadline:  # the folder ends: the agent exits 0
            time.sleep(0.1)
    finally:
        code = stop_agent(agent)
        collector.close()
        broker.stop()
    log = (tmp_path / "agent.log").read_text()
    assert code == 0, log
    events = collector.json("/events/defect")
    schema = load_schema("defect")
    import jsonschema

    store = tmp_path / "state" / "evidence"
    for event in events:
        jsonschema.validate(event, schema)
        assert Path(event["file"]).name == "img-{:02d}.png".format(event["frame_index"])
        saved = json.loads((store / event["evidence"]).with_suffix(".json").read_text())
        assert saved["index"] == event["frame_index"] and saved["verdict"] == "NG"
        assert (store / event["evidence"].replace(".jpg", ".overlay.jpg")).exists()
    assert sorted(e["frame_index"] for e in events) == [0, 3, 5]
    rows = read_results(tmp_path / "state" / "results.jsonl")
    assert [r["index"] for r in rows] == list(range(8))
    assert [r["verdict"] for r in rows] == ["NG" if i in NG_BOXES else "OK" for i in range(8)]
