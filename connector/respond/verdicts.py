"""Analysts' verdicts on findings (false positive, accepted risk, fixed, acknowledged): kept for the KPIs, and obeyed.

A false-positive or accepted-risk verdict suppresses every playbook for that finding until it expires, so a
finding an analyst has dismissed does not page anyone again; the suppression itself is audited as a skip. An
acknowledgement only says someone is on it: it stops re-issued notices, and is no verdict on the finding.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from connector.core.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    verdict TEXT NOT NULL,
    analyst TEXT NOT NULL,
    comment TEXT NOT NULL,
    recorded TEXT NOT NULL,
    expires TEXT
);
CREATE INDEX IF NOT EXISTS verdicts_by_fingerprint ON verdicts (fingerprint, id);
"""
SUPPRESSING = ("false_positive", "accepted_risk")
ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True)
class Verdict:
    fingerprint: str
    verdict: str
    analyst: str
    comment: str
    recorded: datetime
    expires: datetime | None


class VerdictStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"verdict store {path}: {exc}") from None

    def record(self, verdict: Verdict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO verdicts (fingerprint, verdict, analyst, comment, recorded, expires) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (verdict.fingerprint, verdict.verdict, verdict.analyst, verdict.comment, verdict.recorded.isoformat(),
                 verdict.expires.isoformat() if verdict.expires else None))

    def suppression(self, fingerprint: str, now: datetime) -> Verdict | None:
        """The latest verdict on the finding, if it suppresses action now (a later "fixed" lifts it)."""
        with self._lock:
            row = self._db.execute("SELECT fingerprint, verdict, analyst, comment, recorded, expires FROM verdicts "
                                   "WHERE fingerprint = ? AND verdict != ? ORDER BY id DESC LIMIT 1",
                                   (fingerprint, ACKNOWLEDGED)).fetchone()
        if row is None:
            return None
        latest = Verdict(row[0], row[1], row[2], row[3], datetime.fromisoformat(row[4]),
                         datetime.fromisoformat(row[5]) if row[5] else None)
        if latest.verdict not in SUPPRESSING or (latest.expires is not None and latest.expires <= now):
            return None
        return latest

    def latest(self) -> dict[str, str]:
        """Each reviewed fingerprint's latest verdict (false_positive, accepted_risk, fixed), for the KPIs."""
        with self._lock:
            rows = self._db.execute("SELECT fingerprint, verdict FROM verdicts WHERE verdict != ? ORDER BY id",
                                    (ACKNOWLEDGED,)).fetchall()
        return dict(rows)

    def reviewed_since(self, fingerprint: str, since: datetime) -> Verdict | None:
        """The latest verdict or acknowledgement recorded after ``since``: a person has seen the finding."""
        with self._lock:
            row = self._db.execute("SELECT fingerprint, verdict, analyst, comment, recorded, expires FROM verdicts "
                                   "WHERE fingerprint = ? ORDER BY id DESC LIMIT 1", (fingerprint,)).fetchone()
        if row is None or datetime.fromisoformat(row[4]) < since:
            return None
        return Verdict(row[0], row[1], row[2], row[3], datetime.fromisoformat(row[4]),
                       datetime.fromisoformat(row[5]) if row[5] else None)

    def close(self) -> None:
        self._db.close()

    def all(self) -> list[Verdict]:
        with self._lock:
            rows = self._db.execute("SELECT fingerprint, verdict, analyst, comment, recorded, expires FROM verdicts "
                                    "ORDER BY id").fetchall()
        return [Verdict(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]),
                        datetime.fromisoformat(r[5]) if r[5] else None) for r in rows]
