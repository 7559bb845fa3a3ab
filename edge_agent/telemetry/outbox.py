"""Store-and-forward: every outgoing message is written to an SQLite outbox (WAL) first and deleted
only when the broker acknowledges it, so a dead broker, a lost network or a killed process loses
nothing that was committed.

One thread owns the connection (the telemetry loop); nothing here is called from the frame loop.
The outbox is bounded by payload bytes: when full it drops the oldest metrics first, then, only if
nothing but events is left, the oldest events, and counts both (one warning a minute at most).

A write that fails (disk full, I/O error) never stops telemetry: the messages wait in a bounded
memory spill and are written, in order, as soon as the disk takes them again; only what overflows
the spill is lost, and counted. A row the broker can never take (larger than its packet limit) is
moved aside to the `rejected` table, counted, and never resent.
"""

import collections
import logging
import sqlite3
import time
from pathlib import Path
from typing import Deque, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from edge_agent.errors import EdgeAgentError

log = logging.getLogger(__name__)

KIND_METRICS = "metrics"
KIND_EVENT = "event"
KIND_REPLY = "reply"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    session TEXT NOT NULL,
    queued_offline INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, id);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""
SPILL_MAX_BYTES = 8 * 2**20  # messages held in memory while the disk refuses writes
REJECTED_KEEP = 100  # rows moved aside that are kept for inspection (the count goes on)
WARN_EVERY_S = 60.0


class OutboxRow(NamedTuple):
    id: int
    kind: str
    topic: str
    payload: bytes
    session: str
    queued_offline: bool


class NewMessage(NamedTuple):
    kind: str
    topic: str
    payload: bytes


