"""Playbooks as a SOC writes and trusts them: errors at file:line, one run per finding however loud the SIEM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.core.errors import ConfigError
from connector.core.lifecycle import AssetRecord, Drift, Episode
from connector.core.model import Asset, Criticality, Severity
from connector.inventory.digest import digests
from connector.inventory.kpi import History, KpiSettings
from connector.normalise.digest import digest_ecs
from connector.normalise.drift import drift_ecs
from connector.respond.actions.base import StepContext
from connector.respond.actions.suppress import SuppressAction, SuppressSettings
from connector.respond.engine import Decision, PlaybookEngine, RunLedger
from connector.respond.playbooks import Mode, Playbook, load_playbook, load_playbooks
from connector.respond.queue import ActionQueue, Job, JobEffects
from connector.respond.tickets import TicketLedger
from connector.respond.verdicts import VerdictStore

PLAYBOOKS = Path(__file__).parents[2] / "playbooks"
MONDAY_NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FINGERPRINT = "9f" * 16


def exposure_alert(date: str = "2026-12-07T12:00:00.000Z", **fields: Any) -> dict[str, Any]:
    """A Kibana webhook body (the documented template) about one critical exposure that just opened."""
    alert = {"rule": {"id": "exposure.git_directory", "name": "Git repository exposed"},
             "event": {"kind": "event", "action": "finding-opened"},
             "postern": {"fingerprint": FINGERPRINT, "severity": "critical", "status": "fail",
                         "lifecycle": {"change": "opened"},
                         "asset": {"id": "shop.example.test", "owner": "web-team@example.test",
                                   "criticality": "high"}},
             "message": "/.git/ is readable", **fields}
    return {"rule": {"id": "rule-1"}, "alert": {"uuid": "uuid-1"}, "date": date, "alerts": [alert]}


def engine(tmp_path: Path, playbooks: list[Playbook] | None = None, **options: Any) -> PlaybookEngine:
    queue = ActionQueue(tmp_path / "actions.sqlite")
    return PlaybookEngine(playbooks if playbooks is not None else load_playbooks(PLAYBOOKS), queue,
                          RunLedger(tmp_path / "playbook-runs.sqlite"), VerdictStore(tmp_path / "verdicts.sqlite"),
                          **options)


def callback(planner: PlaybookEngine, payload: dict[str, Any], key: str, kind: str = "elastic") -> Job:
    planner.queue.enqueue(key, "playbooks.plan", {"source": "kibana", "kind": kind, "payload": payload})
    [job] = [job for job in planner.queue.jobs() if job.idempotency_key == key]
    return job


def test_the_shipped_playbooks_are_valid() -> None:
    names = {playbook.name for playbook in load_playbooks(PLAYBOOKS)}
    assert names == {"cert-expiring-notify-owner", "cert-expiring-ticket", "critical-exposure-page",
                     "high-finding-ticket", "routine-daily-digest", "resolved-finding-close-ticket",
                     "drift-critical-notify-owner"}


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\ntrigger:\n  rules: [cert.*]\n  min_severity: severe\n"
                      "steps:\n  - action: notify.email\n    params: {to: '{{ unclosed'}\n")
    with pytest.raises(ConfigError) as raised:
        load_playbook(broken)
    message = str(raised.value)
    assert f"{broken}:4: trigger.min_severity" in message
    assert f"{broken}:7: steps.0.params" in message and "template" in message


def test_a_step_naming_an_action_that_does_not_exist_is_an_error_at_its_line(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: typo\ntrigger:\n  rules: [cert.*]\nsteps:\n  - action: notify.email\n"
                    "  - action: notify.digest\n    params: {to: someone}\n")
    with pytest.raises(ConfigError) as raised:
        load_playbook(typo)
    assert f"{typo}:6: steps.1.action: unknown action 'notify.digest'" in str(raised.value)
    assert "notify.email" in str(raised.value)  # the known ones are listed


def test_a_critical_exposure_pages_and_files_a_ticket_with_the_findings_fields(tmp_path: Path) -> None:
    planner = engine(tmp_path)
    planned = planner.plan_callback(callback(planner, exposure_alert(), "cb-1"), MONDAY_NOON)
    by_action = {step.action: step for step in planned if step.playbook == "critical-exposure-page"}
    assert set(by_action) == {"notify.pagerduty", "ticket.jira"}
    assert by_action["notify.pagerduty"].params["dedup_key"] == FINGERPRINT
    assert by_action["ticket.jira"].params["summary"] == \
        "Critical exposure: exposure.git_directory on shop.example.test"
    assert all(step.decision is Decision.QUEUED for step in planned)
    queued = {job.action: job for job in planner.queue.jobs() if job.action != "playbooks.plan"}
    # and high-finding-ticket's: its ticket (the same action) and its reminder, due once the SLA of 7 days is past
    assert set(queued) == {"notify.pagerduty", "ticket.jira", "notify.email"}
    assert queued["notify.email"].not_before == MONDAY_NOON + timedelta(days=7)


def drift_alert(criticality: Criticality, date: str) -> dict[str, Any]:
    """A Kibana webhook body whose alert is the connector's own drift event: a certificate replaced."""
    asset = Asset(host="pay.example.test", owner="pay-team@example.test",
                  criticality=criticality)
    drift = Drift("certificate", asset, "443", {"sha256": "aa", "issuer": "CN=Old", "not_after": "2027-01-01"},
                  {"sha256": "bb", "issuer": "CN=New", "not_after": "2027-06-01"}, MONDAY_NOON - timedelta(minutes=1),
                  MONDAY_NOON, "scan-1")
    document = drift_ecs(drift, {"version": "1", "hostname": "sidecar", "name": "sidecar"})
    return {"rule": {"id": "rule-drift"}, "alert": {"uuid": f"uuid-{criticality}"}, "date": date, "alerts": [document]}


