"""Fixtures of tests/engine, imported by its test modules (a second conftest.py would shadow the top one)."""

import pytest

from edge_agent.config_loader import load_config
from edge_agent.engine.calibration import write_demo_sets

from onnx_models import tiny_unet_model


@pytest.fixture(scope="session", name="image_sets")
def image_sets_fixture(tmp_path_factory):
    """Synthetic calibration (24) and validation (8) images written as PNG files."""
    folder = tmp_path_factory.mktemp("sets")
    write_demo_sets(folder, calibration_count=24, validation_count=8)
    return folder


@pytest.fixture(name="engine_config")
def engine_config_fixture(tmp_path, image_sets):
    """A config for a 32x32 tiny U-Net with the image sets above and a cache in tmp_path."""
    model = tiny_unet_model(tmp_path / "tiny.onnx")

    def make(**engine):
        settings = {"calibration": {"folder": str(image_sets / "calibration"), "min_images": 16},
                    "gate": {"validation_folder": str(image_sets / "validation"), "iou_floor": 0.5}}
        for key, value in engine.items():
            settings[key] = dict(settings.get(key, {}), **value)
        return load_config(None, {"model": {"path": str(model), "input": {"width": 32, "height": 32}},
                                  "paths": {"cache_dir": str(tmp_path / "cache")}, "engine": settings})

    return make
