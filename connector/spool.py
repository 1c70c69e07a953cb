"""The durable spool between the normaliser and the sinks: delivery guarantees live here, not in each sink.

An event is committed to SQLite (WAL) before any sink sees it. Each sink reads after its own cursor and moves
the cursor only once a batch is delivered (or rejected for good, into the dead-letter store), so a crash or a
restart re-sends at most the batch in flight, never loses one. Events every sink has passed are deleted.

Overflow: the spool is bounded by event count and bytes. ``drop_oldest`` (default) makes room by deleting the
oldest undelivered events, the least valuable for posture since newer state supersedes them; ``block`` makes
producers wait for room (scans pause instead). Either way the overflow is counted and reported.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from connector.errors import ConfigError, ConnectorError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    created REAL NOT NULL,
    meta TEXT NOT NULL,
    ecs BLOB,
    cef TEXT,
    size INTEGER NOT NULL,
    only_sink TEXT
);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT PRIMARY KEY,
    acked INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL,
    meta TEXT NOT NULL,
    ecs BLOB,
    cef TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_by_sink ON dead_letters (sink);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OverflowPolicy(StrEnum):
    DROP_OLDEST = "drop_oldest"
    BLOCK = "block"


class SpoolFullError(ConnectorError):
    """``block`` policy: no room appeared within the timeout; the producer should retry later."""


@dataclass(frozen=True)
class NewEvent:
    """A normalised event ready to spool; ``meta`` is the small JSON object sinks route on."""

    event_id: str
    meta: str
    ecs: bytes | None
    cef: str | None


@dataclass(frozen=True)
class SpooledEvent:
    seq: int
    event_id: str
    created: float
    meta: str
    ecs: bytes | None
    cef: str | None


@dataclass(frozen=True)
class SinkStatus:
    sink: str
    acked: int
    pending: int
    oldest_pending_age: float | None
    delivered: int
    dead_letters: int


@dataclass(frozen=True)
class SpoolStatus:
    path: Path
    file_bytes: int
    events: int
    bytes: int
    dropped: int
    sinks: list[SinkStatus]


class Spool:
    def __init__(
        self,
        path: Path,
        sinks: Iterable[str],
        *,
        max_events: int = 5_000_000,
        max_bytes: int = 2 * 1024**3,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        fsync: bool = False,
    ) -> None:
        self.path = path
        self.sinks = list(dict.fromkeys(sinks))
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.overflow = overflow
        self._synchronous = "FULL" if fsync else "NORMAL"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._changed = threading.Condition()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = self._db()
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"spool {path}: {exc}") from None
        self._register_sinks()
        self._count, self._bytes = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()

    def _db(self) -> sqlite3.Connection:
        """One connection per thread: the scanner writes while each sink's shipper reads."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            self._local.db = db
        return db

    def _register_sinks(self) -> None:
        """New sinks start with what is still spooled; sinks no longer configured stop holding events back."""
        db = self._db()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            oldest = db.execute("SELECT COALESCE(MIN(seq), (SELECT COALESCE(seq, 0) FROM sqlite_sequence "
                                "WHERE name = 'events') + 1) FROM events").fetchone()[0] or 1
            for sink in self.sinks:
                db.execute("INSERT OR IGNORE INTO cursors (sink, acked) VALUES (?, ?)", (sink, oldest - 1))
            placeholders = ",".join("?" * len(self.sinks)) or "''"
            db.execute(f"DELETE FROM cursors WHERE sink NOT IN ({placeholders})", self.sinks)
            db.execute("COMMIT")

    # producers ------------------------------------------------------------------------------------------

    def append(self, events: Sequence[NewEvent], timeout: float | None = None) -> int:
        """Commit ``events`` durably; returns how many older events overflow dropped to make room."""
        if not events:
            return 0
        size = sum(_size(event) for event in events)
        if self.overflow is OverflowPolicy.BLOCK:
            self._wait_for_room(len(events), size, timeout)
        now = time.time()
        rows = [(e.event_id, now, e.meta, e.ecs, e.cef, _size(e)) for e in events]
        db = self._db()
        dropped = 0
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                if self.overflow is OverflowPolicy.DROP_OLDEST:
                    dropped = self._make_room(db, len(events), size)
                db.executemany(
                    "INSERT INTO events (event_id, created, meta, ecs, cef, size) VALUES (?, ?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._count += len(events)
            self._bytes += size
        with self._changed:
            self._changed.notify_all()
        return dropped

    def _make_room(self, db: sqlite3.Connection, count: int, size: int) -> int:
        excess_events = self._count + count - self.max_events
        excess_bytes = self._bytes + size - self.max_bytes
        if excess_events <= 0 and excess_bytes <= 0:
            return 0
        dropped = freed = 0
        for seq, row_size in db.execute("SELECT seq, size FROM events ORDER BY seq"):
            if dropped >= excess_events and freed >= excess_bytes:
                break
            last = seq
            dropped += 1
            freed += row_size
        if dropped:
            db.execute("DELETE FROM events WHERE seq <= ?", (last,))
            db.execute("UPDATE cursors SET acked = MAX(acked, ?)", (last,))
            db.execute("INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                       "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (dropped,))
            self._count -= dropped
            self._bytes -= freed
        return dropped

    def _wait_for_room(self, count: int, size: int, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self._count + count > self.max_events or self._bytes + size > self.max_bytes:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SpoolFullError(f"spool {self.path} is full ({self._count} events, {self._bytes} bytes)")
                self._changed.wait(timeout=min(remaining, 1.0) if remaining is not None else 1.0)

    # consumers ------------------------------------------------------------------------------------------

    def read(self, sink: str, limit: int, max_bytes: int) -> list[SpooledEvent]:
        """The next batch for ``sink`` after its cursor: at most ``limit`` events and about ``max_bytes``."""
        db = self._db()
        acked = db.execute("SELECT acked FROM cursors WHERE sink = ?", (sink,)).fetchone()
        if acked is None:
            raise ConfigError(f"spool: unknown sink {sink!r}")
        batch: list[SpooledEvent] = []
        total = 0
        cursor = db.execute(
            "SELECT seq, event_id, created, meta, ecs, cef, size FROM events "
            "WHERE seq > ? AND (only_sink IS NULL OR only_sink = ?) ORDER BY seq LIMIT ?",
            (acked[0], sink, limit),
        )
        for seq, event_id, created, meta, ecs, cef, size in cursor:
            if batch and total + size > max_bytes:
                break
            batch.append(SpooledEvent(seq, event_id, created, meta, ecs, cef))
            total += size
        return batch

    def wait(self, timeout: float) -> None:
        """Sleep until something is appended (or ``timeout``), so idle shippers do not poll the disk."""
        with self._changed:
            self._changed.wait(timeout)

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def commit(self, sink: str, upto: int, delivered: int, dead: Sequence[tuple[SpooledEvent, str]] = ()) -> None:
        """Move ``sink``'s cursor to ``upto`` and store its permanently rejected events as dead letters."""
        db = self._db()
        now = time.time()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            if dead:
                db.executemany(
                    "INSERT INTO dead_letters (sink, event_id, reason, failed_at, meta, ecs, cef) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(sink, e.event_id, reason, now, e.meta, e.ecs, e.cef) for e, reason in dead],
                )
            db.execute(
                "UPDATE cursors SET acked = MAX(acked, ?), delivered = delivered + ?, dead = dead + ? WHERE sink = ?",
                (upto, delivered, len(dead), sink),
            )
            self._collect(db)
            db.execute("COMMIT")
        with self._changed:
            self._changed.notify_all()

    def _collect(self, db: sqlite3.Connection) -> None:
        """Delete events every sink has passed (called inside a write transaction)."""
        floor = db.execute("SELECT MIN(acked) FROM cursors").fetchone()[0]
        if floor is None:
            return
        count, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events WHERE seq <= ?", (floor,)).fetchone()
        if count:
            db.execute("DELETE FROM events WHERE seq <= ?", (floor,))
            self._count -= count
            self._bytes -= size

    # administration ---------------------------------------------------------------------------------------

    def status(self) -> SpoolStatus:
        db = self._db()
        now = time.time()
        sinks = []
        for sink, acked, delivered in db.execute(
                "SELECT sink, acked, delivered FROM cursors ORDER BY sink").fetchall():
            pending, oldest = db.execute(
                "SELECT COUNT(*), MIN(created) FROM events WHERE seq > ? AND (only_sink IS NULL OR only_sink = ?)",
                (acked, sink)).fetchone()
            letters = db.execute("SELECT COUNT(*) FROM dead_letters WHERE sink = ?", (sink,)).fetchone()[0]
            sinks.append(SinkStatus(sink, acked, pending, now - oldest if oldest else None, delivered, letters))
        dropped_row = db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        file_bytes = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return SpoolStatus(self.path, file_bytes, self._count, self._bytes, dropped_row[0] if dropped_row else 0,
                           sinks)

    def dead_letters(self, sink: str | None = None, limit: int = 100) -> list[tuple[int, str, str, str, float]]:
        """(id, sink, event_id, reason, failed_at) of stored dead letters, oldest first."""
        query = "SELECT id, sink, event_id, reason, failed_at FROM dead_letters"
        args: tuple[object, ...] = ()
        if sink:
            query += " WHERE sink = ?"
            args = (sink,)
        return list(self._db().execute(query + " ORDER BY id LIMIT ?", (*args, limit)))

    def replay(self, sink: str | None = None, ids: Sequence[int] = ()) -> int:
        """Re-queue dead letters for the sink that rejected them only (others already have the event)."""
        where, args = _dead_letter_filter(sink, ids)
        db = self._db()
        now = time.time()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(f"SELECT id, sink, event_id, meta, ecs, cef FROM dead_letters {where}",
                              args).fetchall()
            for _, target, event_id, meta, ecs, cef in rows:
                size = _size(NewEvent(event_id, meta, ecs, cef))
                db.execute("INSERT INTO events (event_id, created, meta, ecs, cef, size, only_sink) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (event_id, now, meta, ecs, cef, size, target))
                self._count += 1
                self._bytes += size
            db.executemany("DELETE FROM dead_letters WHERE id = ?", [(row[0],) for row in rows])
            db.execute("COMMIT")
        with self._changed:
            self._changed.notify_all()
        return len(rows)

    def purge(self, sink: str | None = None, ids: Sequence[int] = (), backlog: bool = False) -> int:
        """Delete dead letters; with ``backlog``, also skip everything ``sink`` has not delivered yet."""
        db = self._db()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            if backlog:
                if sink is None:
                    db.execute("ROLLBACK")
                    raise ConfigError("purging a backlog needs a sink name")
                last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
                skipped = db.execute("SELECT COUNT(*) FROM events WHERE seq > (SELECT acked FROM cursors "
                                     "WHERE sink = ?)", (sink,)).fetchone()[0]
                db.execute("UPDATE cursors SET acked = ? WHERE sink = ?", (last, sink))
                self._collect(db)
                db.execute("COMMIT")
                return int(skipped)
            where, args = _dead_letter_filter(sink, ids)
            removed = db.execute(f"DELETE FROM dead_letters {where}", args).rowcount
            db.execute("COMMIT")
        return int(removed)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _dead_letter_filter(sink: str | None, ids: Sequence[int]) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    args: list[object] = []
    if sink:
        clauses.append("sink = ?")
        args.append(sink)
    if ids:
        clauses.append(f"id IN ({','.join('?' * len(ids))})")
        args.extend(ids)
    return ("WHERE " + " AND ".join(clauses) if clauses else "", tuple(args))


def _size(event: NewEvent) -> int:
    return len(event.ecs or b"") + len(event.cef or "") + len(event.meta)
