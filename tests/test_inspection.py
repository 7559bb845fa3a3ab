"""`edge-agent inspect` as a user types it, with a segmentation model the project has never seen,
and the `sinks.jsonl` file sink of the running agent (rotated by size)."""

import json
import threading

import cv2
import numpy as np
import pytest

from edge_agent.agent import running_pipeline
from edge_agent.cli import main
from edge_agent.config_loader import load_config
from edge_agent.inspection import JsonlSink, RotatingLines, read_results
from edge_agent.inspection_config import JsonlSinkConfig
from edge_agent.metrics import Registry

from onnx_models import dark_spot_model

# ground truth: image name -> defect boxes (x, y, w, h) in image pixels, on 640x480 light images
TRUTH = {
    "part-001.png": [(100, 80, 60, 40)],
    "part-002.png": [],
    "part-003.png": [(400, 300, 120, 90), (40, 380, 50, 50)],
    "part-004.jpg": [(500, 40, 80, 100)],
    "part-005.png": [],
}


def _write_images(folder, size=(640, 480)):
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name, boxes in TRUTH.items():
        image = np.clip(rng.normal(190, 6, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        for x, y, w, h in boxes:
            image[y:y + h, x:x + w] = 20
        cv2.imwrite(str(folder / name), image)


def _foreign_config(tmp_path, write_config):
    """A model unknown to the project: its own input name, size (160x120 NHWC, BGR), normalization
    (pixels - 128) / 64, a half-resolution one-channel logit output named 'mask'; configured per docs/byom.md."""
    dark_spot_model(tmp_path / "foreign.onnx", input_name="pixels", output_name="mask", size=(120, 160),
                    layout="NHWC", activation="sigmoid", threshold=-0.5, downsample=2)
    return write_config({
        "model": {"path": "foreign.onnx",
                  "input": {"name": "pixels", "width": 160, "height": 120, "layout": "NHWC", "color": "BGR",
                            "scale": 1.0, "mean": [128, 128, 128], "std": [64, 64, 64]},
                  "output": {"name": "mask", "layout": "NHWC", "activation": "sigmoid", "classes": ["defect"],
                             "background": None},
                  "thresholds": {"min_area_px": 200}}})


def _assert_matches_truth(rows):
    assert sorted(r["file"] for r in rows) == sorted(TRUTH)
    for row in rows:
        boxes = TRUTH[row["file"]]
        assert (row["width"], row["height"]) == (640, 480)
        assert row["verdict"] == ("NG" if boxes else "OK"), row
        found = sorted(tuple(r["bbox"]) for r in row["regions"])
        assert len(found) == len(boxes), row
        # one output pixel covers 8x8 image pixels (640x480 -> 160x120 input -> 80x60 output)
        for got, want in zip(found, sorted(boxes)):
            assert all(abs(a - b) <= 8 for a, b in zip(got, want)), (row["file"], got, want)
        for region, want in zip(sorted(row["regions"], key=lambda r: r["bbox"]), sorted(boxes)):
            assert region["class"] == "defect"
            assert abs(region["area_px"] - want[2] * want[3]) <= 0.2 * want[2] * want[3]
            assert 0.5 <= region["score_mean"] <= region["score_max"] <= 1.0
        assert row["latency_ms"] > 0


def test_inspect_a_foreign_model_matches_ground_truth(tmp_path, write_config, capsys):
    _write_images(tmp_path / "images")
    config = _foreign_config(tmp_path, write_config)
    out = tmp_path / "out"
    code = main(["inspect", "--config", str(config), "--images", str(tmp_path / "images"), "--out", str(out),
                 "--overlays", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 5 and summary["ng"] == 3 and summary["defects"] == {"defect": 4}
    assert summary["warnings"] == []
    _assert_matches_truth(read_results(out / "results.jsonl"))
    overlay = cv2.imread(str(out / "overlays" / "part-003.png.jpg"))
    original = cv2.imread(str(tmp_path / "images" / "part-003.png"))
    assert overlay.shape == original.shape
    x, y, w, h = TRUTH["part-003.png"][0]
    assert overlay[y + h // 2, x + w // 2, 2] > original[y + h // 2, x + w // 2, 2] + 40  # the mask is tinted red
    # away from defects the overlay is the image (up to JPEG noise on a noisy surface)
    assert abs(overlay[5:60, 200:300].mean() - original[5:60, 200:300].mean()) < 3


def test_inspect_a_video_and_say_when_nothing_is_found(tmp_path, write_config, capsys):
    """mean 0 / std 1 left at the defaults for a model trained on (pixel - 128) / 64: nothing found;
    inspect says so at the end instead of passing silently."""
    dark_spot_model(tmp_path / "m.onnx", size=(120, 160), threshold=-0.5)
    config = write_config({"model": {"path": "m.onnx", "input": {"width": 160, "height": 120},
                                     "output": {"classes": ["background", "dark"]}}})
    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for i in range(6):
        image = np.full((240, 320, 3), 190, np.uint8)
        image[50:100, 20 + 30 * i:80 + 30 * i] = 10
        writer.write(image)
    writer.release()
    assert main(["inspect", "--config", str(config), "--video", str(video), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "6 image(s)" in out and "0 NG" in out
    assert "WARN  no defect found in any of the 6 image(s)" in out and "model.input scale/mean/std" in out
    rows = read_results(tmp_path / "o" / "results.jsonl")
    assert [r["file"] for r in rows] == ["line.avi#{}".format(i) for i in range(6)]


@pytest.mark.parametrize("argv, words", [
    (["--images", "missing-folder"], "--images missing-folder: not a folder"),
    (["--video", "missing.mp4"], "--video missing.mp4: no such file"),
])
def test_inspect_bad_input_is_one_line(argv, words, tmp_path, write_config, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dark_spot_model(tmp_path / "m.onnx")
    config = write_config({"model": {"path": "m.onnx", "input": {"width": 64, "height": 64},
                                     "output": {"classes": ["background", "dark"]}}})
    assert main(["inspect", "--config", str(config)] + argv) == 1
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][0].startswith(words)


def test_rotating_lines_keep_whole_lines_and_delete_the_oldest(tmp_path):
    lines = RotatingLines(tmp_path / "r.jsonl", max_bytes=200, keep=2).open()
    for i in range(40):
        lines.write(json.dumps({"i": i, "pad": "x" * 20}))
    lines.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    kept = []
    for name in ("r.jsonl.2", "r.jsonl.1", "r.jsonl"):
        assert (tmp_path / name).stat().st_size <= 200
        kept += [row["i"] for row in read_results(tmp_path / name)]
    assert kept == list(range(40 - len(kept), 40))  # the newest lines, in order, none cut
    assert lines.rotations > 2


def test_the_running_agent_writes_the_same_lines_to_a_rotated_jsonl_file(tmp_path, write_config):
    _write_images(tmp_path / "images")
    path = _foreign_config(tmp_path, write_config)
    config = load_config(path, {"sources": [{"type": "folder", "path": str(tmp_path / "images")}],
                                "sinks": {"jsonl": {"enabled": True, "path": str(tmp_path / "r.jsonl"),
                                                    "max_mb": 0.0004, "keep": 10}}})
    registry = Registry()
    sink = JsonlSink(config.sinks.jsonl, config.sinks.jsonl.path, registry).start()
    with running_pipeline(config, registry, [sink]) as pipeline:
        pipeline.run(threading.Event())
    sink.close()
    rows = []
    for name in ["r.jsonl.{}".format(n) for n in range(10, 0, -1)] + ["r.jsonl"]:
        if (tmp_path / name).exists():
            rows += read_results(tmp_path / name)
    assert len(list(tmp_path.glob("r.jsonl.*"))) == 4  # 5 lines of ~300 bytes, rotated at 420 bytes
    for row in rows:
        row["file"] = row["file"].rsplit("/", 1)[-1]
    _assert_matches_truth(rows)
    assert registry.counter_total("jsonl_lines") == 5
    assert JsonlSinkConfig().path is None
