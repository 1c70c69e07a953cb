"""Signed approval links, end to end: the approver's e-mail carries a link, opening it only shows the steps, its
button runs them, and an altered, expired or reused link approves nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from connector.core.clock import utc_now
from connector.respond.approvals import ApprovalLinks, ApprovalSigner
from connector.respond.queue import JobState
from connector.respond.settings import RespondConfig
from connector.runtime.respond import Responder
from support.pki import Pki
from support.receiver import AuditTrail
from support.smtp import Mailbox
from support.waiting import wait_until
from support.web import closed_port

FINGERPRINT = "5e" * 16
APPROVER, OWNER = "soc-lead@example.test", "web-team@example.test"
KEY = "approval links key, 32 bytes or more"
PLAYBOOK = """\
name: rescan-on-approval
trigger:
  rules: [exposure.*]
mode: approve
steps:
  - action: notify.email
    mode: auto  # the notice that asks for the approval goes out at once
    params:
      to: soc-lead@example.test
      subject: "Approve the steps for {{ field('postern.asset.id') }}?"
      body: "{{ field('message') }}\\n\\nApprove: {{ approval_url }}"
  - action: notify.email
    params: {to: web-team@example.test, subject: "Approved: act on {{ field('postern.asset.id') }}", body: "go"}
"""


@pytest.fixture
def responder(tmp_path: Path, mailbox: Mailbox, pki: Pki) -> Iterator[Responder]:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "approve.yaml").write_text(PLAYBOOK)
    port = closed_port()
    config = RespondConfig.model_validate({
        "port": port, "playbooks": str(playbooks), "approval_ttl": "24h",
        "approvals": {"public_url": f"http://127.0.0.1:{port}", "secret": KEY},
        "sources": [{"name": "ta", "kind": "splunk", "auth": "signature", "secret": "k" * 32}],
        "actions": {"notify.email": {"host": mailbox.host, "port": mailbox.port, "sender": "postern@example.test",
                                     "username": "postern", "password": "relay-password-123",
                                     "ca_bundle": str(pki.bundle), "outbound": {"allow": ["127.0.0.0/8"]}}}})
    running = Responder(config, tmp_path / "state", AuditTrail())
    running.start()
    wait_until(lambda: running.server.started, timeout=15)
    try:
        yield running
    finally:
        running.stop()


def alert(responder: Responder) -> None:
    row = {"rule.id": "exposure.admin_login", "postern.severity": "high", "postern.fingerprint": FINGERPRINT,
           "postern.asset.id": "shop.example.test", "message": "an admin login is reachable from the internet"}
    responder.queue.enqueue("callback:ta:msg-1", "playbooks.plan", {
        "source": "ta", "kind": "splunk", "payload": {"sid": "sid-1", "search_name": "exposure", "app": "TA-postern",
                                                      "owner": "nobody", "results_link": "https://splunk.test",
                                                      "results": [row]}})


def approval_link(mailbox: Mailbox) -> str:
    wait_until(lambda: len(mailbox.messages) >= 1, timeout=15)
    [notice] = mailbox.messages
    assert mailbox.recipients == [[APPROVER]]
    found = re.search(r"Approve: (\S+)", notice.get_payload(decode=True).decode())
    assert found, notice.get_payload()
    return found.group(1)


def waiting(responder: Responder) -> list[str]:
    return [job.action for job in responder.queue.jobs(JobState.AWAITING_APPROVAL)]


def audited(responder: Responder, action: str) -> list[str]:
    trail = responder.auditor
    assert isinstance(trail, AuditTrail)
    return [record.reason for record in trail if record.action == action]


def test_the_link_in_the_notice_approves_the_waiting_step_once(responder: Responder, mailbox: Mailbox) -> None:
    alert(responder)
    link = approval_link(mailbox)
    shown = httpx.get(link)
    # opening it (a mail scanner does) approves nothing; the page is not framable and not cached
    assert shown.status_code == 200 and "Approve 1 step(s)" in shown.text and waiting(responder) == ["notify.email"]
    assert shown.headers["x-frame-options"] == "DENY" and shown.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]
    approved = httpx.post(link)
    assert approved.status_code == 200 and "1 step(s) approved" in approved.text
    wait_until(lambda: len(mailbox.messages) == 2, timeout=15)
    assert mailbox.recipients[1] == [OWNER] and waiting(responder) == []
    again = httpx.post(link)
    assert again.status_code == 404 and "Nothing to approve" in again.text and len(mailbox.messages) == 2
    assert audited(responder, "approval-accepted") == ["1 step(s) approved by link"]


@pytest.mark.parametrize(("alter", "status", "reason"), [
    (lambda link: link.replace("msg-1", "msg-2"), 403, "signature does not match"),  # another run
    (lambda link: re.sub(r"t=(\d+)", lambda m: f"t={int(m.group(1)) + 3600}", link), 403, "signature does not match"),
    (lambda link: link.split("&sig=")[0], 403, "signature does not match"),
])
def test_an_altered_link_approves_nothing(responder: Responder, mailbox: Mailbox, alter, status: int,
                                          reason: str) -> None:
    alert(responder)
    refused = httpx.post(alter(approval_link(mailbox)))
    assert refused.status_code == status and reason in refused.text
    assert waiting(responder) == ["notify.email"] and len(mailbox.messages) == 1
    assert any(reason in text for text in audited(responder, "approval-rejected"))


def test_an_expired_link_is_gone(responder: Responder, mailbox: Mailbox) -> None:
    alert(responder)
    link = approval_link(mailbox)
    run = httpx.URL(link).params["run"]
    links = responder.config.approvals
    assert links is not None
    stale = ApprovalSigner(links, timedelta(hours=24)).link(run, utc_now() - timedelta(hours=25))
    refused = httpx.post(stale)
    assert refused.status_code == 410 and "expired" in refused.text and waiting(responder) == ["notify.email"]


def test_a_short_approval_key_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="32 bytes or more"):
        ApprovalLinks.model_validate({"public_url": "https://postern.example.test", "secret": "short"})
