"""The action queue as a SOC relies on it: a retried alert runs once, a crash never files a second ticket.

Every behaviour is tested on both backends: the embedded SQLite file and a real PostgreSQL (tests/support/postgres.py),
which replicas share; the contention test claims from two queues on one database at once.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.core import storage
from connector.core.errors import ConfigError
from connector.respond.queue import ActionQueue, Job, JobState, QueueConfig, QueueError
from support.clock import Clock
from support.postgres import PASSWORD, PASSWORD_USER, Postgres


@dataclass
class Backend:
    """Where a test's queue lives: a file in tmp_path, or a fresh PostgreSQL database (then the file is unused)."""

    name: str
    path: Path
    url: str | None
    opened: list[ActionQueue] = field(default_factory=list)

    def config(self, **settings: object) -> QueueConfig:
        return QueueConfig.model_validate({"url": self.url, **settings})

    def open(self, clock: Any = None, **settings: object) -> ActionQueue:
        jobs = ActionQueue(self.path, self.config(**settings), jitter=lambda: 1.0,
                           **({"clock": clock} if clock is not None else {}))
        self.opened.append(jobs)
        return jobs

    def sql(self, statement: str) -> None:
        engine = storage.open_engine(self.path if self.url is None else self.url)
        with engine.begin() as db:
            db.execute(sa.text(statement))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.needs_postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    chosen = Backend(request.param, tmp_path / "actions.sqlite", url)
    yield chosen
    for jobs in chosen.opened:
        jobs.close()


def queue(backend: Backend, clock: Clock, **config: object) -> ActionQueue:
    return backend.open(clock, **config)


def test_a_senders_retry_enqueues_nothing_new(backend: Backend) -> None:
    jobs = queue(backend, Clock())
    key = "kibana:rule-7:alert-42:ticket"
    assert jobs.enqueue(key, "ticket.jira", {"fingerprint": "f1"})
    assert not jobs.enqueue(key, "ticket.jira", {"fingerprint": "f1"})
    assert [job.idempotency_key for job in jobs.jobs()] == [key]


def test_a_job_survives_a_restart_and_is_claimed_once(backend: Backend) -> None:
    clock = Clock()
    queue(backend, clock).enqueue("splunk:sid-1:row-a:notify", "notify.email", {"to": "owner@example.test"})
    reopened = queue(backend, clock)
    job = reopened.claim("worker-1")
    assert job is not None and job.params == {"to": "owner@example.test"} and job.attempts == 1
    assert reopened.claim("worker-2") is None  # leased to worker-1


KILLED_AFTER_THE_TICKET = """
import os, signal, sys
from pathlib import Path
from connector.respond.queue import ActionQueue, QueueConfig
jobs = ActionQueue(Path(sys.argv[1]), QueueConfig(url=sys.argv[2] or None))
job = jobs.claim("doomed")
jobs.record_effect(job.id, "ticket", {"key": "SEC-101"})
os.kill(os.getpid(), signal.SIGKILL)  # between "ticket created" and "job done"
"""


def test_a_worker_killed_after_creating_a_ticket_leaves_the_ticket_for_its_successor(backend: Backend) -> None:
    jobs = queue(backend, Clock())
    jobs.enqueue("soar:evt-9:ticket", "ticket.jira", {"fingerprint": "f9"})
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_THE_TICKET, str(jobs.path), backend.url or ""],
                            check=False, timeout=30)
    assert killed.returncode == -9
    assert jobs.claim("successor") is None  # the dead worker's lease still holds
    later = ActionQueue(jobs.path, backend.config(), clock=lambda: datetime.now(UTC) + timedelta(minutes=6))
    backend.opened.append(later)
    job = later.claim("successor")
    assert job is not None and job.attempts == 2
    assert later.effects(job.id) == {"ticket": {"key": "SEC-101"}}  # so the action comments, not creates


def test_retries_back_off_honour_retry_after_and_end_as_dead_letters(backend: Backend) -> None:
    clock = Clock()
    jobs = queue(backend, clock, max_attempts=3, backoff_base="10s")
    jobs.enqueue("k", "notify.pagerduty", {})
    job = jobs.claim("w")
    assert job is not None and jobs.fail(job.id, "429 from PagerDuty", retry_after=timedelta(seconds=120))
    clock.advance(seconds=119)
    assert jobs.claim("w") is None  # the backoff alone would have allowed it after 10 s
    clock.advance(seconds=2)
    job = jobs.claim("w")
    assert job is not None and job.attempts == 2 and job.last_error == "429 from PagerDuty"
    assert jobs.fail(job.id, "503 from PagerDuty")
    clock.advance(seconds=19)
    assert jobs.claim("w") is None  # second retry waits twice the base
    clock.advance(seconds=2)
    job = jobs.claim("w")
    assert job is not None and not jobs.fail(job.id, "503 from PagerDuty")  # out of attempts
    [dead] = jobs.jobs(JobState.DEAD)
    assert dead.last_error == "503 from PagerDuty" and jobs.claim("w") is None
    assert jobs.retry(dead.id) and jobs.claim("w") is not None  # an operator's retry


