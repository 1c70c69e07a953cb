"""The durable action queue between the playbook engine and the actions: execution guarantees live here.

A job is committed to SQLite (WAL, in the state directory) before the receiver answers 202, keyed by an
idempotency key derived from (source, webhook-id or alert id, step): a sender's retry, or the same alert arriving
twice, enqueues nothing new.

Execution is at least once. A worker claims a job under a lease; a worker that dies (SIGKILL, power loss) leaves
the lease to expire and the job is claimed again. So that "at least once" never means "two tickets", an action
records each external effect (``record_effect``: the ticket key it created, the page it sent) in the same file
before it moves on, and a re-run reads the effects of its earlier attempts and skips what is already done.

Failures are retried with exponential backoff and jitter, never sooner than a ``Retry-After`` the remote asked
for; after ``max_attempts``, or on an error that retrying cannot fix, the job is a dead letter with its reason,
kept for ``connector respond jobs list|retry|purge``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connector.core.clock import utc_now
from connector.core.errors import ConfigError, ConnectorError
from connector.core.units import Duration

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL,
    lease_until REAL,
    worker TEXT,
    last_error TEXT,
    result TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, not_before);
CREATE TABLE IF NOT EXISTS effects (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_id, name)
);
"""


REPLAY_WINDOW = timedelta(minutes=10)  # twice the Standard Webhooks timestamp tolerance of 5 minutes


class JobState(StrEnum):
    PENDING = "pending"  # due at not_before; also a running job whose lease expired
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"  # a step of mode approve: runs only after `respond approve JOB`
    DONE = "done"
    DEAD = "dead"


