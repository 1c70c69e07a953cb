"""``notify.email`` against a real SMTP server: the owner gets one e-mail, bad credentials stop at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.core.audit import AuditRecord
from connector.respond.queue import JobState
from connector.respond.settings import RespondConfig
from connector.runtime.respond import Responder
from support.pki import Pki
from support.receiver import AuditTrail
from support.smtp import Mailbox, smtp_server

FINGERPRINT = "e1" * 16


def responder(tmp_path: Path, mailbox: Mailbox, pki: Pki, **email: Any) -> tuple[Responder, AuditTrail]:
    settings = {"host": mailbox.host, "port": mailbox.port, "sender": "postern@example.test",
                "username": "postern", "password": "relay-password-123", "ca_bundle": str(pki.bundle),
                "outbound": {"allow": ["127.0.0.0/8"]}, **email}
    config = RespondConfig.model_validate({
        "port": 0, "sources": [{"name": "ta", "kind": "splunk", "auth": "signature", "secret": "k" * 32}],
        "actions": {"notify.email": settings}})
    audit = AuditTrail()
    return Responder(config, tmp_path / "state", audit), audit


def expiring_callback(responder: Responder) -> None:
    row = {"rule.id": "cert.expiring_soon", "postern.severity": "medium", "postern.fingerprint": FINGERPRINT,
           "postern.asset.id": "shop.example.test", "postern.asset.owner": "web-team@example.test",
           "postern.certificate.days_left": "20", "message": "the certificate expires in 20 days",
           "postern.remediation": "Renew it."}
    payload = {"sid": "sid-1", "search_name": "expiring", "app": "TA-postern", "owner": "nobody",
               "results_link": "https://splunk.test", "results": [row]}
    responder.queue.enqueue("callback:ta:msg-1", "playbooks.plan", {"source": "ta", "kind": "splunk",
                                                                   "payload": payload})
    responder.plan_pending()


def actions(audit: list[AuditRecord]) -> list[str]:
    return [record.action for record in audit]


def test_the_owner_gets_one_email_over_starttls(tmp_path: Path, mailbox: Mailbox, pki: Pki) -> None:
    planner, audit = responder(tmp_path, mailbox, pki)
    expiring_callback(planner)
    assert planner.run_pending("notify.email") == 1
    assert planner.run_pending("notify.email") == 0  # done: nothing runs twice
    [message] = mailbox.messages
    assert mailbox.recipients == [["web-team@example.test"]]
    assert message["Subject"] == "Certificate for shop.example.test expires in 20 days"
    assert "Renew it." in message.get_payload()
    assert "playbook-step-succeeded" in actions(audit)


def test_refused_credentials_are_a_dead_letter_at_once(tmp_path: Path, mailbox: Mailbox, pki: Pki) -> None:
    planner, audit = responder(tmp_path, mailbox, pki, password="not-the-password")
    expiring_callback(planner)
    planner.run_pending("notify.email")
    [dead] = [job for job in planner.queue.jobs(JobState.DEAD)]
    assert "refused the credentials (535)" in (dead.last_error or "")
    assert mailbox.messages == [] and actions(audit).count("playbook-step-failed") == 1


def test_an_unreachable_server_is_retried_not_dropped(tmp_path: Path, mailbox: Mailbox, pki: Pki) -> None:
    planner, audit = responder(tmp_path, mailbox, pki, port=1)  # nothing listens on port 1
    expiring_callback(planner)
    planner.run_pending("notify.email")
    [job] = [job for job in planner.queue.jobs() if job.action == "notify.email"]
    assert job.state is JobState.PENDING and job.attempts == 1 and "Connection refused" in (job.last_error or "")
    assert "playbook-step-failed" in actions(audit) and "will retry" in audit[-1].reason


def test_a_relay_known_by_name_is_reached_at_its_pinned_address_over_starttls(pki: Pki, tmp_path: Path) -> None:
    """The certificate names only mail.example.test, which resolves nowhere: the message arrives because the
    connection went to the checked address while STARTTLS verified the name."""
    with smtp_server(pki, tmp_path, "postern", "relay-password-123", names=("mail.example.test",)) as relay:
        planner, audit = responder(tmp_path, relay, pki, host="mail.example.test", outbound={
            "allow": ["127.0.0.0/8"], "resolve": {"mail.example.test": "127.0.0.1"}})
        expiring_callback(planner)
        planner.run_pending("notify.email")
    assert len(relay.messages) == 1 and "playbook-step-succeeded" in actions(audit)


def test_a_wrong_action_setting_is_a_config_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"respond.actions.notify.email: host: Field required"):
        RespondConfig.model_validate({"sources": [{"name": "ta", "kind": "splunk", "auth": "signature",
                                                   "secret": "k" * 32}], "actions": {"notify.email": {}}})
    with pytest.raises(ValueError, match="unknown action"):
        RespondConfig.model_validate({"sources": [{"name": "ta", "kind": "splunk", "auth": "signature",
                                                   "secret": "k" * 32}], "actions": {"notify.fax": {}}})
