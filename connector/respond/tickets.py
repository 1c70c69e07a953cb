"""Which ticket each finding has, per tracker: the first of three guards against a second ticket.

The guards, in order: this job's own effects journal (a re-run after a crash), this ledger (a later callback about
the same finding episode), and a search of the tracker by the finding's label (this ledger lost or not shared).
The tracker's search is eventually consistent (Jira's is), which is why it is the last guard, not the only one.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from connector.core.clock import utc_now
from connector.core.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    tracker TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    ticket TEXT NOT NULL,
    open INTEGER NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (tracker, fingerprint)
);
"""


class TicketLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"ticket ledger {path}: {exc}") from None

    def open_ticket(self, tracker: str, fingerprint: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT ticket FROM tickets WHERE tracker = ? AND fingerprint = ? AND open = 1",
                                   (tracker, fingerprint)).fetchone()
        return None if row is None else str(row[0])

    def record(self, tracker: str, fingerprint: str, ticket: str, *, is_open: bool = True) -> None:
        with self._lock:
            self._db.execute("INSERT INTO tickets (tracker, fingerprint, ticket, open, updated) VALUES (?, ?, ?, ?, ?) "
                             "ON CONFLICT(tracker, fingerprint) DO UPDATE SET ticket = excluded.ticket, "
                             "open = excluded.open, updated = excluded.updated",
                             (tracker, fingerprint, ticket, int(is_open), utc_now().isoformat()))