def test_an_error_retrying_cannot_fix_is_dead_at_once(backend: Backend) -> None:
    jobs = queue(backend, Clock())
    jobs.enqueue("k", "ticket.servicenow", {})
    job = jobs.claim("w")
    assert job is not None and not jobs.fail(job.id, "401: the ServiceNow credentials were refused", permanent=True)
    assert [j.state for j in jobs.jobs()] == [JobState.DEAD]


def test_a_remote_cannot_park_a_job_for_ever(backend: Backend) -> None:
    clock = Clock()
    jobs = queue(backend, clock, max_retry_after="1h")
    jobs.enqueue("k", "notify.slack", {})
    job = jobs.claim("w")
    assert job is not None and jobs.fail(job.id, "429 from Slack", retry_after=timedelta(days=30))
    clock.advance(hours=1, seconds=1)
    assert jobs.claim("w") is not None


def test_only_finished_jobs_can_be_purged(backend: Backend) -> None:
    clock = Clock()
    jobs = queue(backend, clock)
    jobs.enqueue("a", "rescan", {})
    jobs.enqueue("b", "rescan", {})
    first = jobs.claim("w")
    assert first is not None
    jobs.complete(first.id, {"findings": 3})
    assert jobs.purge(JobState.DONE) == 0  # still inside the replay window: its key keeps a replay out
    clock.advance(minutes=11)
    assert jobs.purge(JobState.DONE) == 1 and [j.idempotency_key for j in jobs.jobs()] == ["b"]
    with pytest.raises(QueueError, match="only done or dead jobs"):
        jobs.purge(JobState.PENDING)


def test_an_unwritable_queue_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(ConfigError, match="action queue"):
        ActionQueue(blocker / "actions.sqlite")


def test_an_unreachable_database_is_a_config_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"action queue postgresql\+psycopg://postern@127.0.0.1:{port}/q"):
        ActionQueue(tmp_path / "unused.sqlite", QueueConfig(url=f"postgresql://postern@127.0.0.1:{port}/q"))


def test_a_step_waiting_for_approval_runs_only_once_approved_and_not_after_its_ttl(backend: Backend) -> None:
    clock = Clock()
    jobs = queue(backend, clock)
    jobs.enqueue("page", "notify.pagerduty", {}, awaiting_approval=True)
    jobs.enqueue("ticket", "ticket.jira", {}, awaiting_approval=True)
    assert jobs.claim("w") is None  # waiting for a person
    page, ticket = jobs.jobs()
    assert jobs.approve(page.id, timedelta(hours=24))
    assert (claimed := jobs.claim("w")) is not None and claimed.idempotency_key == "page"
    clock.advance(hours=25)
    assert not jobs.approve(ticket.id, timedelta(hours=24))
    assert [j.last_error for j in jobs.jobs(JobState.DEAD)] == ["the approval expired before anyone approved"]


