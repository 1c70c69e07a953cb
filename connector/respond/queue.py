"""The durable action queue between the playbook engine and the actions: execution guarantees live here.

A job is committed to the queue's database before the receiver answers 202: SQLite (WAL, state_dir/actions.sqlite)
by default, or PostgreSQL (``respond.queue.url``) for replicas that share one queue, keyed by an
idempotency key derived from (source, webhook-id or alert id, step): a sender's retry, or the same alert arriving
twice, enqueues nothing new.

Execution is at least once. A worker claims a job under a lease; a worker that dies (SIGKILL, power loss) leaves
the lease to expire and the job is claimed again. So that "at least once" never means "two tickets", an action
records each external effect (``record_effect``: the ticket key it created, the page it sent) in the same database
before it moves on, and a re-run reads the effects of its earlier attempts and skips what is already done.

Failures are retried with exponential backoff and jitter, never sooner than a ``Retry-After`` the remote asked
for; after ``max_attempts``, or on an error that retrying cannot fix, the job is a dead letter with its reason,
kept for ``connector respond jobs list|retry|purge``.

A claim is one transaction: on SQLite ``BEGIN IMMEDIATE`` makes it the only writer; on PostgreSQL the due row is
taken with ``SELECT ... FOR UPDATE SKIP LOCKED``, so replicas claiming at once each get a different job, and none
waits for another's. The schema is Alembic's branch ``queue`` (connector/core/storage.py), migrated at start.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from connector.core import storage
from connector.core.clock import utc_now
from connector.core.errors import ConfigError, ConnectorError
from connector.core.units import Duration, Secret

BRANCH = "queue"  # its migrations: migrations/versions/queue_*.py

_metadata = sa.MetaData()
_jobs = sa.Table(
    "jobs", _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.Text, nullable=False, unique=True),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_before", sa.Double, nullable=False),
    sa.Column("lease_until", sa.Double),
    sa.Column("worker", sa.Text),
    sa.Column("last_error", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("updated", sa.Double, nullable=False),
)
_effects = sa.Table(
    "effects", _metadata,
    sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
_JOB_COLUMNS = (_jobs.c.id, _jobs.c.idempotency_key, _jobs.c.action, _jobs.c.params, _jobs.c.state,
                _jobs.c.attempts, _jobs.c.not_before, _jobs.c.last_error, _jobs.c.result)


REPLAY_WINDOW = timedelta(minutes=10)  # twice the Standard Webhooks timestamp tolerance of 5 minutes


class JobState(StrEnum):
    PENDING = "pending"  # due at not_before; also a running job whose lease expired
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"  # a step of mode approve: runs only after `respond approve JOB`
    DONE = "done"
    DEAD = "dead"


class QueueConfig(BaseModel):
    """Retries and leases of the action queue, and where it lives (state_dir/actions.sqlite, or ``url``)."""

    model_config = ConfigDict(extra="forbid")

    url: storage.DatabaseUrl | None = Field(
        default=None, description="a PostgreSQL database shared by replicas (postgresql+psycopg://user@host:5432/db);"
                                  " none: SQLite in the state directory")
    password: Secret | None = Field(default=None, description="the database user's password ({env: ...} or "
                                                              "{file: ...}), with url")
    max_attempts: int = Field(default=8, ge=1)
    backoff_base: Duration = Field(default=timedelta(seconds=5),
                                   description="the first retry's delay, doubled each time")
    backoff_max: Duration = Field(default=timedelta(hours=1))
    max_retry_after: Duration = Field(default=timedelta(hours=6),
                                      description="a longer Retry-After is taken as this: a remote cannot park a job")
    lease: Duration = Field(default=timedelta(minutes=5),
                            description="how long a claimed job is a worker's before another may take it")

    @model_validator(mode="after")
    def _password_with_url(self) -> Self:
        if self.password is not None and self.url is None:
            raise ValueError("password is the database's, for url: the SQLite queue in the state directory has none")
        return self


class QueueError(ConnectorError):
    """The queue's database could not be read or written; the transaction was undone."""


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


