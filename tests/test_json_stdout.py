"""Every --json prints exactly one JSON document on stdout, whatever libraries print meanwhile."""

import json
import subprocess
import sys
import textwrap

import yaml

from edge_agent.engine.calibration import write_demo_sets

from conftest import REPO
from onnx_models import tiny_unet_model


def test_python_and_native_chatter_goes_to_stderr():
    script = textwrap.dedent("""
        import os
        from edge_agent.json_stdout import print_document, reserved_stdout
        with reserved_stdout():
            print("Collecting tensor data and making histogram ...")
            os.write(1, b"native library chatter on descriptor 1\\n")
            print_document({"ok": True})
        print("after: stdout is stdout again")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['{"ok": true}', "after: stdout is stdout again"]
    assert "Collecting tensor data" in proc.stderr and "native library chatter" in proc.stderr


def test_build_json_with_int8_calibration_is_pure_json(tmp_path):
    model = tiny_unet_model(tmp_path / "tiny.onnx")
    write_demo_sets(tmp_path / "sets", calibration_count=12, validation_count=4)
    images = tmp_path / "sets" / "calibration"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"path": str(model), "input": {"width": 32, "height": 32}},
        "paths": {"cache_dir": str(tmp_path / "cache")},
        "engine": {"calibration": {"folder": str(images), "min_images": 4},
                   "gate": {"validation_images": 4, "iou_floor": 0.0}}}))
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "--log-level", "debug", "build", "--config",
                           str(config), "--precision", "int8", "--json"], capture_output=True, text=True,
                          cwd=str(REPO), timeout=300)
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert document["precision_requested"] == "int8" and document["cache"] == "built"
    assert "Collecting tensor data" in proc.stderr  # ONNX Runtime's quantizer chatter, now a log line
