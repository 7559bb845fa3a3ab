import json
import subprocess
import sys

import cv2
import numpy as np
from runtime_images import write_images

from edge_agent import selftest
from edge_agent.config_loader import load_config
from edge_agent.synthetic import SyntheticGenerator


def _config_file(write_config, model, tmp_path=None):
    data = {"model": {"path": str(model), "input": {"width": 64, "height": 64},
                      "output": {"classes": ["background", "dark"]}},
            "pipeline": {"max_batch": 2}}
    if tmp_path is not None:  # lets the engine prepare the FP16 / INT8 variants (calibration + gate)
        folder = write_images(tmp_path / "calibration", cv2, count=8)
        data.update(paths={"cache_dir": str(tmp_path / "cache")},
                    engine={"calibration": {"folder": str(folder), "min_images": 4},
                            "gate": {"validation_images": 4}})
    return write_config(data)


def _selftest(*args):
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", "--log-level", "warning", "selftest", *args],
                          capture_output=True, text=True, timeout=240)


def test_selftest_runs_the_cpu_parts_and_names_what_it_could_not_run(tmp_path, dark_model, write_config):
    config = _config_file(write_config, dark_model, tmp_path)
    report_path = tmp_path / "report.json"
    proc = _selftest("--config", str(config), "--iterations", "5", "--frames", "4", "--report", str(report_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    reference = report["rows"][0]
    assert (reference["backend"], reference["precision"], reference["status"]) == ("onnxruntime", "fp32", "pass")
    assert reference["fps"] > 0 and reference["latency_ms_p99"] >= reference["latency_ms_p50"] > 0
    assert reference["allocations_after_warmup"] == 0 and reference["memory_planned_mb"] > 0
    assert "calibration" in report["images"] and "held out" in report["images"]  # the configured images
    rows = {(r["backend"], r["precision"]): r for r in report["rows"]}
    assert set(rows) >= {("tensorrt", "fp16"), ("tensorrt", "int8")}
    for precision in ("fp16", "int8"):  # prepared by the engine, compared with FP32 on the golden frames
        row = rows[("onnxruntime", precision)]
        assert row["status"] == "pass" and row["mask_iou_vs_fp32"] >= 0.95, row
        assert row["allocations_after_warmup"] == 0
    for row in rows.values():
        if row["status"] == "skip":
            assert row["reason"] and any(row["reason"] in entry for entry in report["not_run"])
        else:
            assert row["status"] == "pass", row
    if rows[("tensorrt", "fp16")]["status"] == "skip":  # this machine: no TensorRT
        assert "could not run: tensorrt fp16" in proc.stdout
        gpu = _selftest("--config", str(config), "--iterations", "2", "--frames", "2", "--require-gpu", "--json")
        assert gpu.returncode == 1 and json.loads(gpu.stdout)["ok"] is False


def test_a_variant_that_disagrees_with_fp32_fails(tmp_path, dark_model, write_config):
    config = load_config(_config_file(write_config, dark_model))
    golden = [SyntheticGenerator(seed=selftest.GOLDEN_SEED).sample(i).image for i in range(3)]
    row, outputs = selftest._measure(config, golden, 3, None, 0.95)
    assert row["status"] == "pass"
    same, _ = selftest._measure(config, golden, 3, outputs, 0.95)
    assert same["status"] == "pass" and same["mask_iou_vs_fp32"] == 1.0 and same["max_probability_drift"] < 1e-6
    flipped = [-o for o in outputs]  # background and defect swapped
    different, _ = selftest._measure(config, golden, 3, flipped, 0.95)
    assert different["status"] == "fail" and "below 0.950" in different["reason"]
    assert different["max_probability_drift"] > 0.5


def test_agreement_of_identical_empty_masks_is_perfect(tmp_path, dark_model, write_config):
    config = load_config(_config_file(write_config, dark_model))
    no_defect = np.stack([np.full((64, 64), 5.0), np.full((64, 64), -5.0)]).astype(np.float32)
    assert selftest._agreement(config, [no_defect], [no_defect]) == (1.0, 0.0)


def test_selftest_compares_on_the_folder_sources_images(tmp_path, dark_model, write_config):
    folder = write_images(tmp_path / "parts", cv2, count=3)
    config = load_config(_config_file(write_config, dark_model), {"sources": [
        {"type": "folder", "name": "parts", "path": str(folder)}]})
    frames, described = selftest.golden_frames(config, 16)
    assert len(frames) == 3 and frames[0].shape == (96, 128, 3) and str(folder) in described
