"""A clock the test moves: for what waits hours or days (retries, approvals, re-issued notices)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