def test_a_drift_on_a_critical_asset_mails_its_owner_once_per_hour(tmp_path: Path) -> None:
    planner = engine(tmp_path)
    planned = planner.plan_callback(callback(planner, drift_alert(Criticality.CRITICAL, "d1"), "d-1"), MONDAY_NOON)
    [mail] = [step for step in planned if step.playbook == "drift-critical-notify-owner"]
    assert mail.decision is Decision.QUEUED and mail.params["to"] == "pay-team@example.test"
    assert mail.params["subject"] == "Change on pay.example.test: certificate"
    assert "replaced (issuer CN=New" in mail.params["body"]
    again = planner.plan_callback(callback(planner, drift_alert(Criticality.CRITICAL, "d2"), "d-2"),
                                  MONDAY_NOON + timedelta(minutes=10))
    assert [step.decision for step in again if step.playbook == "drift-critical-notify-owner"] == [Decision.SKIPPED]
    routine = planner.plan_callback(callback(planner, drift_alert(Criticality.LOW, "d3"), "d-3"), MONDAY_NOON)
    assert [step for step in routine if step.playbook == "drift-critical-notify-owner"] == []
    assert all(step.playbook != "high-finding-ticket" for step in planned + routine)  # a change is not a failure


def test_an_owners_daily_digest_is_one_email_listing_its_findings(tmp_path: Path) -> None:
    end = MONDAY_NOON.replace(hour=0)
    asset = Asset(host="shop.example.test", owner="web-team@example.test")
    history = History([AssetRecord(asset, "config", None, end - timedelta(days=30), end, end)], [],
                      [Episode("a1" * 16, asset.id, "csp.missing", Severity.MEDIUM, end - timedelta(hours=5), None),
                       Episode("b2" * 16, asset.id, "hsts.missing", Severity.HIGH, end - timedelta(days=9), None)],
                      [], {})
    [digest] = digests(history, KpiSettings(), "daily", end)
    document = digest_ecs(digest, {"version": "1", "hostname": "sidecar", "name": "sidecar"})
    alert = {"rule": {"id": "rule-digest"}, "alert": {"uuid": "u-digest"}, "date": "d", "alerts": [document]}
    planner = engine(tmp_path)
    planned = [step for step in planner.plan_callback(callback(planner, alert, "dg-1"), MONDAY_NOON)
               if step.decision is Decision.QUEUED]
    [mail] = planned  # the digest only: no per-finding playbook fires on it
    assert mail.playbook == "routine-daily-digest" and mail.params["to"] == "web-team@example.test"
    assert mail.params["subject"] == "Daily posture digest: 1 opened, 0 resolved, 1 past SLA"
    assert "Opened:\n- medium csp.missing on shop.example.test" in mail.params["body"]
    assert "Past their SLA:\n- high hsts.missing on shop.example.test" in mail.params["body"]


