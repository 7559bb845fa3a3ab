"""Log lines carry journald priorities when stderr is the journal stream, and only then."""

import logging
import os
import subprocess
import sys
from pathlib import Path

from edge_agent.log_setup import JournalFormatter, journal_priority


def _edge_agent(args, stderr_path: Path, journal: bool):
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    with open(str(stderr_path), "w") as stderr:
        if journal:  # what systemd does: the stream's device and inode
            status = os.fstat(stderr.fileno())
            env["JOURNAL_STREAM"] = "{}:{}".format(status.st_dev, status.st_ino)
        proc = subprocess.run([sys.executable, "-m", "edge_agent.cli"] + args, stdout=subprocess.DEVNULL,
                              stderr=stderr, env=env, timeout=120, cwd="/")
    return proc.returncode, stderr_path.read_text().splitlines()


def test_under_systemd_every_line_starts_with_its_priority(tmp_path):
    code, lines = _edge_agent(["demo", "--frames", "3", "--json"], tmp_path / "demo.err", journal=True)
    assert code == 0 and lines
    assert all(line.startswith("<6>INFO ") for line in lines), lines  # no timestamp: journald adds it
    code, lines = _edge_agent(["run", "--config", str(tmp_path / "missing.yaml")], tmp_path / "run.err", journal=True)
    assert code == 2 and lines[-1].startswith("<3>ERROR ") and "config file not found" in lines[-1], lines


def test_in_a_terminal_or_a_file_there_is_no_prefix(tmp_path):
    # JOURNAL_STREAM inherited from a shell started by systemd names another stream: no prefixes
    code, lines = _edge_agent(["run", "--config", str(tmp_path / "missing.yaml")], tmp_path / "run.err", journal=False)
    assert code == 2 and not lines[-1].startswith("<") and " ERROR " in lines[-1], lines


def test_a_traceback_keeps_the_priority_on_every_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    text = JournalFormatter("%(message)s").format(record)
    assert len(text.splitlines()) > 2 and all(line.startswith("<3>") for line in text.splitlines())
    assert [journal_priority(level) for level in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]
