import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fake_tensorrt.py

from fake_tensorrt import make_fake_tensorrt  # noqa: E402


@pytest.fixture(params=["10", "8"])
def fake_trt(request, monkeypatch):
    """The fake TensorRT of one API generation, importable as `tensorrt` for the test's duration."""
    module = make_fake_tensorrt(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module
