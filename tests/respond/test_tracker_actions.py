"""``ticket.servicenow`` and ``ticket.github`` against strict emulators: one ticket per finding, closed on fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.respond.actions.base import ActionError, StepContext
from connector.respond.actions.ticket_github import GitHubAction, GitHubSettings
from connector.respond.actions.ticket_servicenow import ServiceNowAction, ServiceNowSettings
from connector.respond.queue import ActionQueue, JobEffects
from connector.respond.tickets import TicketLedger
from emulators.trackers import GitHubEmulator, ServiceNowEmulator

FINGERPRINT = "4b" * 16
LOOPBACK = {"outbound": {"allow": ["127.0.0.0/8"]}}  # where the emulators live
PARAMS = {"summary": "Renew the certificate of shop.example.test", "description": "It expires in 9 days.",
          "severity": "high", "labels": ["postern"]}


def step(tmp_path: Path, key: str, ledger: str = "tickets.sqlite") -> StepContext:
    queue = ActionQueue(tmp_path / "actions.sqlite")
    queue.enqueue(key, "ticket", {})
    [job] = [job for job in queue.jobs() if job.idempotency_key == key]
    return StepContext(FINGERPRINT, "shop.example.test", "p", JobEffects(queue, job.id),
                       TicketLedger(tmp_path / ledger), job_key=key)


def test_servicenow_one_incident_by_correlation_id_then_resolved(tmp_path: Path) -> None:
    with ServiceNowEmulator() as snow:
        action = ServiceNowAction(ServiceNowSettings.model_validate(
            {"url": snow.url, "username": snow.username, "password": snow.password, **LOOPBACK}))
        first = action.execute(PARAMS, step(tmp_path, "a"))
        again = action.execute(PARAMS, step(tmp_path, "b"))
        lost_ledger = action.execute(PARAMS, step(tmp_path, "c", ledger="new.sqlite"))
        closed = action.execute({"operation": "close"}, step(tmp_path, "d"))
    assert first["created"] and again["found_in"] == "ledger" and lost_ledger["found_in"] == "servicenow"
    [incident] = snow.incidents.values()
    assert incident["correlation_id"] == FINGERPRINT and incident["urgency"] == "1"
    assert closed == {"closed": incident["sys_id"]} and incident["active"] == "false"


def test_servicenow_refused_credentials_are_permanent(tmp_path: Path) -> None:
    with ServiceNowEmulator() as snow:
        action = ServiceNowAction(ServiceNowSettings.model_validate(
            {"url": snow.url, "username": snow.username, "password": "wrong-password", **LOOPBACK}))
        with pytest.raises(ActionError, match="credentials were refused") as refused:
            action.execute(PARAMS, step(tmp_path, "a"))
    assert refused.value.permanent and snow.incidents == {}


def test_github_one_issue_by_label_then_closed_with_a_comment(tmp_path: Path) -> None:
    with GitHubEmulator() as github:
        action = GitHubAction(GitHubSettings.model_validate(
            {"repository": github.repository, "token": github.token, "api_url": github.url, **LOOPBACK}))
        first = action.execute(PARAMS, step(tmp_path, "a"))
        lost_ledger = action.execute(PARAMS, step(tmp_path, "b", ledger="new.sqlite"))
        github.faults.append(403)
        with pytest.raises(ActionError) as limited:
            action.execute({"operation": "close"}, step(tmp_path, "c"))
        closed = action.execute({"operation": "close"}, step(tmp_path, "d"))
    assert first == {"key": "1", "created": True} and lost_ledger["found_in"] == "github"
    assert not limited.value.permanent and limited.value.retry_after is not None
    assert closed == {"closed": "1"} and github.issues[1]["state"] == "closed" and github.issues[1]["comments"]


def test_github_without_push_access_fails_loudly_instead_of_duplicating_later(tmp_path: Path) -> None:
    with GitHubEmulator(can_label=False) as github:
        action = GitHubAction(GitHubSettings.model_validate(
            {"repository": github.repository, "token": github.token, "api_url": github.url, **LOOPBACK}))
        context = step(tmp_path, "a")
        with pytest.raises(ActionError, match="without the label") as unlabelled:
            action.execute(PARAMS, context)
        rerun = action.execute(PARAMS, context)  # the journal still knows the issue it made
    assert unlabelled.value.permanent and rerun["found_in"] == "this job" and len(github.issues) == 1
