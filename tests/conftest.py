import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/onnx_models.py for every test folder

from onnx_models import dark_spot_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dark_model(tmp_path):
    """A 64x64 two-class model that marks dark pixels as defects (see onnx_models.py)."""
    return dark_spot_model(tmp_path / "dark.onnx")


@pytest.fixture
def write_config(tmp_path):
    """Write a dict (or raw text) as a YAML config file and return its path."""

    def write(content, name="config.yaml"):
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return path

    return write


def dark_square_image(width=160, height=120, box=(40, 30, 40, 30), background=200):
    """A light image with one black rectangle at box = (x, y, w, h)."""
    image = np.full((height, width, 3), background, np.uint8)
    x, y, w, h = box
    image[y:y + h, x:x + w] = 0
    return image
