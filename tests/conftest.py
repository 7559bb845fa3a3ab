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


def assert_one_line_from_check_and_at_start(path, failure, rows, capsys, caplog):
    """`edge-agent check` on config `path` exits 1 with `failure` as its one FAIL line among `rows` (a
    predicate on the output's lines) and its fix, no traceback; `demo` refuses at start with the same
    line as its only error."""
    import logging

    from edge_agent.cli import main

    line = failure.line()
    assert main(["check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    fails = [row for row in out.splitlines() if rows(row)]
    assert len(fails) == 1 and fails[0].endswith("{}: {}".format(failure.key, failure.message)), out
    assert "fix: " + failure.fix in out
    assert "Traceback" not in out
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(["demo", "--config", str(path), "--frames", "1", "--json"]) != 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [line]  # the same line at start, nothing else
    assert not any(r.exc_info for r in caplog.records)