def _p(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    return sa.bindparam(f"p_{name}", type_=type_)


class _Statements:
    """The hot paths' statements, built once with bound parameters: building a Core statement on each call cost
    fifteen times the database's own work (0.75 ms an enqueue, against 0.05 ms for SQLite to do it)."""

    def __init__(self, on_postgresql: bool) -> None:
        insert = postgresql.insert if on_postgresql else sqlite.insert
        self.enqueue = insert(_jobs).values(
            idempotency_key=_p("key"), action=_p("action"), params=_p("params"), state=_p("state"),
            not_before=_p("due"), created=_p("now"), updated=_p("now"),
        ).on_conflict_do_nothing(index_elements=[_jobs.c.idempotency_key]).returning(_jobs.c.id)
        due = sa.or_(sa.and_(_jobs.c.state == JobState.PENDING, _jobs.c.not_before <= _p("now")),
                     sa.and_(_jobs.c.state == JobState.RUNNING, _jobs.c.lease_until <= _p("now")))
        # PostgreSQL: a row another replica is claiming is skipped, not waited for (SQLite renders no FOR UPDATE:
        # BEGIN IMMEDIATE has made the transaction the only writer)
        self.due_any = (sa.select(_jobs.c.id).where(due).order_by(_jobs.c.not_before, _jobs.c.id)
                        .limit(_p("limit")).with_for_update(skip_locked=True))
        self.due_of = (sa.select(_jobs.c.id).where(due, _jobs.c.action.in_(sa.bindparam("p_actions", expanding=True)))
                       .order_by(_jobs.c.not_before, _jobs.c.id).limit(_p("limit")).with_for_update(skip_locked=True))
        self.take = (sa.update(_jobs).where(_jobs.c.id.in_(sa.bindparam("p_ids", expanding=True)))
                     .values(state=JobState.RUNNING, attempts=_jobs.c.attempts + 1, lease_until=_p("lease"),
                             worker=_p("worker"), updated=_p("now"))
                     .returning(*_JOB_COLUMNS))
        self.set_state = sa.update(_jobs).where(_jobs.c.id == _p("id")).values(
            state=_p("state"), lease_until=None, last_error=sa.func.coalesce(_p("reason", sa.Text), _jobs.c.last_error),
            result=_p("result"), updated=_p("now"))
        effect = insert(_effects).values(job_id=_p("id"), name=_p("name"), value=_p("value"))
        self.record_effect = effect.on_conflict_do_update(index_elements=[_effects.c.job_id, _effects.c.name],
                                                          set_={"value": effect.excluded.value})
        self.effects = sa.select(_effects.c.name, _effects.c.value).where(_effects.c.job_id == _p("id"))
        self.attempts = sa.select(_jobs.c.attempts).where(_jobs.c.id == _p("id")).with_for_update()
        self.retry_later = sa.update(_jobs).where(_jobs.c.id == _p("id")).values(
            state=JobState.PENDING, not_before=_p("due"), lease_until=None, last_error=_p("reason"), updated=_p("now"))


class ActionQueue:
    """Safe for several worker threads; on SQLite for one process (the state-directory lock keeps it to one), on
    PostgreSQL for any number of replicas sharing the database of ``config.url`` (``path`` is then unused)."""

    def __init__(self, path: Path, config: QueueConfig | None = None, *,
                 clock: Callable[[], datetime] = utc_now, jitter: Callable[[], float] = random.random) -> None:
        self.path = path
        self.config = config or QueueConfig()
        self._clock = clock
        self._jitter = jitter
        self._arrived = threading.Condition()  # wakes idle workers of this process when a job is due
        try:
            if self.config.url is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._engine = storage.open_engine(path)
            else:
                self._engine = storage.open_engine(self.config.url, self.config.password)
        except (OSError, SQLAlchemyError) as exc:
            raise ConfigError(f"action queue {self.config.url or path}: {exc}") from None
        self.where = storage.describe(self._engine)
        self._postgresql = storage.is_postgresql(self._engine)
        self._sql = _Statements(self._postgresql)
        self._reader = storage.reader(self._engine)
        # SQLite has one writer at a time anyway: this process's threads queue here rather than on the file lock
        self._write_lock: AbstractContextManager[Any] = nullcontext() if self._postgresql else threading.Lock()
        storage.migrate(self._engine, BRANCH, "action queue")

    def close(self) -> None:
        """Close the pooled connections (a queue left open is closed when it is collected)."""
        self._engine.dispose()

    def enqueue(self, idempotency_key: str, action: str, params: Mapping[str, Any],
                not_before: datetime | None = None, *, awaiting_approval: bool = False) -> bool:
        """False when a job with this key exists, whatever its state: the duplicate is the sender's retry."""
        now = self._now()
        due = not_before.timestamp() if not_before else now
        state = JobState.AWAITING_APPROVAL if awaiting_approval else JobState.PENDING
        values = {"p_key": idempotency_key, "p_action": action, "p_params": json.dumps(dict(params), sort_keys=True),
                  "p_state": state.value, "p_due": due, "p_now": now}
        with self._transaction() as db:  # a row comes back only if it was inserted (rowcount is not portable here)
            inserted = db.execute(self._sql.enqueue, values).first() is not None
        if inserted and not awaiting_approval:
            self.wake()
        return bool(inserted)

    def enqueue_many(self, jobs: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[bool]:
        """Several due jobs (key, action, params) in one transaction, each True if new: the receiver commits a
        batch of callbacks at once. All or none: a failure raises QueueError for the whole batch."""
        now = self._now()
        with self._transaction() as db:
            inserted = [db.execute(self._sql.enqueue, {
                "p_key": key, "p_action": action, "p_params": json.dumps(dict(params), sort_keys=True),
                "p_state": JobState.PENDING.value, "p_due": now, "p_now": now}).first() is not None
                for key, action, params in jobs]
        if any(inserted):
            self.wake()
        return inserted

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
            created = db.execute(
                sa.select(_jobs.c.created).where(_jobs.c.id == job_id, _jobs.c.state == JobState.AWAITING_APPROVAL)
                .with_for_update()  # PostgreSQL: a second approver waits, then finds it approved
            ).scalar()
            if created is None:
                return False
            if now - created > approval_ttl.total_seconds():
                self._set_state(db, job_id, JobState.DEAD, reason="the approval expired before anyone approved",
                                result=None)
                return False
            db.execute(sa.update(_jobs).where(_jobs.c.id == job_id)
                       .values(state=JobState.PENDING, not_before=now, updated=now))
        self.wake()
        return True

    def approve_run(self, run: str, approval_ttl: timedelta) -> list[int]:
        """Approve every step of one playbook run that waits (an approval link names the run); the ids approved."""
        prefix = run + ":"
        with self._reading() as db:
            ids = db.execute(sa.select(_jobs.c.id).where(
                _jobs.c.state == JobState.AWAITING_APPROVAL,
                sa.func.substr(_jobs.c.idempotency_key, 1, len(prefix)) == prefix,
            )).scalars().all()
        return [job_id for job_id in ids if self.approve(job_id, approval_ttl)]

    def claim(self, worker: str, actions: Sequence[str] | None = None) -> Job | None:
        """The oldest due job (of ``actions``, if given), leased to ``worker``; an expired lease is due again."""
        claimed = self.claim_many(worker, actions, 1)
        return claimed[0] if claimed else None

    def claim_many(self, worker: str, actions: Sequence[str] | None = None, limit: int = 32) -> list[Job]:
        """Up to ``limit`` due jobs, oldest first, leased to ``worker`` together in one transaction: for a worker
        whose jobs are quick and many (the planner), the transaction costs more than the job."""
        now = self._now()
        with self._transaction() as db:
            if actions:
                ids = db.execute(self._sql.due_of, {"p_now": now, "p_actions": list(actions),
                                                    "p_limit": limit}).scalars().all()
            else:
                ids = db.execute(self._sql.due_any, {"p_now": now, "p_limit": limit}).scalars().all()
            if not ids:
                return []
            rows = db.execute(self._sql.take, {"p_ids": list(ids), "p_lease": now + self.config.lease.total_seconds(),
                                               "p_worker": worker, "p_now": now}).all()
        return sorted((_job(row) for row in rows), key=lambda job: (job.not_before, job.id))

    def record_effect(self, job_id: int, name: str, value: Mapping[str, Any]) -> None:
        """Durable before the action goes on, so that a re-run after a crash finds it and does not repeat it."""
        with self._transaction() as db:
            db.execute(self._sql.record_effect,
                       {"p_id": job_id, "p_name": name, "p_value": json.dumps(dict(value), sort_keys=True)})

    def effects(self, job_id: int) -> dict[str, dict[str, Any]]:
        with self._reading() as db:
            rows = db.execute(self._sql.effects, {"p_id": job_id}).all()
        return {name: json.loads(value) for name, value in rows}

    def complete(self, job_id: int, result: Mapping[str, Any]) -> None:
        self._finish(job_id, JobState.DONE, None, dict(result))

    def complete_many(self, results: Mapping[int, Mapping[str, Any]]) -> None:
        """Several jobs done, in one transaction."""
        with self._transaction() as db:
            for job_id, result in results.items():
                self._set_state(db, job_id, JobState.DONE, reason=None, result=dict(result))

    def fail(self, job_id: int, reason: str, retry_after: timedelta | None = None, *, permanent: bool = False) -> bool:
        """Schedule a retry (True), or make the job a dead letter: permanent, or out of attempts (False)."""
        with self._transaction() as db:
            attempts = db.execute(self._sql.attempts, {"p_id": job_id}).scalar()
            if attempts is None:
                raise QueueError(f"action queue {self.where}: no job {job_id}")
            if permanent or attempts >= self.config.max_attempts:
                self._set_state(db, job_id, JobState.DEAD, reason=reason, result=None)
                return False
            due = self._now() + self._delay(attempts, retry_after).total_seconds()
            db.execute(self._sql.retry_later, {"p_id": job_id, "p_due": due, "p_reason": reason, "p_now": self._now()})
            return True

    def retry(self, job_id: int) -> bool:
        """An operator's retry of a dead letter: due now, with a fresh count of attempts."""
        with self._transaction() as db:
            changed = db.execute(
                sa.update(_jobs).where(_jobs.c.id == job_id, _jobs.c.state == JobState.DEAD)
                .values(state=JobState.PENDING, attempts=0, not_before=self._now(), updated=self._now())
            ).rowcount
        return bool(changed)

    def purge(self, state: JobState) -> int:
        """Forget finished or dead jobs; their keys become free again, so only purge what will not come back.

        Jobs younger than ``REPLAY_WINDOW`` are kept whatever their state: their keys are the replay cache of
        signed callbacks, and freeing one inside the signature's tolerance would let a captured request run again.
        """
        if state not in (JobState.DONE, JobState.DEAD):
            raise QueueError(f"only done or dead jobs can be purged, not {state}")
        with self._transaction() as db:
            return db.execute(sa.delete(_jobs).where(
                _jobs.c.state == state, _jobs.c.created < self._now() - REPLAY_WINDOW.total_seconds())).rowcount

    def pending_count(self) -> int:
        """Jobs not yet done or dead; answering at all shows the database is readable (the receiver's readiness)."""
        with self._reading() as db:
            count = db.execute(sa.select(sa.func.count()).select_from(_jobs)
                               .where(_jobs.c.state.in_([JobState.PENDING, JobState.RUNNING]))).scalar()
        return int(count or 0)

    def jobs(self, state: JobState | None = None) -> list[Job]:
        query = sa.select(*_JOB_COLUMNS).order_by(_jobs.c.id)
        if state:
            query = query.where(_jobs.c.state == state)
        with self._reading() as db:
            return [_job(row) for row in db.execute(query)]

    def _delay(self, attempts: int, retry_after: timedelta | None) -> timedelta:
        """Exponential with full jitter above half the step, and never before the remote's Retry-After."""
        step = min(self.config.backoff_max, self.config.backoff_base * (1 << min(attempts - 1, 32)))
        backoff = step * (0.5 + self._jitter() / 2)
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, self.config.max_retry_after))

    def _finish(self, job_id: int, state: JobState, reason: str | None, result: dict[str, Any] | None) -> None:
        with self._transaction() as db:
            self._set_state(db, job_id, state, reason=reason, result=result)

    def _set_state(self, db: sa.Connection, job_id: int, state: JobState, *, reason: str | None,
                   result: dict[str, Any] | None) -> None:
        db.execute(self._sql.set_state, {
            "p_id": job_id, "p_state": state.value, "p_reason": reason, "p_now": self._now(),
            "p_result": json.dumps(result, sort_keys=True) if result is not None else None})

    def _now(self) -> float:
        return self._clock().timestamp()

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """One write transaction, committed at the end of the block and undone on any exception."""
        with self._write_lock:
            try:
                with self._engine.begin() as db:
                    yield db
            except SQLAlchemyError as exc:
                raise QueueError(f"action queue {self.where}: {exc}") from exc

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        try:
            with self._reader.connect() as db:
                yield db
        except SQLAlchemyError as exc:
            raise QueueError(f"action queue {self.where}: {exc}") from exc


def _job(row: sa.Row[*tuple[Any, ...]]) -> Job:
    return Job(row.id, row.idempotency_key, row.action, json.loads(row.params), JobState(row.state), row.attempts,
               datetime.fromtimestamp(row.not_before, UTC), row.last_error,
               json.loads(row.result) if row.result is not None else None)


class JobEffects:
    """One job's effects journal (actions.base.Effects), backed by the queue file."""

    def __init__(self, queue: ActionQueue, job_id: int) -> None:
        self._queue = queue
        self._job_id = job_id

    def get(self, name: str) -> dict[str, Any] | None:
        return self._queue.effects(self._job_id).get(name)

    def record(self, name: str, value: Mapping[str, Any]) -> None:
        self._queue.record_effect(self._job_id, name, value)
