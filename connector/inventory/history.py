"""When each finding was first seen: a finding keeps its first_seen while its status stays the same.

The engine stamps every finding as seen now; the collector passes each asset's findings through here before
they are published, so every writer (the CLI, the sidecar, later the rescan action) reports the same episodes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from connector.core.model import Finding, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS findings (
    fingerprint TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
"""


class FindingHistory:
    """Kept in the state database the runtime opens (one writer, WAL: safe to read while it runs)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)

    def first_seen(self, fingerprint: str, status: Status, seen_at: datetime) -> datetime:
        """A status change starts a new episode; the same status carries the episode's first_seen forward."""
        row = self._db.execute(
            "SELECT status, first_seen FROM findings WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        stamp = seen_at.isoformat()
        if row is not None and row[0] == status.value:
            self._db.execute("UPDATE findings SET last_seen = ? WHERE fingerprint = ?", (stamp, fingerprint))
            return datetime.fromisoformat(row[1])
        self._db.execute(
            "INSERT INTO findings (fingerprint, status, first_seen, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(fingerprint) DO UPDATE SET status = excluded.status, first_seen = excluded.first_seen, "
            "last_seen = excluded.last_seen",
            (fingerprint, status.value, stamp, stamp),
        )
        return seen_at

    def annotate(self, findings: Sequence[Finding]) -> list[Finding]:
        """The findings with first_seen taken from their episode."""
        annotated = []
        for finding in findings:
            first_seen = self.first_seen(finding.fingerprint, finding.status, finding.observed_at)
            unchanged = first_seen == finding.first_seen
            annotated.append(finding if unchanged else finding.model_copy(update={"first_seen": first_seen}))
        return annotated
