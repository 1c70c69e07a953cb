"""``ticket.jira`` against a strict Jira emulator: one ticket per finding, whatever crashes or forgets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.respond.actions.base import StepContext
from connector.respond.actions.ticket_jira import JiraAction, JiraSettings
from connector.respond.queue import ActionQueue, JobEffects, JobState
from connector.respond.settings import RespondConfig
from connector.respond.tickets import TicketLedger
from connector.runtime.respond import Responder
from emulators.jira import JiraEmulator
from support.receiver import AuditTrail

FINGERPRINT = "7a" * 16
PARAMS = {"summary": "Critical exposure: exposure.git_directory on shop.example.test",
          "description": "/.git/ is readable.\n\nRemove it from the web root.", "labels": ["postern"]}


@pytest.fixture
def jira() -> Iterator[JiraEmulator]:
    with JiraEmulator() as emulator:
        yield emulator


def settings(jira: JiraEmulator, **changes: Any) -> dict[str, Any]:
    return {"url": jira.url, "email": jira.email, "api_token": jira.api_token, "project": "SEC", **changes}


def step(tmp_path: Path, queue: ActionQueue, job_id: int, ledger: str = "tickets.sqlite") -> StepContext:
    return StepContext(FINGERPRINT, "shop.example.test", "critical-exposure-page", JobEffects(queue, job_id),
                       TicketLedger(tmp_path / ledger))


def test_one_issue_with_an_adf_description_and_the_findings_label(tmp_path: Path, jira: JiraEmulator) -> None:
    action = JiraAction(JiraSettings.model_validate(settings(jira)))
    queue = ActionQueue(tmp_path / "actions.sqlite")
    for n in range(3):  # three callbacks about the same finding episode
        queue.enqueue(f"cb-{n}", "ticket.jira", {})
    results = [action.execute(PARAMS, step(tmp_path, queue, job.id)) for job in queue.jobs()]
    assert [r["created"] for r in results] == [True, False, False] and {r["key"] for r in results} == {"SEC-1"}
    [issue] = jira.issues.values()
    assert issue.fields["labels"] == ["postern", f"postern-{FINGERPRINT}"]
    assert issue.fields["description"]["type"] == "doc" and len(issue.fields["description"]["content"]) == 2


def test_a_crash_after_creating_and_a_lost_ledger_still_make_no_second_issue(tmp_path: Path) -> None:
    with JiraEmulator(search_lag=60) as jira:  # Jira's search has not indexed the new issue yet
        action = JiraAction(JiraSettings.model_validate(settings(jira)))
        queue = ActionQueue(tmp_path / "actions.sqlite")
        queue.enqueue("cb", "ticket.jira", {})
        [job] = queue.jobs()
        first = action.execute(PARAMS, step(tmp_path, queue, job.id))
        # the worker died before marking the job done, and the ledger was lost with its disk
        rerun = action.execute(PARAMS, step(tmp_path, queue, job.id, ledger="replacement.sqlite"))
    assert first["key"] == rerun["key"] == "SEC-1" and rerun["found_in"] == "this job"
    assert len(jira.issues) == 1


def test_a_lost_ledger_finds_the_open_issue_by_its_label(tmp_path: Path, jira: JiraEmulator) -> None:
    action = JiraAction(JiraSettings.model_validate(settings(jira)))
    queue = ActionQueue(tmp_path / "actions.sqlite")
    queue.enqueue("before", "ticket.jira", {})
    queue.enqueue("after", "ticket.jira", {})
    before, after = queue.jobs()
    action.execute(PARAMS, step(tmp_path, queue, before.id, ledger="old.sqlite"))
    found = action.execute(PARAMS, step(tmp_path, queue, after.id, ledger="new.sqlite"))
    assert found == {"key": "SEC-1", "created": False, "found_in": "jira"} and len(jira.issues) == 1
    assert ("GET", "/rest/api/3/search") not in jira.requests  # only the /search/jql that replaced it


def test_rate_limits_are_waited_out_and_bad_credentials_stop_at_once(tmp_path: Path, jira: JiraEmulator) -> None:
    config = {"port": 0, "sources": [{"name": "s", "kind": "soar", "auth": "signature", "secret": "k" * 32}]}
    limited = Responder(RespondConfig.model_validate({**config, "actions": {"ticket.jira": settings(jira)}}),
                        tmp_path / "a", AuditTrail())
    jira.faults.extend([429])
    jira.retry_after = 120
    limited.queue.enqueue("k", "ticket.jira", {"params": PARAMS, "fingerprint": FINGERPRINT, "asset": "shop"})
    limited.run_pending("ticket.jira")
    [job] = limited.queue.jobs()
    assert job.state is JobState.PENDING and job.not_before >= datetime.now(UTC) + timedelta(seconds=110)
    assert jira.issues == {}
    refused = Responder(RespondConfig.model_validate(
        {**config, "actions": {"ticket.jira": settings(jira, api_token="revoked-token-0000")}}), tmp_path / "b",
        audit := AuditTrail())
    refused.queue.enqueue("k", "ticket.jira", {"params": PARAMS, "fingerprint": FINGERPRINT, "asset": "shop"})
    refused.run_pending("ticket.jira")
    [dead] = refused.queue.jobs()
    assert dead.state is JobState.DEAD and "refused the email and API token" in (dead.last_error or "")
    assert [record.action for record in audit] == ["playbook-step-failed"]


def test_a_resolved_finding_closes_its_issue_with_a_comment(tmp_path: Path, jira: JiraEmulator) -> None:
    action = JiraAction(JiraSettings.model_validate(settings(jira)))
    queue = ActionQueue(tmp_path / "actions.sqlite")
    queue.enqueue("open", "ticket.jira", {})
    queue.enqueue("close", "ticket.jira", {})
    opened, closing = queue.jobs()
    action.execute(PARAMS, step(tmp_path, queue, opened.id))
    assert action.execute({"operation": "close"}, step(tmp_path, queue, closing.id)) == {"closed": "SEC-1"}
    issue = jira.issues["SEC-1"]
    assert issue.status == "Done" and "the finding is resolved" in str(issue.comments)
    assert TicketLedger(tmp_path / "tickets.sqlite").open_ticket("jira", FINGERPRINT) is None
