"""The outbox under a full disk (SQLite's max_page_count, and a real tmpfs when one can be
mounted), with rows that can never be sent, and a full bound: telemetry never stops (issue 14)."""

import json
import logging
import os
import subprocess

import pytest

from edge_agent.telemetry import outbox as outbox_module
from edge_agent.telemetry.outbox import KIND_EVENT, NewMessage, Outbox


def _event(seq, size=2000):
    return NewMessage(KIND_EVENT, "t/event", json.dumps({"seq": seq, "pad": "x" * size}).encode())


def _seqs(outbox):
    return [json.loads(row.payload)["seq"] for row in outbox.pending(10**6)]


def test_disk_full_keeps_messages_in_memory_and_stores_them_when_space_returns(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite", 10**9).open()
    outbox.add([_event(0)], "s", offline=False)
    pages = outbox.db.execute("PRAGMA page_count").fetchone()[0]
    outbox.db.execute("PRAGMA max_page_count = {}".format(pages + 2))  # SQLITE_FULL soon, like a full disk
    for seq in range(1, 40):
        outbox.add([_event(seq)], "s", offline=False)  # never raises
    assert outbox.write_error is not None and "full" in outbox.write_error
    assert outbox.spilled > 0 and outbox.lost_events == 0
    stored = outbox.rows
    assert stored + outbox.spilled == 40
    outbox.delete([row.id for row in outbox.pending(1)])  # an ack while full: no exception either
    outbox.db.execute("PRAGMA max_page_count = 1000000")  # space is back
    outbox.retry()
    assert outbox.write_error is None and outbox.spilled == 0
    assert _seqs(outbox) == list(range(1, 40))  # nothing lost, order kept
    outbox.close()


def test_a_spill_that_overflows_counts_what_it_loses(tmp_path, monkeypatch):
    monkeypatch.setattr(outbox_module, "SPILL_MAX_BYTES", 20_000)
    outbox = Outbox(tmp_path / "o.sqlite", 10**9).open()
    outbox.add([_event(0)], "s", offline=False)
    outbox.db.execute("PRAGMA max_page_count = {}".format(outbox.db.execute("PRAGMA page_count").fetchone()[0]))
    for seq in range(1, 101):
        outbox.add([_event(seq)], "s", offline=False)
    assert outbox.lost_events > 0
    assert outbox.lost_events + outbox.spilled + outbox.rows == 101  # every event stored, waiting or counted
    outbox.close()


def test_the_first_error_is_not_masked_by_a_failed_rollback(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite", 10**9).open()
    outbox.db.execute("PRAGMA max_page_count = {}".format(outbox.db.execute("PRAGMA page_count").fetchone()[0]))
    with pytest.raises(Exception) as info:
        outbox._write([(_event(1, size=50_000), "s", False)])
    assert "full" in str(info.value) and "rollback" not in str(info.value)
    outbox.close()


def test_a_row_that_can_never_be_sent_is_moved_aside_and_counted(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite", 10**9).open()
    outbox.add([_event(1), _event(2)], "s", offline=False)
    first = outbox.pending(1)[0]
    outbox.move_aside(first.id, "larger than the broker's maximum packet size")
    assert outbox.rejected == 1 and outbox.rows == 1
    assert _seqs(outbox) == [2]
    reason, = outbox.db.execute("SELECT reason FROM rejected").fetchone()
    assert "maximum packet size" in reason
    outbox.close()
    assert Outbox(tmp_path / "o.sqlite", 10**9).open().rows == 1  # not back after a restart


def test_the_outbox_full_warning_is_rate_limited(tmp_path, caplog):
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=5_000).open()
    with caplog.at_level(logging.WARNING):
        for seq in range(200):
            outbox.add([_event(seq)], "s", offline=True)
    assert outbox.dropped_events > 100
    assert len([r for r in caplog.records if "outbox full" in r.getMessage()]) == 1
    outbox.close()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 1 MB filesystem: needs root and mount(8); elsewhere the max_page_count tests above
    cover the same code path and this test says why it skipped."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a real full-disk test needs root to mount a tmpfs (max_page_count tests ran instead)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here ({}); max_page_count tests ran instead".format(proc.stderr.strip()))
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_real_full_filesystem_then_space_back(small_tmpfs):
    outbox = Outbox(small_tmpfs / "o.sqlite", 10**9).open()
    filler = small_tmpfs / "filler"
    fd = os.open(str(filler), os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: the filesystem is full
        pass
    finally:
        os.close(fd)
    for seq in range(50):
        outbox.add([_event(seq)], "s", offline=False)
    assert outbox.write_error is not None and outbox.spilled > 0
    filler.unlink()
    outbox.retry()
    assert outbox.write_error is None and outbox.spilled == 0
    assert _seqs(outbox) == list(range(50))
    outbox.close()