class QueueConfig(BaseModel):
    """Retries and leases of the action queue (state_dir/actions.sqlite)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=8, ge=1)
    backoff_base: Duration = Field(default=timedelta(seconds=5),
                                   description="the first retry's delay, doubled each time")
    backoff_max: Duration = Field(default=timedelta(hours=1))
    max_retry_after: Duration = Field(default=timedelta(hours=6),
                                      description="a longer Retry-After is taken as this: a remote cannot park a job")
    lease: Duration = Field(default=timedelta(minutes=5),
                            description="how long a claimed job is a worker's before another may take it")


class QueueError(ConnectorError):
    """The queue file could not be read or written; the transaction was undone."""


@dataclass(frozen=True)
class Job:
    id: int
    idempotency_key: str
    action: str
    params: dict[str, Any]
    state: JobState
    attempts: int  # including the claim that returned this job
    not_before: datetime
    last_error: str | None
    result: dict[str, Any] | None


class ActionQueue:
    """One file, safe for several worker threads of one process (the state-directory lock keeps it to one)."""

    def __init__(self, path: Path, config: QueueConfig | None = None, *,
                 clock: Callable[[], datetime] = utc_now, jitter: Callable[[], float] = random.random) -> None:
        self.path = path
        self.config = config or QueueConfig()
        self._clock = clock
        self._jitter = jitter
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._arrived = threading.Condition()  # wakes idle workers of this process when a job is due
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db().executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"action queue {path}: {exc}") from None

    def enqueue(self, idempotency_key: str, action: str, params: Mapping[str, Any],
                not_before: datetime | None = None, *, awaiting_approval: bool = False) -> bool:
        """False when a job with this key exists, whatever its state: the duplicate is the sender's retry."""
        now = self._now()
        due = not_before.timestamp() if not_before else now
        state = JobState.AWAITING_APPROVAL if awaiting_approval else JobState.PENDING
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO jobs (idempotency_key, action, params, state, not_before, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (idempotency_key, action, json.dumps(dict(params), sort_keys=True), state, due, now, now),
            ).rowcount
        if inserted and not awaiting_approval:
            self.wake()
        return bool(inserted)

    def wake(self) -> None:
        """Tell this process's idle workers to look for due jobs now instead of at their next poll."""
        with self._arrived:
            self._arrived.notify_all()

    def wait_for_work(self, timeout: float) -> None:
        """Until a job is enqueued in this process (or ``wake``), or ``timeout``: jobs that other processes
        enqueue, or that become due later, are found by the poll that follows."""
        with self._arrived:
            self._arrived.wait(timeout)

    def approve(self, job_id: int, approval_ttl: timedelta) -> bool:
        """Make a waiting step due now; an approval asked for longer ago than ``approval_ttl`` has expired."""
        now = self._now()
        with self._transaction() as db:
            row = db.execute("SELECT created FROM jobs WHERE id = ? AND state = ?",
                             (job_id, JobState.AWAITING_APPROVAL)).fetchone()
            if row is None:
                return False
            if now - row[0] > approval_ttl.total_seconds():
                _set_state(db, job_id, JobState.DEAD, reason="the approval expired before anyone approved",
                           result=None, now=now)
                return False
            db.execute("UPDATE jobs SET state = ?, not_before = ?, updated = ? WHERE id = ?",
                       (JobState.PENDING, now, now, job_id))
        self.wake()
        return True

    def approve_run(self, run: str, approval_ttl: timedelta) -> list[int]:
        """Approve every step of one playbook run that waits (an approval link names the run); the ids approved."""
        prefix = run + ":"
        rows = self._db().execute("SELECT id FROM jobs WHERE state = ? AND substr(idempotency_key, 1, ?) = ?",
                                  (JobState.AWAITING_APPROVAL, len(prefix), prefix)).fetchall()
        return [job_id for (job_id,) in rows if self.approve(job_id, approval_ttl)]

    def claim(self, worker: str, actions: Sequence[str] | None = None) -> Job | None:
        """The oldest due job (of ``actions``, if given), leased to ``worker``; an expired lease is due again."""
        now = self._now()
        only = f" AND action IN ({','.join('?' * len(actions))})" if actions else ""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE ((state = ? AND not_before <= ?) OR (state = ? AND lease_until <= ?))"
                f"{only} ORDER BY not_before, id LIMIT 1",
                (JobState.PENDING, now, JobState.RUNNING, now, *(actions or ())),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, lease_until = ?, worker = ?, updated = ? "
                "WHERE id = ?",
                (JobState.RUNNING, now + self.config.lease.total_seconds(), worker, now, row[0]),
            )
            return _job(db, row[0])

    def record_effect(self, job_id: int, name: str, value: Mapping[str, Any]) -> None:
        """Durable before the action goes on, so that a re-run after a crash finds it and does not repeat it."""
        with self._transaction() as db:
            db.execute("INSERT INTO effects (job_id, name, value) VALUES (?, ?, ?) "
                       "ON CONFLICT(job_id, name) DO UPDATE SET value = excluded.value",
                       (job_id, name, json.dumps(dict(value), sort_keys=True)))

    def effects(self, job_id: int) -> dict[str, dict[str, Any]]:
        rows = self._db().execute("SELECT name, value FROM effects WHERE job_id = ?", (job_id,)).fetchall()
        return {name: json.loads(value) for name, value in rows}

    def complete(self, job_id: int, result: Mapping[str, Any]) -> None:
        self._finish(job_id, JobState.DONE, None, dict(result))

    def fail(self, job_id: int, reason: str, retry_after: timedelta | None = None, *, permanent: bool = False) -> bool:
        """Schedule a retry (True), or make the job a dead letter: permanent, or out of attempts (False)."""
        with self._transaction() as db:
            attempts = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if attempts is None:
                raise QueueError(f"action queue {self.path}: no job {job_id}")
            if permanent or attempts[0] >= self.config.max_attempts:
                _set_state(db, job_id, JobState.DEAD, reason=reason, result=None, now=self._now())
                return False
            due = self._now() + self._delay(attempts[0], retry_after).total_seconds()
            db.execute("UPDATE jobs SET state = ?, not_before = ?, lease_until = NULL, last_error = ?, updated = ? "
                       "WHERE id = ?", (JobState.PENDING, due, reason, self._now(), job_id))
            return True

    def retry(self, job_id: int) -> bool:
        """An operator's retry of a dead letter: due now, with a fresh count of attempts."""
        with self._transaction() as db:
            changed = db.execute("UPDATE jobs SET state = ?, attempts = 0, not_before = ?, updated = ? "
                                 "WHERE id = ? AND state = ?",
                                 (JobState.PENDING, self._now(), self._now(), job_id, JobState.DEAD)).rowcount
        return bool(changed)

    def purge(self, state: JobState) -> int:
        """Forget finished or dead jobs; their keys become free again, so only purge what will not come back.

        Jobs younger than ``REPLAY_WINDOW`` are kept whatever their state: their keys are the replay cache of
        signed callbacks, and freeing one inside the signature's tolerance would let a captured request run again.
        """
        if state not in (JobState.DONE, JobState.DEAD):
            raise QueueError(f"only done or dead jobs can be purged, not {state}")
        with self._transaction() as db:
            return db.execute("DELETE FROM jobs WHERE state = ? AND created < ?",
                              (state, self._now() - REPLAY_WINDOW.total_seconds())).rowcount

    def pending_count(self) -> int:
        """Jobs not yet done or dead; answering at all shows the file is readable (the receiver's readiness)."""
        try:
            row = self._db().execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)",
                                     (JobState.PENDING, JobState.RUNNING)).fetchone()
        except sqlite3.Error as exc:
            raise QueueError(f"action queue {self.path}: {exc}") from exc
        return int(row[0])

    def jobs(self, state: JobState | None = None) -> list[Job]:
        db = self._db()
        query = "SELECT id FROM jobs" + (" WHERE state = ?" if state else "") + " ORDER BY id"
        return [_job(db, row[0]) for row in db.execute(query, (state,) if state else ()).fetchall()]

    def _delay(self, attempts: int, retry_after: timedelta | None) -> timedelta:
        """Exponential with full jitter above half the step, and never before the remote's Retry-After."""
        step = min(self.config.backoff_max, self.config.backoff_base * (1 << min(attempts - 1, 32)))
        backoff = step * (0.5 + self._jitter() / 2)
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, self.config.max_retry_after))

    def _finish(self, job_id: int, state: JobState, reason: str | None, result: dict[str, Any] | None) -> None:
        with self._transaction() as db:
            _set_state(db, job_id, state, reason=reason, result=result, now=self._now())

    def _now(self) -> float:
        return self._clock().timestamp()

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
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
                raise QueueError(f"action queue {self.path}: {exc}") from exc


