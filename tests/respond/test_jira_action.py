"""``ticket.jira`` against a strict Jira emulator, Cloud (v3) and Data Center (v2): one ticket per finding,
whatever crashes or forgets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.respond.actions.base import ActionError, StepContext
from connector.respond.actions.ticket_jira import JiraAction, JiraSettings
from connector.respond.queue import ActionQueue, JobEffects, JobState
from connector.respond.settings import RespondConfig
from connector.respond.tickets import TicketLedger
from connector.runtime.respond import Responder
from emulators.jira import JiraEmulator
from support.pki import Pki
from support.receiver import AuditTrail

FINGERPRINT = "7a" * 16
PARAMS = {"summary": "Critical exposure: exposure.git_directory on shop.example.test",
          "description": "/.git/ is readable.\n\nRemove it from the web root.", "labels": ["postern"]}


LOOPBACK = {"allow": ["127.0.0.0/8"]}  # the emulator lives on loopback, which the outbound guard refuses otherwise


@pytest.fixture(params=["cloud", "datacenter"])
def jira(request: pytest.FixtureRequest) -> Iterator[JiraEmulator]:
    with JiraEmulator(flavour=request.param) as emulator:
        yield emulator


def credentials(jira: JiraEmulator) -> dict[str, Any]:
    if jira.flavour == "cloud":
        return {"email": jira.email, "api_token": jira.api_token}
    return {"flavour": "datacenter", "personal_access_token": jira.personal_access_token}


def settings(jira: JiraEmulator, **changes: Any) -> dict[str, Any]:
    return {"url": jira.url, **credentials(jira), "project": "SEC", "outbound": LOOPBACK, **changes}


def step(tmp_path: Path, queue: ActionQueue, job_id: int, ledger: str = "tickets.sqlite") -> StepContext:
    return StepContext(FINGERPRINT, "shop.example.test", "critical-exposure-page", JobEffects(queue, job_id),
                       TicketLedger(tmp_path / ledger))


def test_one_issue_with_its_flavours_description_and_the_findings_label(tmp_path: Path, jira: JiraEmulator) -> None:
    action = JiraAction(JiraSettings.model_validate(settings(jira)))
    queue = ActionQueue(tmp_path / "actions.sqlite")
    for n in range(3):  # three callbacks about the same finding episode
        queue.enqueue(f"cb-{n}", "ticket.jira", {})
    results = [action.execute(PARAMS, step(tmp_path, queue, job.id)) for job in queue.jobs()]
    assert [r["created"] for r in results] == [True, False, False] and {r["key"] for r in results} == {"SEC-1"}
    [issue] = jira.issues.values()
    assert issue.fields["labels"] == ["postern", f"postern-{FINGERPRINT}"]
    if jira.flavour == "cloud":  # an Atlassian Document, one paragraph per paragraph
        assert issue.fields["description"]["type"] == "doc" and len(issue.fields["description"]["content"]) == 2
    else:  # wiki markup, where a blank line separates paragraphs too
        assert issue.fields["description"] == PARAMS["description"]
    assert {path for _, path in jira.requests} == {f"{jira.api}/issue", jira.search_path}


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_a_crash_after_creating_and_a_lost_ledger_still_make_no_second_issue(tmp_path: Path, flavour: str) -> None:
    with JiraEmulator(flavour=flavour, search_lag=60) as jira:  # Jira's search has not indexed the new issue yet
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
    assert ("GET", jira.search_path) in jira.requests  # Cloud: only the /search/jql that replaced /search


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
        {**config, "actions": {"ticket.jira": settings(jira, **revoked(jira))}}), tmp_path / "b", audit := AuditTrail())
    refused.queue.enqueue("k", "ticket.jira", {"params": PARAMS, "fingerprint": FINGERPRINT, "asset": "shop"})
    refused.run_pending("ticket.jira")
    [dead] = refused.queue.jobs()
    refused_what = "email and API token" if jira.flavour == "cloud" else "personal access token"
    assert dead.state is JobState.DEAD and f"refused the {refused_what}" in (dead.last_error or "")
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
    assert ("POST", f"{jira.api}/issue/SEC-1/comment") in jira.requests
    assert TicketLedger(tmp_path / "tickets.sqlite").open_ticket("jira", FINGERPRINT) is None


def revoked(jira: JiraEmulator) -> dict[str, str]:
    return {"api_token": "revoked-token-0000"} if jira.flavour == "cloud" else {"personal_access_token": "revoked-0000"}


def test_each_flavour_refuses_the_others_description(jira: JiraEmulator) -> None:
    """What keeps the tests above honest: v3 takes only an Atlassian Document, v2 only a string."""
    other = "a plain string" if jira.flavour == "cloud" else {"type": "doc", "version": 1, "content": []}
    fields = {"project": {"key": "SEC"}, "issuetype": {"name": "Task"}, "summary": "s", "description": other}
    headers = {"Authorization": f"Bearer {jira.personal_access_token}"}
    auth = (jira.email, jira.api_token) if jira.flavour == "cloud" else None
    answer = httpx.post(f"{jira.url}{jira.api}/issue", json={"fields": fields}, auth=auth,
                        headers=None if auth else headers)
    expected = "an Atlassian Document" if jira.flavour == "cloud" else "Operation value must be a string"
    assert answer.status_code == 400 and expected in answer.json()["errors"]["description"]
    assert jira.issues == {}


def test_a_datacenter_behind_its_own_ca_is_reached_at_the_pinned_address_by_name(tmp_path: Path, pki: Pki) -> None:
    chain = pki.intermediate.issue(["jira.corp.test"]).write(tmp_path, "jira")
    with JiraEmulator(flavour="datacenter", tls=chain) as jira:
        pinned = settings(jira, url=f"https://jira.corp.test:{jira.port}", ca_bundle=str(pki.bundle),
                          outbound={**LOOPBACK, "resolve": {"jira.corp.test": "127.0.0.1"}})
        action = JiraAction(JiraSettings.model_validate(pinned))
        queue = ActionQueue(tmp_path / "actions.sqlite")
        queue.enqueue("open", "ticket.jira", {})
        [job] = queue.jobs()
        assert action.execute(PARAMS, step(tmp_path, queue, job.id)) == {"key": "SEC-1", "created": True}
    # TLS verified the certificate for the name, and the name went to Jira as Host, while the connection went to
    # the checked address: no second resolution could send it anywhere else
    assert set(jira.hosts) == {f"jira.corp.test:{jira.port}"}


def test_a_datacenter_on_an_internal_address_needs_it_allowed(tmp_path: Path) -> None:
    with JiraEmulator(flavour="datacenter") as jira:
        action = JiraAction(JiraSettings.model_validate(settings(
            jira, url=f"http://jira.corp.test:{jira.port}", outbound={"resolve": {"jira.corp.test": "127.0.0.1"}})))
        queue = ActionQueue(tmp_path / "actions.sqlite")
        queue.enqueue("open", "ticket.jira", {})
        [job] = queue.jobs()
        with pytest.raises(ActionError, match=r"jira.corp.test resolves to 127.0.0.1 \(loopback\): not allowlisted "
                                              r"\(respond.actions.ticket.jira.outbound.allow\)") as refused:
            action.execute(PARAMS, step(tmp_path, queue, job.id))
    assert refused.value.permanent and jira.requests == []


def test_each_flavour_names_its_own_credentials() -> None:
    base = {"url": "https://jira.example.test", "project": "SEC"}
    with pytest.raises(ValueError, match="flavour datacenter authenticates with personal_access_token"):
        JiraSettings.model_validate({**base, "flavour": "datacenter", "email": "a@b.test", "api_token": "t"})
    with pytest.raises(ValueError, match="flavour cloud authenticates with email and api_token"):
        JiraSettings.model_validate({**base, "personal_access_token": "p"})