def test_a_storm_of_alerts_about_one_finding_is_one_run(tmp_path: Path) -> None:
    planner = engine(tmp_path)
    decisions = []
    for n in range(300):  # every minute for five hours, as a per-alert rule without throttling fires
        at = MONDAY_NOON + timedelta(minutes=n)
        job = callback(planner, exposure_alert(date=at.isoformat()), f"cb-{n}")
        decisions += [step.decision for step in planner.plan_callback(job, at) if step.playbook ==
                      "critical-exposure-page"]
    assert decisions.count(Decision.QUEUED) == 2  # one page and one ticket
    assert decisions.count(Decision.SKIPPED) == 2 * 299
    assert [job.action for job in planner.queue.jobs()].count("notify.pagerduty") == 1


def test_a_replanned_callback_after_a_crash_neither_loses_nor_repeats_steps(tmp_path: Path) -> None:
    planner = engine(tmp_path)
    job = callback(planner, exposure_alert(), "cb-crash")
    first = planner.plan_callback(job, MONDAY_NOON)
    again = planner.plan_callback(job, MONDAY_NOON + timedelta(minutes=1))  # the plan job re-run
    assert [s.decision for s in again] == [s.decision for s in first]  # not "skipped: cooldown"
    assert [j.action for j in planner.queue.jobs()].count("notify.pagerduty") == 1


def test_splunk_rows_compare_as_numbers_and_dry_run_executes_nothing(tmp_path: Path) -> None:
    [playbook] = [p for p in load_playbooks(PLAYBOOKS) if p.name == "cert-expiring-ticket"]
    dry = playbook.model_copy(update={"mode": Mode.DRY_RUN})
    planner = engine(tmp_path, [dry])
    rows = [{"rule.id": "cert.expiring_soon", "postern.severity": "medium", "postern.fingerprint": fingerprint,
             "postern.asset.id": "api.example.test", "postern.certificate.days_left": days, "message": "soon"}
            for fingerprint, days in (("a1" * 16, "9"), ("b2" * 16, "30"))]  # Splunk: every value a string
    payload = {"sid": "sid-1", "search_name": None, "app": "TA-postern", "owner": "nobody",
               "results_link": "https://splunk.test", "results": rows}
    planned = planner.plan_callback(callback(planner, payload, "cb-s", kind="splunk"), MONDAY_NOON)
    assert [(step.fingerprint, step.decision) for step in planned] == [("a1" * 16, Decision.DRY_RUN)]
    assert [job.action for job in planner.queue.jobs()] == ["playbooks.plan"]


def test_the_kill_switch_window_and_allowed_targets_skip_with_their_reason(tmp_path: Path) -> None:
    [page] = [p for p in load_playbooks(PLAYBOOKS) if p.name == "critical-exposure-page"]
    document = page.model_dump()
    document["guardrails"] |= {"window": {"days": ["mon"], "start": "08:00", "end": "18:00"},
                               "allowed_targets": ["*.example.test"]}
    office_hours = Playbook.model_validate(document)
    killed = engine(tmp_path / "killed", [office_hours], killed=lambda: True)
    planner = engine(tmp_path / "live", [office_hours])
    reasons = {
        "kill": killed.plan_callback(callback(killed, exposure_alert(), "k"), MONDAY_NOON)[0].reason,
        "night": planner.plan_callback(callback(planner, exposure_alert(), "n"), MONDAY_NOON + timedelta(hours=10))[0]
        .reason,
    }
    stranger = exposure_alert()
    stranger["alerts"][0]["postern"]["asset"]["id"] = "partner.other.test"
    reasons["target"] = planner.plan_callback(callback(planner, stranger, "t"), MONDAY_NOON)[0].reason
    assert reasons == {"kill": "the global kill switch is on", "night": "outside the playbook's time window",
                       "target": "asset 'partner.other.test' is not among the playbook's allowed targets"}


