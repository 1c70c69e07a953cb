"""Re-issued notices, against a real SMTP server: a finding nobody acts on escalates tier by tier, and the
reminders stop the moment it is resolved or someone acknowledges it."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.core.errors import ConfigError
from connector.respond.playbooks import load_playbooks
from connector.respond.settings import RespondConfig
from connector.respond.verdicts import Verdict
from connector.runtime.respond import Responder
from support.clock import Clock
from support.pki import Pki
from support.receiver import AuditTrail
from support.smtp import Mailbox

FINGERPRINT = "a7" * 16
OWNER, LEAD, CISO = "web-team@example.test", "web-lead@example.test", "ciso@example.test"
PLAYBOOK = f"""\
name: exposed-admin-escalates
trigger:
  rules: [exposure.*]
steps:
  - action: notify.email
    params:
      to: "{{{{ field('postern.asset.owner') }}}}"
      subject: "{{{{ field('rule.id') }}}} on {{{{ field('postern.asset.id') }}}}"
      body: "{{{{ field('message') }}}}"
    repeat: {{every: 1d, times: 3, tiers: [{LEAD}, {CISO}]}}
  - action: notify.email
    after: 7d  # past the SLA of a high finding
    params: {{to: {CISO}, subject: "Past its SLA: {{{{ field('postern.asset.id') }}}}", body: "still open"}}
guardrails:
  cooldown: 30d
"""


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def responder(tmp_path: Path, mailbox: Mailbox, pki: Pki, clock: Clock) -> Responder:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "escalate.yaml").write_text(PLAYBOOK)
    config = RespondConfig.model_validate({
        "port": 0, "playbooks": str(playbooks),
        "sources": [{"name": "ta", "kind": "splunk", "auth": "signature", "secret": "k" * 32}],
        "actions": {"notify.email": {"host": mailbox.host, "port": mailbox.port, "sender": "postern@example.test",
                                     "username": "postern", "password": "relay-password-123",
                                     "ca_bundle": str(pki.bundle), "outbound": {"allow": ["127.0.0.0/8"]}}}})
    return Responder(config, tmp_path / "state", AuditTrail(), clock=clock)


def callback(responder: Responder, sid: str, change: str) -> None:
    row = {"rule.id": "exposure.admin_login", "postern.severity": "high", "postern.fingerprint": FINGERPRINT,
           "postern.asset.id": "shop.example.test", "postern.asset.owner": OWNER, "postern.lifecycle.change": change,
           "message": "an admin login is reachable from the internet"}
    payload = {"sid": sid, "search_name": "exposure", "app": "TA-postern", "owner": "nobody",
               "results_link": "https://splunk.test", "results": [row]}
    responder.queue.enqueue(f"callback:ta:{sid}", "playbooks.plan", {"source": "ta", "kind": "splunk",
                                                                     "payload": payload})
    responder.plan_pending()


def day_by_day(responder: Responder, mailbox: Mailbox, clock: Clock, days: int) -> list[list[str]]:
    """Who got mail on each of the next ``days`` days, the responder's workers running once a day."""
    seen: list[list[str]] = []
    for _ in range(days):
        clock.advance(days=1)
        before = len(mailbox.recipients)
        responder.run_pending("notify.email")
        seen.append([address for recipients in mailbox.recipients[before:] for address in recipients])
    return seen


def skipped(responder: Responder) -> list[str]:
    trail = responder.auditor
    assert isinstance(trail, AuditTrail)
    return [record.reason for record in trail if record.action == "playbook-step-skipped"]


def test_an_unanswered_notice_escalates_tier_by_tier_and_then_stops(responder: Responder, mailbox: Mailbox,
                                                                    clock: Clock) -> None:
    callback(responder, "sid-1", "opened")
    responder.run_pending("notify.email")
    assert mailbox.recipients == [[OWNER]]
    # a re-issue a day (three at most), then the SLA notice on day 7; the SIEM's re-alerts inside the cooldown
    # plan nothing more
    callback(responder, "sid-2", "opened")
    assert day_by_day(responder, mailbox, clock, 8) == [[LEAD], [CISO], [CISO], [], [], [], [CISO], []]
    subjects = [message["Subject"] for message in mailbox.messages]
    assert subjects.count("exposure.admin_login on shop.example.test") == 4
    assert subjects[-1] == "Past its SLA: shop.example.test"


def test_an_acknowledgement_stops_the_reminders_and_the_sla_notice(responder: Responder, mailbox: Mailbox,
                                                                  clock: Clock) -> None:
    callback(responder, "sid-1", "opened")
    responder.run_pending("notify.email")
    assert day_by_day(responder, mailbox, clock, 1) == [[LEAD]]
    responder.engine.verdicts.record(Verdict(FINGERPRINT, "acknowledged", "alice", "on it", clock(), None))
    assert day_by_day(responder, mailbox, clock, 8) == [[]] * 8
    assert mailbox.recipients == [[OWNER], [LEAD]]
    assert any(message.startswith("not run: acknowledged by alice") for message in skipped(responder))
    # an acknowledgement is no verdict on the finding: the KPIs' false-positive rate does not see it
    assert FINGERPRINT not in responder.engine.verdicts.latest()


def test_a_resolved_finding_gets_no_more_reminders(responder: Responder, mailbox: Mailbox, clock: Clock) -> None:
    callback(responder, "sid-1", "opened")
    responder.run_pending("notify.email")
    clock.advance(hours=2)
    callback(responder, "sid-2", "resolved")
    assert day_by_day(responder, mailbox, clock, 8) == [[]] * 8
    assert mailbox.recipients == [[OWNER]]
    assert sum(message.startswith("not run: the finding was resolved") for message in skipped(responder)) == 2


def test_a_reopened_finding_escalates_again(responder: Responder, mailbox: Mailbox, clock: Clock) -> None:
    callback(responder, "sid-1", "opened")
    responder.run_pending("notify.email")
    callback(responder, "sid-2", "resolved")
    clock.advance(days=31)  # past the cooldown: the new episode runs the playbook again
    callback(responder, "sid-3", "reopened")
    responder.run_pending("notify.email")
    assert day_by_day(responder, mailbox, clock, 1) == [[LEAD]]
    assert mailbox.recipients[-2:] == [[OWNER], [LEAD]]


def test_a_reminder_more_often_than_every_five_minutes_is_refused_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "storm.yaml").write_text(PLAYBOOK.replace("every: 1d", "every: 1m"))
    with pytest.raises(ConfigError) as raised:
        load_playbooks(tmp_path)
    assert "storm.yaml:" in str(raised.value) and "more often than every 5 minutes" in str(raised.value)