def _set_state(db: sqlite3.Connection, job_id: int, state: JobState, *, reason: str | None,
               result: dict[str, Any] | None, now: float) -> None:
    db.execute("UPDATE jobs SET state = ?, lease_until = NULL, last_error = COALESCE(?, last_error), result = ?, "
               "updated = ? WHERE id = ?",
               (state, reason, json.dumps(result, sort_keys=True) if result is not None else None, now, job_id))


def _job(db: sqlite3.Connection, job_id: int) -> Job:
    key, action, params, state, attempts, not_before, last_error, result = db.execute(
        "SELECT idempotency_key, action, params, state, attempts, not_before, last_error, result FROM jobs "
        "WHERE id = ?", (job_id,)).fetchone()
    return Job(job_id, key, action, json.loads(params), JobState(state), attempts,
               datetime.fromtimestamp(not_before, UTC), last_error,
               json.loads(result) if result is not None else None)


class JobEffects:
    """One job's effects journal (actions.base.Effects), backed by the queue file."""

    def __init__(self, queue: ActionQueue, job_id: int) -> None:
        self._queue = queue
        self._job_id = job_id

    def get(self, name: str) -> dict[str, Any] | None:
        return self._queue.effects(self._job_id).get(name)

    def record(self, name: str, value: Mapping[str, Any]) -> None:
        self._queue.record_effect(self._job_id, name, value)
