"""Store-and-forward: every outgoing message is written to an SQLite outbox (WAL) first and deleted
only when the broker acknowledges it, so a dead broker, a lost network or a killed process loses
nothing that was committed.

One thread owns the connection (the telemetry loop); nothing here is called from the frame loop.
The outbox is bounded by payload bytes: when full it drops the oldest metrics first, then, only if
nothing but events is left, the oldest events, and counts both.
"""

import logging
import sqlite3
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional, Sequence

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
"""


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

    def add(self, messages: Sequence[NewMessage], session: str, offline: bool) -> None:
        """Store messages in one transaction; durable against power loss when they include events."""
        if not messages:
            return
        durable = any(m.kind != KIND_METRICS for m in messages)
        db = self.db
        # FULL syncs the WAL on this commit (events must survive a power cut); NORMAL survives a
        # process kill, which is enough for the periodic metrics.
        db.execute("PRAGMA synchronous={}".format("FULL" if durable else "NORMAL"))
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO outbox (kind, topic, payload, session, queued_offline) VALUES (?, ?, ?, ?, ?)",
                [(m.kind, m.topic, m.payload, session, int(offline)) for m in messages])
            self._enforce_bound(sum(len(m.payload) for m in messages))
            db.execute("COMMIT")
        except sqlite3.DatabaseError:
            db.execute("ROLLBACK")
            raise
        self._rows += len(messages)

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
                log.warning("telemetry outbox full (%.1f MB): dropped the %d oldest defect event(s); raise "
                            "mqtt.outbox_max_mb or restore the broker connection", self.max_bytes / 2**20, len(victims))
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
        """Forget acknowledged rows (one transaction)."""
        if not ids:
            return
        db = self.db
        db.execute("BEGIN")
        sizes = 0
        deleted = 0
        for row_id in ids:
            found = db.execute("SELECT LENGTH(payload) FROM outbox WHERE id = ?", (row_id,)).fetchone()
            if found is None:  # dropped by the bound while in flight
                continue
            db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            sizes += found[0]
            deleted += 1
        db.execute("COMMIT")
        self._bytes -= sizes
        self._rows -= deleted

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class OutboxError(EdgeAgentError):
    """The outbox cannot be opened or written."""