class Outbox:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.dropped_metrics = 0
        self.dropped_events = 0
        self.lost_metrics = 0  # could not be written (disk full) and overflowed the memory spill
        self.lost_events = 0
        self.rejected = 0  # moved aside: the broker can never take them
        self.write_error: Optional[str] = None  # the disk's last refusal, None once writes work again
        self._spill: Deque[Tuple[NewMessage, str, bool]] = collections.deque()
        self._spill_bytes = 0
        self._unapplied_deletes: List[int] = []
        self._warned_at: Dict[str, float] = {}
        self._db: Optional[sqlite3.Connection] = None
        self._bytes = 0
        self._rows = 0

    def open(self) -> "Outbox":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            self._rows, total = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        except sqlite3.DatabaseError as exc:
            raise OutboxError("telemetry outbox {}: {}. Check that the state directory is writable and the file is "
                              "an SQLite database (move a damaged one aside).".format(self.path, exc)) from None
        except OSError as exc:
            raise OutboxError("telemetry outbox {}: {}. Check paths.state_dir.".format(self.path, exc)) from None
        self._bytes = int(total)
        self._db = db
        if self._rows:
            log.info("telemetry outbox holds %d unsent message(s) (%.1f kB) from before; they will be sent first",
                     self._rows, self._bytes / 1024)
        return self

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError("telemetry outbox {} is not open".format(self.path))
        return self._db

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def spilled(self) -> int:
        """Messages waiting in memory for the disk to take them again."""
        return len(self._spill)

    def add(self, messages: Sequence[NewMessage], session: str, offline: bool) -> None:
        """Store messages in one transaction; durable against power loss when they include events.
        When the disk refuses, they wait in the memory spill (see the module docstring)."""
        if not messages:
            return
        pending = [(m, session, offline) for m in messages]
        if self._spill:  # order is kept: what waits in memory goes first
            pending = list(self._spill) + pending
        try:
            self._write(pending)
        except sqlite3.OperationalError as exc:  # "database or disk is full", "disk I/O error"
            self._spill_all(pending, str(exc))
            return
        if self._spill or self.write_error is not None:
            log.warning("telemetry outbox %s: writing works again; %d message(s) kept in memory were stored",
                        self.path, len(self._spill))
        self._spill.clear()
        self._spill_bytes = 0
        self.write_error = None
        self.retry_deletes()

    def _write(self, pending: Sequence[Tuple[NewMessage, str, bool]]) -> None:
        durable = any(m.kind != KIND_METRICS for m, _, _ in pending)
        db = self.db
        # FULL syncs the WAL on this commit (events must survive a power cut); NORMAL survives a
        # process kill, which is enough for the periodic metrics.
        db.execute("PRAGMA synchronous={}".format("FULL" if durable else "NORMAL"))
        rows, size, dropped = self._rows, self._bytes, (self.dropped_metrics, self.dropped_events)
        try:
            with self._transaction():
                db.executemany(
                    "INSERT INTO outbox (kind, topic, payload, session, queued_offline) VALUES (?, ?, ?, ?, ?)",
                    [(m.kind, m.topic, m.payload, session, int(offline)) for m, session, offline in pending])
                self._rows += len(pending)
                self._enforce_bound(sum(len(m.payload) for m, _, _ in pending))
        except sqlite3.DatabaseError:
            self._rows, self._bytes = rows, size  # rolled back: the counts too
            self.dropped_metrics, self.dropped_events = dropped
            raise

    def _transaction(self) -> "_Transaction":
        return _Transaction(self.db)

    def _spill_all(self, pending: Sequence[Tuple[NewMessage, str, bool]], error: str) -> None:
        self._spill = collections.deque(pending)
        self._spill_bytes = sum(len(m.payload) for m, _, _ in pending)
        lost_metrics = lost_events = 0
        while self._spill_bytes > SPILL_MAX_BYTES and self._spill:
            # the oldest metrics go first, as in the bound on disk; events only when nothing else is left
            victim = next((item for item in self._spill if item[0].kind == KIND_METRICS), self._spill[0])
            self._spill.remove(victim)
            self._spill_bytes -= len(victim[0].payload)
            if victim[0].kind == KIND_METRICS:
                lost_metrics += 1
            else:
                lost_events += 1
        self.lost_metrics += lost_metrics
        self.lost_events += lost_events
        first = self.write_error is None
        self.write_error = error
        if first or self._may_warn("write"):
            log.error("telemetry outbox %s cannot be written: %s. %d message(s) wait in memory (up to %.0f MB) and "
                      "are stored when the disk takes them again; %d event(s) and %d metrics message(s) lost so "
                      "far. Free space in %s.", self.path, error, len(self._spill), SPILL_MAX_BYTES / 2**20,
                      self.lost_events, self.lost_metrics, self.path.parent)

    def retry(self) -> None:
        """Write what waits in memory (call periodically while `write_error` is set)."""
        if self._spill:
            self._retry_spill()
        self.retry_deletes()

    def _retry_spill(self) -> None:
        pending = list(self._spill)
        try:
            self._write(pending)
        except sqlite3.OperationalError as exc:
            self._spill_all(pending, str(exc))
            return
        log.warning("telemetry outbox %s: writing works again; %d message(s) kept in memory were stored",
                    self.path, len(pending))
        self._spill.clear()
        self._spill_bytes = 0
        self.write_error = None

    def _may_warn(self, what: str) -> bool:
        now = time.monotonic()
        if now - self._warned_at.get(what, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned_at[what] = now
            return True
        return False

    def _enforce_bound(self, added: int) -> None:
        self._bytes += added
        if self._bytes <= self.max_bytes:
            return
        for kind in (KIND_METRICS, KIND_REPLY, KIND_EVENT):
            excess = self._bytes - self.max_bytes
            if excess <= 0:
                return
            victims: List[int] = []
            freed = 0
            for row_id, size in self.db.execute(
                    "SELECT id, LENGTH(payload) FROM outbox WHERE kind = ? ORDER BY id", (kind,)):
                victims.append(row_id)
                freed += size
                if freed >= excess:
                    break
            if not victims:
                continue
            self.db.executemany("DELETE FROM outbox WHERE id = ?", [(v,) for v in victims])
            self._bytes -= freed
            self._rows -= len(victims)
            if kind == KIND_EVENT:
                self.dropped_events += len(victims)
                if self._may_warn("full"):  # once a minute, not once per dropped event
                    log.warning("telemetry outbox full (%.1f MB): dropping the oldest defect events (%d so far); "
                                "raise mqtt.outbox_max_mb or restore the broker connection", self.max_bytes / 2**20,
                                self.dropped_events)
            else:
                self.dropped_metrics += len(victims)

    def pending(self, limit: int, exclude: Iterable[int] = ()) -> List[OutboxRow]:
        """Oldest unsent rows first, skipping those already in flight."""
        skip = set(exclude)
        rows: List[OutboxRow] = []
        cursor = self.db.execute(
            "SELECT id, kind, topic, payload, session, queued_offline FROM outbox ORDER BY id")
        for row in cursor:
            if row[0] in skip:
                continue
            rows.append(OutboxRow(row[0], row[1], row[2], bytes(row[3]), row[4], bool(row[5])))
            if len(rows) >= limit:
                break
        cursor.close()
        return rows

    def delete(self, ids: Sequence[int]) -> None:
        """Forget acknowledged rows (one transaction). When the disk refuses even that, the ids are
        kept and deleted later (until then a restart would send them again: at least once)."""
        ids = list(ids)
        if not ids:
            return
        db = self.db
        sizes = 0
        deleted = 0
        try:
            with self._transaction():
                for row_id in ids:
                    found = db.execute("SELECT LENGTH(payload) FROM outbox WHERE id = ?", (row_id,)).fetchone()
                    if found is None:  # dropped by the bound while in flight
                        continue
                    db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                    sizes += found[0]
                    deleted += 1
        except sqlite3.OperationalError as exc:
            self._unapplied_deletes.extend(i for i in ids if i not in self._unapplied_deletes)
            self.write_error = str(exc)
            if self._may_warn("delete"):
                log.error("telemetry outbox %s: cannot delete acknowledged messages: %s; retrying", self.path, exc)
            return
        self._bytes -= sizes
        self._rows -= deleted

    def retry_deletes(self) -> None:
        if self._unapplied_deletes:
            ids, self._unapplied_deletes = self._unapplied_deletes, []
            self.delete(ids)

    def move_aside(self, row_id: int, reason: str) -> None:
        """A row that can never be sent leaves the queue for the `rejected` table (the newest
        REJECTED_KEEP are kept for inspection); counted in `rejected`."""
        try:
            found = self.db.execute("SELECT kind, topic, LENGTH(payload) FROM outbox WHERE id = ?",
                                    (row_id,)).fetchone()
            if found is None:
                return
            with self._transaction():
                self.db.execute("INSERT OR REPLACE INTO rejected (id, kind, topic, payload, reason, at) "
                                "SELECT id, kind, topic, payload, ?, ? FROM outbox WHERE id = ?",
                                (reason, time.time(), row_id))
                self.db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                self.db.execute("DELETE FROM rejected WHERE id NOT IN (SELECT id FROM rejected ORDER BY id DESC "
                                "LIMIT ?)", (REJECTED_KEEP,))
        except sqlite3.OperationalError as exc:
            self.write_error = str(exc)
            log.error("telemetry outbox %s: cannot move row %d aside: %s", self.path, row_id, exc)
            return
        kind, topic, size = found
        self._rows -= 1
        self._bytes -= size
        self.rejected += 1
        if self._may_warn("rejected"):  # the first one, then at most one line a minute
            log.error("telemetry: %s message %d (%s, %d bytes) moved aside and not resent: %s (%d so far; the newest "
                      "are kept in the 'rejected' table of %s)", kind, row_id, topic, size, reason, self.rejected,
                      self.path)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class _Transaction:
    """BEGIN ... COMMIT; on an error ROLLBACK only when a transaction is still open (SQLite may
    have rolled back by itself, e.g. on SQLITE_FULL), so the first error is the one raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, kind: object, _value: object, _tb: object) -> None:
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.DatabaseError:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.DatabaseError as exc:
                log.debug("rollback after a failed write: %s", exc)


class OutboxError(EdgeAgentError):
    """The outbox cannot be opened or written."""
