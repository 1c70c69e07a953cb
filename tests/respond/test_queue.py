"""The action queue as a SOC relies on it: a retried alert runs once, a crash never files a second ticket."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.core.errors import ConfigError
from connector.respond.queue import ActionQueue, JobState, QueueConfig, QueueError
from support.clock import Clock


def queue(path: Path, clock: Clock, **config: object) -> ActionQueue:
    return ActionQueue(path / "actions.sqlite", QueueConfig.model_validate(config), clock=clock, jitter=lambda: 1.0)


def test_a_senders_retry_enqueues_nothing_new(tmp_path: Path) -> None:
    jobs = queue(tmp_path, Clock())
    key = "kibana:rule-7:alert-42:ticket"
    assert jobs.enqueue(key, "ticket.jira", {"fingerprint": "f1"})
    assert not jobs.enqueue(key, "ticket.jira", {"fingerprint": "f1"})
    assert [job.idempotency_key for job in jobs.jobs()] == [key]


def test_a_job_survives_a_restart_and_is_claimed_once(tmp_path: Path) -> None:
    clock = Clock()
    queue(tmp_path, clock).enqueue("splunk:sid-1:row-a:notify", "notify.email", {"to": "owner@example.test"})
    reopened = queue(tmp_path, clock)
    job = reopened.claim("worker-1")
    assert job is not None and job.params == {"to": "owner@example.test"} and job.attempts == 1
    assert reopened.claim("worker-2") is None  # leased to worker-1


KILLED_AFTER_THE_TICKET = """
import os, signal, sys
from connector.core.errors import ConfigError
from connector.respond.queue import ActionQueue
jobs = ActionQueue(__import__("pathlib").Path(sys.argv[1]))
job = jobs.claim("doomed")
jobs.record_effect(job.id, "ticket", {"key": "SEC-101"})
os.kill(os.getpid(), signal.SIGKILL)  # between "ticket created" and "job done"
"""


def test_a_worker_killed_after_creating_a_ticket_leaves_the_ticket_for_its_successor(tmp_path: Path) -> None:
    jobs = queue(tmp_path, Clock())
    jobs.enqueue("soar:evt-9:ticket", "ticket.jira", {"fingerprint": "f9"})
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_THE_TICKET, str(jobs.path)],
                            check=False, timeout=30)
    assert killed.returncode == -9
    assert jobs.claim("successor") is None  # the dead worker's lease still holds
    later = ActionQueue(jobs.path, clock=lambda: datetime.now(UTC) + timedelta(minutes=6))
    job = later.claim("successor")
    assert job is not None and job.attempts == 2
    assert later.effects(job.id) == {"ticket": {"key": "SEC-101"}}  # so the action comments, not creates


def test_retries_back_off_honour_retry_after_and_end_as_dead_letters(tmp_path: Path) -> None:
    clock = Clock()
    jobs = queue(tmp_path, clock, max_attempts=3, backoff_base="10s")
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


def test_an_error_retrying_cannot_fix_is_dead_at_once(tmp_path: Path) -> None:
    jobs = queue(tmp_path, Clock())
    jobs.enqueue("k", "ticket.servicenow", {})
    job = jobs.claim("w")
    assert job is not None and not jobs.fail(job.id, "401: the ServiceNow credentials were refused", permanent=True)
    assert [j.state for j in jobs.jobs()] == [JobState.DEAD]


def test_a_remote_cannot_park_a_job_for_ever(tmp_path: Path) -> None:
    clock = Clock()
    jobs = queue(tmp_path, clock, max_retry_after="1h")
    jobs.enqueue("k", "notify.slack", {})
    job = jobs.claim("w")
    assert job is not None and jobs.fail(job.id, "429 from Slack", retry_after=timedelta(days=30))
    clock.advance(hours=1, seconds=1)
    assert jobs.claim("w") is not None


def test_only_finished_jobs_can_be_purged(tmp_path: Path) -> None:
    clock = Clock()
    jobs = queue(tmp_path, clock)
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


def test_a_step_waiting_for_approval_runs_only_once_approved_and_not_after_its_ttl(tmp_path: Path) -> None:
    clock = Clock()
    jobs = queue(tmp_path, clock)
    jobs.enqueue("page", "notify.pagerduty", {}, awaiting_approval=True)
    jobs.enqueue("ticket", "ticket.jira", {}, awaiting_approval=True)
    assert jobs.claim("w") is None  # waiting for a person
    page, ticket = jobs.jobs()
    assert jobs.approve(page.id, timedelta(hours=24))
    assert (claimed := jobs.claim("w")) is not None and claimed.idempotency_key == "page"
    clock.advance(hours=25)
    assert not jobs.approve(ticket.id, timedelta(hours=24))
    assert [j.last_error for j in jobs.jobs(JobState.DEAD)] == ["the approval expired before anyone approved"]
