"""Build and gate progress in a log: a line per phase and per 25 %, not one per image."""

import logging

from edge_agent.engine.progress import ProgressLog, ProgressPrinter


def test_a_log_gets_one_line_per_quarter_of_each_phase(caplog):
    caplog.set_level(logging.INFO, logger="edge_agent.engine")
    progress = ProgressLog()
    for precision in ("INT8", "FP16"):
        progress("accuracy gate: {} vs FP32 on 32 images".format(precision), 0.0)
        for n in range(1, 33):
            progress("accuracy gate: {} vs FP32, image {}/32".format(precision, n), n / 32)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10, lines  # 0 %, 25 %, 50 %, 75 %, 100 % for each precision
    assert lines[1].endswith("image 8/32 (25%)") and lines[5].startswith("accuracy gate: FP16")


def test_a_terminal_gets_a_redrawn_bar(tmp_path):
    class Terminal:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    terminal = Terminal()
    with ProgressPrinter(terminal) as progress:
        progress("accuracy gate: INT8 vs FP32, image 16/32", 0.5)
    assert "\r" in terminal.text and "50%" in terminal.text and "\n" not in terminal.text