def test_templates_cannot_reach_outside_the_finding(tmp_path: Path) -> None:
    hostile = Playbook.model_validate({
        "name": "hostile", "trigger": {"rules": ["*"]},
        "steps": [{"action": "notify.email", "params": {"to": "{{ field.__globals__ }}"}}]})
    planner = engine(tmp_path, [hostile])
    [step] = planner.plan_callback(callback(planner, exposure_alert(), "h"), MONDAY_NOON)
    assert step.decision is Decision.SKIPPED and "template error" in step.reason


def feedback(planner: PlaybookEngine, key: str, verdict: str, **extra: Any) -> None:
    planner.queue.enqueue(key, "playbooks.plan", {"source": "analysts", "kind": "feedback", "payload": {
        "fingerprint": FINGERPRINT, "verdict": verdict, "analyst": "kim", "comment": "", **extra}})
    [job] = [job for job in planner.queue.jobs() if job.idempotency_key == key]
    [recorded] = planner.plan_callback(job, MONDAY_NOON)
    assert recorded.decision is Decision.RECORDED


def test_an_analysts_false_positive_silences_the_finding_until_it_expires(tmp_path: Path) -> None:
    planner = engine(tmp_path)
    feedback(planner, "fp", "false_positive", expires=(MONDAY_NOON + timedelta(days=7)).isoformat())
    silenced = planner.plan_callback(callback(planner, exposure_alert(), "cb-1"), MONDAY_NOON)
    assert {step.decision for step in silenced} == {Decision.SKIPPED}
    assert silenced[0].reason.startswith("suppressed: false_positive by kim until 2026-12-14")
    after = planner.plan_callback(callback(planner, exposure_alert(date="later"), "cb-2"),
                                  MONDAY_NOON + timedelta(days=8))
    assert {step.decision for step in after} == {Decision.QUEUED}


def test_a_soar_request_queues_its_one_action_unless_the_finding_is_suppressed(tmp_path: Path) -> None:
    planner = engine(tmp_path)
    request = {"action": "rescan", "fingerprint": FINGERPRINT, "event": None, "params": {"check": "certificate"}}
    planner.queue.enqueue("soar-1", "playbooks.plan", {"source": "soar", "kind": "soar", "payload": request})
    [job] = [job for job in planner.queue.jobs() if job.idempotency_key == "soar-1"]
    [step] = planner.plan_callback(job, MONDAY_NOON)
    assert step.decision is Decision.QUEUED and [j.action for j in planner.queue.jobs()].count("rescan") == 1
    feedback(planner, "risk", "accepted_risk")
    planner.queue.enqueue("soar-2", "playbooks.plan", {"source": "soar", "kind": "soar", "payload": request})
    [again] = [job for job in planner.queue.jobs() if job.idempotency_key == "soar-2"]
    [skipped] = planner.plan_callback(again, MONDAY_NOON)
    assert skipped.decision is Decision.SKIPPED and "accepted_risk" in skipped.reason


def test_the_suppress_action_records_a_verdict_that_expires(tmp_path: Path) -> None:
    planner = engine(tmp_path)
    planner.queue.enqueue("s", "suppress", {})
    step = StepContext(FINGERPRINT, "shop.example.test", None, JobEffects(planner.queue, 1),
                       TicketLedger(tmp_path / "tickets.sqlite"), verdicts=planner.verdicts)
    result = SuppressAction(SuppressSettings()).execute({"verdict": "accepted_risk", "for": "2d"}, step)
    now = datetime.now(UTC)
    assert planner.verdicts.suppression(FINGERPRINT, now) is not None
    assert planner.verdicts.suppression(FINGERPRINT, now + timedelta(days=3)) is None
    assert result["verdict"] == "accepted_risk"


def test_advisories_trigger_no_playbook_unless_asked_for(tmp_path: Path) -> None:
    notify = {"name": "any-finding", "trigger": {"rules": ["*"]}, "steps": [{"action": "notify.slack"}]}
    advisory = {"rule.id": "dns.caa_missing", "postern.severity": "info", "postern.status": "fail",
                "postern.fingerprint": FINGERPRINT, "postern.asset.id": "shop.example.test"}
    quiet = Playbook.model_validate(notify)
    asked = Playbook.model_validate({**notify, "trigger": {"rules": ["*"], "advisories": True}})
    assert not quiet.matches(advisory, "kibana", "elastic") and asked.matches(advisory, "kibana", "elastic")
    assert quiet.matches({**advisory, "postern.severity": "low"}, "kibana", "elastic")
