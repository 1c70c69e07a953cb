"""The durable spool between the normaliser and the sinks: delivery guarantees live here, not in each sink.

An event is committed to SQLite (WAL) before any sink sees it. Each sink reads after its own cursor and moves
the cursor only once a batch is delivered (or rejected for good, into the dead-letter store), so a crash or a
restart re-sends at most the batch in flight, never loses one. Events every sink has passed are deleted.

Overflow: the spool is bounded by event count and bytes. ``drop_oldest`` (default) makes room by deleting the
oldest undelivered events, the least valuable for posture since newer state supersedes them; ``block`` makes
producers wait for room (scans pause instead). Either way the overflow is counted and reported. Dead letters
are bounded too (``max_dead_letters``): the oldest are discarded, and counted, beyond it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from connector.core.errors import ConfigError, ConnectorError
from connector.core.events import NewEvent, SpooledEvent
from connector.core.units import ByteSize, Duration

log = logging.getLogger(__name__)

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


class SpoolConfig(BaseModel):
    """Bounds and durability of the on-disk spool (state_dir/spool.sqlite)."""

    model_config = ConfigDict(extra="forbid")

    max_events: int = Field(default=5_000_000, ge=100)
    max_bytes: ByteSize = Field(default=2 * 1024**3, ge=1024 * 1024)
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    block_timeout: Duration = Field(default=timedelta(minutes=10),
                                    description="overflow=block: how long a scan waits for room before giving up")
    max_dead_letters: int = Field(default=100_000, ge=1)
    fsync: bool = Field(default=False, description="fsync every commit: survives power loss, not just crashes")


class SpoolError(ConnectorError):
    """The spool file could not be written (disk full, I/O error, corruption); the transaction was undone."""


class SpoolFullError(SpoolError):
    """``block`` policy: no room appeared within the timeout; the producer should retry later."""


@dataclass(frozen=True)
class SinkStatus:
    sink: str
    acked: int
    pending: int
    oldest_pending_age: float | None
    delivered: int
    dead_letters: int  # in the store now
    rejected: int  # ever, including dead letters replayed, purged or discarded since


@dataclass(frozen=True)
class SpoolStatus:
    path: Path
    file_bytes: int
    events: int
    bytes: int
    dropped: int
    dead_letters_discarded: int
    orphaned_dead_letters: int  # of sinks no longer configured: kept for inspection, never replayed
    sinks: list[SinkStatus]


class Spool:
    """The spool file. ``sinks`` registers cursors (the pipeline does); admin commands open it without."""

    def __init__(
        self,
        path: Path,
        sinks: Iterable[str] | None = None,
        *,
        max_events: int = 5_000_000,
        max_bytes: int = 2 * 1024**3,
        max_dead_letters: int = 100_000,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        fsync: bool = False,
    ) -> None:
        self.path = path
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_dead_letters = max_dead_letters
        self.overflow = overflow
        self._synchronous = "FULL" if fsync else "NORMAL"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._changed = threading.Condition()
        if sinks is None and not path.exists():
            raise ConfigError(f"no spool at {path}: nothing has been spooled with this configuration yet")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db().executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"spool {path}: {exc}") from None
        if sinks is not None:
            self._register_sinks(list(dict.fromkeys(sinks)))

    @classmethod
    def existing(cls, path: Path) -> Spool:
        """Open for inspection and repair: no cursor is created or removed, no file is created."""
        return cls(path, None)

    def _db(self) -> sqlite3.Connection:
        """One connection per thread: the scanner writes while each sink's shipper reads."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, rolled back on any error so the connection stays usable; wakes waiters."""
        db = self._db()
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {self.path}: {exc}") from exc
        with self._changed:
            self._changed.notify_all()

    def _register_sinks(self, sinks: list[str]) -> None:
        """New sinks start with what is still spooled; sinks no longer configured stop holding events back."""
        with self._transaction() as db:
            oldest = db.execute("SELECT COALESCE(MIN(seq), (SELECT COALESCE(seq, 0) FROM sqlite_sequence "
                                "WHERE name = 'events') + 1) FROM events").fetchone()[0] or 1
            for sink in sinks:
                db.execute("INSERT OR IGNORE INTO cursors (sink, acked) VALUES (?, ?)", (sink, oldest - 1))
            placeholders = ",".join("?" * len(sinks)) or "''"
            for removed, pending in db.execute(
                    f"SELECT sink, (SELECT COUNT(*) FROM events WHERE seq > acked) FROM cursors "
                    f"WHERE sink NOT IN ({placeholders})", sinks).fetchall():
                log.warning("sink %s is no longer configured: dropping its spool cursor; %d event(s) it had not "
                            "received will not be sent to it (its dead letters are kept)", removed, pending)
            db.execute(f"DELETE FROM cursors WHERE sink NOT IN ({placeholders})", sinks)
            # the totals are derived data: recompute them once at start, then keep them in step per transaction
            count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
            _set_counter(db, "events", count)
            _set_counter(db, "bytes", size)
            self._collect(db)

    # producers ------------------------------------------------------------------------------------------

    def append(self, events: Sequence[NewEvent], timeout: float | None = None,
               stop: threading.Event | None = None) -> int:
        """Commit ``events`` durably; returns how many older events overflow dropped to make room.

        With the ``block`` policy this waits for room until ``timeout`` or ``stop`` and then raises
        SpoolFullError; the caller keeps its findings and tries again later.
        """
        if not events:
            return 0
        size = sum(_size(event) for event in events)
        if self.overflow is OverflowPolicy.BLOCK:
            self._wait_for_room(len(events), size, timeout, stop)
        now = time.time()
        rows = [(e.event_id, now, e.meta, e.ecs, e.cef, _size(e)) for e in events]
        dropped = 0
        with self._transaction() as db:
            if self.overflow is OverflowPolicy.DROP_OLDEST:
                dropped = self._make_room(db, len(events), size)
            db.executemany(
                "INSERT INTO events (event_id, created, meta, ecs, cef, size) VALUES (?, ?, ?, ?, ?, ?)", rows)
            _add_counter(db, "events", len(events))
            _add_counter(db, "bytes", size)
        return dropped

    def _make_room(self, db: sqlite3.Connection, count: int, size: int) -> int:
        events, total_bytes = _totals(db)
        excess_events = events + count - self.max_events
        excess_bytes = total_bytes + size - self.max_bytes
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
            _add_counter(db, "dropped", dropped)
            _add_counter(db, "events", -dropped)
            _add_counter(db, "bytes", -freed)
        return dropped

    def _wait_for_room(self, count: int, size: int, timeout: float | None, stop: threading.Event | None) -> None:
        """Block until the batch fits; an empty spool always takes a batch, however large, so nothing deadlocks."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                events, total_bytes = _totals(self._db())
                if events == 0 or (events + count <= self.max_events and total_bytes + size <= self.max_bytes):
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if (remaining is not None and remaining <= 0) or (stop is not None and stop.is_set()):
                    raise SpoolFullError(f"spool {self.path} is full ({events} events, {total_bytes} bytes; "
                                         f"max_events={self.max_events}, max_bytes={self.max_bytes})")
                self._changed.wait(timeout=min(remaining, 0.5) if remaining is not None else 0.5)

    # consumers ------------------------------------------------------------------------------------------

    def read(self, sink: str, limit: int, max_bytes: int) -> list[SpooledEvent]:
        """The next batch for ``sink`` after its cursor: at most ``limit`` events and about ``max_bytes``."""
        db = self._db()
        acked = _acked(db, sink)
        if acked is None:
            raise ConfigError(f"spool: unknown sink {sink!r}")
        batch: list[SpooledEvent] = []
        total = 0
        cursor = db.execute(
            f"SELECT seq, event_id, created, meta, ecs, cef, size FROM events WHERE {_FOR_SINK} ORDER BY seq LIMIT ?",
            (acked, sink, limit),
        )
        for seq, event_id, created, meta, ecs, cef, size in cursor:
            if batch and total + size > max_bytes:
                break
            batch.append(SpooledEvent(seq, event_id, created, meta, ecs, cef))
            total += size
        return batch

    def pending(self, sink: str) -> int:
        """Events ``sink`` has not taken yet, cheaply (an estimate: events replayed for other sinks count too)."""
        db = self._db()
        acked = _acked(db, sink)
        return 0 if acked is None else max(0, _last_seq(db) - acked)

    def has_pending(self, sink: str) -> bool:
        """Exactly whether ``sink`` has anything left, without counting it."""
        db = self._db()
        acked = _acked(db, sink)
        return acked is not None and db.execute(f"SELECT EXISTS (SELECT 1 FROM events WHERE {_FOR_SINK})",
                                                (acked, sink)).fetchone()[0] == 1

    def pending_counts(self, sinks: Iterable[str]) -> dict[str, int]:
        """Exact counts of what each sink has not taken yet."""
        db = self._db()
        counts = {}
        for sink in sinks:
            acked = _acked(db, sink)
            counts[sink] = 0 if acked is None else int(
                db.execute(f"SELECT COUNT(*) FROM events WHERE {_FOR_SINK}", (acked, sink)).fetchone()[0])
        return counts

    def rejected(self) -> dict[str, int]:
        """Events each sink has rejected for good, ever (dead letters replayed, purged or discarded included)."""
        return {sink: int(dead) for sink, dead in self._db().execute("SELECT sink, dead FROM cursors")}

    def wait(self, timeout: float) -> None:
        """Sleep until something is appended (or ``timeout``), so idle shippers do not poll the disk."""
        with self._changed:
            self._changed.wait(timeout)

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def commit(self, sink: str, upto: int, delivered: int, dead: Sequence[tuple[SpooledEvent, str]] = ()) -> int:
        """Move ``sink``'s cursor to ``upto`` and store its permanently rejected events as dead letters.

        Returns how many of the oldest dead letters were discarded to keep the store within its bound.
        """
        now = time.time()
        discarded = 0
        with self._transaction() as db:
            if dead:
                db.executemany(
                    "INSERT INTO dead_letters (sink, event_id, reason, failed_at, meta, ecs, cef) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(sink, e.event_id, reason, now, e.meta, e.ecs, e.cef) for e, reason in dead],
                )
                discarded = self._bound_dead_letters(db)
            db.execute(
                "UPDATE cursors SET acked = MAX(acked, ?), delivered = delivered + ?, dead = dead + ? WHERE sink = ?",
                (upto, delivered, len(dead), sink),
            )
            self._collect(db)
        return discarded

    def _bound_dead_letters(self, db: sqlite3.Connection) -> int:
        excess = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] - self.max_dead_letters
        if excess <= 0:
            return 0
        db.execute("DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id LIMIT ?)",
                   (excess,))
        _add_counter(db, "dead_letters_discarded", excess)
        return int(excess)

    def _collect(self, db: sqlite3.Connection) -> None:
        """Delete events every sink has passed (called inside a write transaction)."""
        floor = db.execute("SELECT MIN(acked) FROM cursors").fetchone()[0]
        if floor is None:
            return
        count, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events WHERE seq <= ?", (floor,)).fetchone()
        if count:
            db.execute("DELETE FROM events WHERE seq <= ?", (floor,))
            _add_counter(db, "events", -count)
            _add_counter(db, "bytes", -size)

    # administration ---------------------------------------------------------------------------------------

    def sinks(self) -> list[str]:
        return [row[0] for row in self._db().execute("SELECT sink FROM cursors ORDER BY sink")]

    def status(self) -> SpoolStatus:
        db = self._db()
        now = time.time()
        sinks = []
        for sink, acked, delivered, rejected in db.execute(
                "SELECT sink, acked, delivered, dead FROM cursors ORDER BY sink").fetchall():
            pending, oldest = db.execute(f"SELECT COUNT(*), MIN(created) FROM events WHERE {_FOR_SINK}",
                                         (acked, sink)).fetchone()
            letters = db.execute("SELECT COUNT(*) FROM dead_letters WHERE sink = ?", (sink,)).fetchone()[0]
            sinks.append(SinkStatus(sink, acked, pending, now - oldest if oldest else None, delivered, letters,
                                    rejected))
        orphaned = db.execute("SELECT COUNT(*) FROM dead_letters WHERE sink NOT IN (SELECT sink FROM cursors)"
                              ).fetchone()[0]
        file_bytes = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        events, total_bytes = _totals(db)
        return SpoolStatus(self.path, file_bytes, events, total_bytes, _counter(db, "dropped"),
                           _counter(db, "dead_letters_discarded"), orphaned, sinks)

    def dead_letters(self, sink: str | None = None, limit: int = 100) -> list[tuple[int, str, str, str, float]]:
        """(id, sink, event_id, reason, failed_at) of stored dead letters, oldest first."""
        where, args = _dead_letter_filter(sink, ())
        return list(self._db().execute(f"SELECT id, sink, event_id, reason, failed_at FROM dead_letters {where} "
                                       "ORDER BY id LIMIT ?", (*args, limit)))

    def replay(self, sink: str | None = None, ids: Sequence[int] = ()) -> tuple[int, int]:
        """Re-queue dead letters for the sink that rejected them only (others already have the event).

        Dead letters of sinks that are no longer configured stay where they are; returns (replayed, left).
        """
        where, args = _dead_letter_filter(sink, ids)
        now = time.time()
        with self._transaction() as db:
            rows = db.execute(f"SELECT id, sink, event_id, meta, ecs, cef, sink IN (SELECT sink FROM cursors) "
                              f"FROM dead_letters {where}", args).fetchall()
            replayable = [row for row in rows if row[6]]
            sizes = 0
            for _, target, event_id, meta, ecs, cef, _known in replayable:
                size = _size(NewEvent(event_id, meta, ecs, cef))
                sizes += size
                db.execute("INSERT INTO events (event_id, created, meta, ecs, cef, size, only_sink) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (event_id, now, meta, ecs, cef, size, target))
            db.executemany("DELETE FROM dead_letters WHERE id = ?", [(row[0],) for row in replayable])
            _add_counter(db, "events", len(replayable))
            _add_counter(db, "bytes", sizes)
        return len(replayable), len(rows) - len(replayable)

    def purge(self, sink: str | None = None, ids: Sequence[int] = (), backlog: bool = False) -> int:
        """Delete dead letters; with ``backlog``, skip everything ``sink`` has not delivered yet instead."""
        if backlog and sink is None:
            raise ConfigError("purging a backlog needs a sink name")
        with self._transaction() as db:
            if backlog:
                acked = _acked(db, sink)
                if acked is None:
                    raise ConfigError(f"spool has no sink {sink!r} (known: {', '.join(self.sinks()) or 'none'})")
                skipped = db.execute(f"SELECT COUNT(*) FROM events WHERE {_FOR_SINK}", (acked, sink)).fetchone()[0]
                db.execute("UPDATE cursors SET acked = MAX(acked, ?) WHERE sink = ?", (_last_seq(db), sink))
                self._collect(db)
                return int(skipped)
            where, args = _dead_letter_filter(sink, ids)
            return int(db.execute(f"DELETE FROM dead_letters {where}", args).rowcount)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


_FOR_SINK = "seq > ? AND (only_sink IS NULL OR only_sink = ?)"  # events after a cursor that are for its sink


def _acked(db: sqlite3.Connection, sink: str | None) -> int | None:
    row = db.execute("SELECT acked FROM cursors WHERE sink = ?", (sink,)).fetchone()
    return None if row is None else int(row[0])


def _last_seq(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])


def _totals(db: sqlite3.Connection) -> tuple[int, int]:
    return _counter(db, "events"), _counter(db, "bytes")


def _counter(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def _add_counter(db: sqlite3.Connection, name: str, delta: int) -> None:
    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
               "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, delta))


def _set_counter(db: sqlite3.Connection, name: str, value: int) -> None:
    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
               "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))


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