# The schema of the release before Alembic, as its ActionQueue created it (its _SCHEMA, copied verbatim)
PREVIOUS_RELEASE_SCHEMA = """
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


def test_a_queue_file_of_the_previous_release_is_adopted_with_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "actions.sqlite"
    old = sqlite3.connect(path)
    old.executescript(PREVIOUS_RELEASE_SCHEMA)
    now = Clock()().timestamp()
    old.executemany(
        "INSERT INTO jobs (idempotency_key, action, params, state, attempts, not_before, lease_until, worker, "
        "last_error, result, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [("splunk:sid-1:row-a:ticket", "ticket.jira", '{"fingerprint": "f1"}', "running", 1, now - 60, now - 1,
          "action:ticket.jira", None, None, now - 60, now - 60),
         ("kibana:rule-7:alert-42:notify", "notify.email", '{"to": "owner@example.test"}', "done", 1, now - 120,
          None, None, None, '{"sent": 1}', now - 120, now - 100),
         ("soar:evt-9:page", "notify.pagerduty", "{}", "dead", 8, now - 300, None, None, "401 from PagerDuty", None,
          now - 300, now - 200)])
    old.execute("INSERT INTO effects (job_id, name, value) VALUES (1, 'ticket', '{\"key\": \"SEC-101\"}')")
    old.execute("DELETE FROM jobs WHERE id = 3")  # a purge: the next id must still be 4, never 3 again
    old.execute("INSERT INTO jobs (idempotency_key, action, params, state, not_before, created, updated) "
                "VALUES ('soar:evt-9:page', 'notify.pagerduty', '{}', 'pending', ?, ?, ?)", (now, now, now))
    old.commit()
    old.close()

    jobs = ActionQueue(path, clock=Clock(), jitter=lambda: 1.0)
    assert [(j.id, j.idempotency_key, j.state) for j in jobs.jobs()] == [
        (1, "splunk:sid-1:row-a:ticket", JobState.RUNNING), (2, "kibana:rule-7:alert-42:notify", JobState.DONE),
        (4, "soar:evt-9:page", JobState.PENDING)]
    assert jobs.jobs(JobState.DONE)[0].result == {"sent": 1}
    assert jobs.effects(1) == {"ticket": {"key": "SEC-101"}}  # a re-run still comments rather than files again
    assert not jobs.enqueue("splunk:sid-1:row-a:ticket", "ticket.jira", {})  # the old keys still keep replays out
    claimed = jobs.claim("w")  # the expired lease of job 1 (older not_before) comes first
    assert claimed is not None and claimed.id == 1 and claimed.attempts == 2
    assert jobs.enqueue("new", "rescan", {}) and jobs.jobs()[-1].id > 4  # purged ids stay unused
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT version_num FROM alembic_version").fetchall() == [(storage.head("queue"),)]
    jobs.close()


def test_a_schema_newer_than_the_code_is_refused(backend: Backend) -> None:
    backend.open().enqueue("k", "rescan", {})
    backend.sql("UPDATE alembic_version SET version_num = 'queue_9999_from_the_future'")
    with pytest.raises(ConfigError, match=r"revision 'queue_9999_from_the_future', which this connector does not "
                                          r"know .*a newer release migrated it"):
        backend.open()


def test_replicas_starting_together_migrate_once(backend: Backend) -> None:
    opened: list[ActionQueue] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(backend.open())
        except BaseException as exc:
            errors.append(exc)

    starters = [threading.Thread(target=start) for _ in range(4)]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join()
    assert errors == [] and len(opened) == 4
    assert opened[0].enqueue("k", "rescan", {}) and not opened[3].enqueue("k", "rescan", {})


JOBS, CLAIMERS = 500, 4


def test_two_replicas_claiming_at_once_never_get_the_same_job(backend: Backend) -> None:
    """Two queues on one database (two replicas), two claiming threads each: every job is claimed exactly once."""
    replicas = [backend.open(), backend.open()]
    for n in range(JOBS):
        replicas[n % 2].enqueue(f"alert-{n}:ticket", "ticket.jira", {"n": n})
    claims: list[list[Job]] = [[] for _ in range(CLAIMERS)]
    latencies: list[float] = []
    start = threading.Barrier(CLAIMERS)

    def claimer(index: int) -> None:
        jobs = replicas[index % 2]
        start.wait()
        idle = 0
        while idle < 20:  # a claim that lost every race may find nothing while others still hold jobs
            began = time.perf_counter()
            job = jobs.claim(f"replica-{index % 2}:worker-{index}")
            latencies.append(time.perf_counter() - began)
            if job is None:
                idle += 1
                time.sleep(0.005)
                continue
            idle = 0
            claims[index].append(job)
            jobs.complete(job.id, {"by": index})

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(CLAIMERS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.perf_counter() - began
    claimed = [job.id for each in claims for job in each]
    assert len(claimed) == JOBS and len(set(claimed)) == JOBS  # each job once, none lost
    assert all(len(each) > 0 for each in claims)  # every claimer got work: nobody waited behind a lock for ever
    assert {job.attempts for each in claims for job in each} == {1}
    assert [j.state for j in replicas[0].jobs()] == [JobState.DONE] * JOBS
    latencies.sort()
    print(f"\n{backend.name}: {JOBS} jobs claimed once each by {CLAIMERS} claimers on 2 queues in {elapsed:.2f}s "
          f"({JOBS / elapsed:.0f} claims+completions/s), per claimer {[len(c) for c in claims]}, "
          f"claim p50 {latencies[len(latencies) // 2] * 1000:.1f} ms p99 "
          f"{latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms")


@pytest.mark.needs_postgres
def test_the_database_password_comes_from_the_environment(postgres: Postgres, pg_url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_url.replace("postern@", f"{PASSWORD_USER}@")
    monkeypatch.setenv("QUEUE_DB_PASSWORD", PASSWORD)
    jobs = ActionQueue(tmp_path / "unused.sqlite", QueueConfig.model_validate(
        {"url": url, "password": {"env": "QUEUE_DB_PASSWORD"}}))
    assert jobs.enqueue("k", "rescan", {}) and PASSWORD not in jobs.where
    jobs.close()
    monkeypatch.setenv("QUEUE_DB_PASSWORD", "wrong")
    with pytest.raises(ConfigError, match="password authentication failed") as refused:
        ActionQueue(tmp_path / "unused.sqlite", QueueConfig.model_validate(
            {"url": url, "password": {"env": "QUEUE_DB_PASSWORD"}}))
    assert "wrong" not in str(refused.value)


def test_a_password_in_the_url_is_refused_in_favour_of_a_secret() -> None:
    with pytest.raises(ValueError, match=r"password: \{env: NAME\}"):
        QueueConfig.model_validate({"url": "postgresql://postern:hunter2@db.internal/postern"})
    with pytest.raises(ValueError, match="password is the database's"):
        QueueConfig.model_validate({"password": "hunter2"})
    with pytest.raises(ValueError, match="not supported"):
        QueueConfig.model_validate({"url": "mysql://postern@db.internal/postern"})
    assert QueueConfig.model_validate({"url": "postgresql://postern@db.internal/postern"}).url == \
        "postgresql+psycopg://postern@db.internal/postern"
