"""The finding ledger's rules as a SOC reads them: one event per change, never a spurious "resolved".

These drive the ledger with verdicts as the engine makes them; tests/inventory/test_lifecycle_events.py scans
real servers through the CLI.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.core.lifecycle import Change
from connector.core.model import Asset, AssetReport, Finding, Severity, Status
from connector.inventory.lifecycle import FindingLedger

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SHOP = Asset(host="shop.test")


def verdict(rule: str, status: Status, day: int, *, check: str = "headers", severity: Severity = Severity.MEDIUM,
            subject: str | None = None, evidence: dict[str, Any] | None = None) -> Finding:
    at = MONDAY + timedelta(days=day)
    return Finding(rule_id=rule, check=check, status=status,
                   severity=severity if status is Status.FAIL else Severity.INFO, message=f"{rule} {status}",
                   asset=SHOP, port=443, scheme="https", subject=subject, evidence=evidence or {},
                   scan_id=f"scan-{day}", observed_at=at, first_seen=at, last_seen=at)


def ledger(path: Path) -> FindingLedger:
    return FindingLedger(sqlite3.connect(path, isolation_level=None))


def scan(book: FindingLedger, *findings: Finding) -> list[tuple[Change, str]]:
    assessment = book.assess(AssetReport(SHOP, list(findings)))
    book.apply(assessment)
    return [(transition.change, transition.finding.rule_id) for transition in assessment.transitions]


def test_a_finding_opens_once_resolves_once_and_reopens(tmp_path: Path) -> None:
    book = ledger(tmp_path / "state.db")
    fail, ok = Status.FAIL, Status.PASS
    days = [scan(book, verdict("headers.csp", status, day)) for day, status in enumerate([fail, fail, ok, ok, fail])]
    assert days == [[(Change.OPENED, "headers.csp")], [], [(Change.RESOLVED, "headers.csp")], [],
                    [(Change.REOPENED, "headers.csp")]]


def test_a_resolved_event_says_how_long_it_was_open_and_what_it_was(tmp_path: Path) -> None:
    book = ledger(tmp_path / "state.db")
    scan(book, verdict("headers.csp", Status.FAIL, 0, evidence={"missing": ["csp"]}))
    scan(book, verdict("headers.csp", Status.FAIL, 1, evidence={"missing": ["csp"]}))
    assessment = book.assess(AssetReport(SHOP, [verdict("headers.csp", Status.PASS, 3)]))
    (resolved,) = assessment.transitions
    assert resolved.open_seconds == 3 * 86400
    assert resolved.before is not None and resolved.before.evidence == {"missing": ["csp"]}
    assert resolved.before.scan_id == "scan-1" and resolved.finding.scan_id == "scan-3"


def test_severity_or_evidence_changes_are_one_changed_event_but_days_left_is_not(tmp_path: Path) -> None:
    book = ledger(tmp_path / "state.db")

    def cert(day: int, severity: Severity, **evidence: Any) -> Finding:
        return verdict("cert.expiring_soon", Status.FAIL, day, check="certificate", severity=severity,
                       evidence=evidence)

    scan(book, cert(0, Severity.MEDIUM, days_left=20))
    ticking = scan(book, cert(1, Severity.MEDIUM, days_left=19))
    escalated = scan(book, cert(6, Severity.HIGH, days_left=14))
    new_evidence = scan(book, cert(7, Severity.HIGH, days_left=13, issuer="other"))
    assert ticking == []
    assert escalated == [(Change.CHANGED, "cert.expiring_soon")]
    assert new_evidence == [(Change.CHANGED, "cert.expiring_soon")]


def test_an_errored_check_keeps_its_findings_open(tmp_path: Path) -> None:
    book = ledger(tmp_path / "state.db")
    scan(book, verdict("ports.unexpected_open", Status.FAIL, 0, check="ports", subject="8080"))
    lost = scan(book, verdict("scan.error", Status.ERROR, 1, check="ports", subject="ports"))
    assert lost == []
    assert [finding.subject for finding in book.open_findings("shop.test")] == ["8080"]


def test_a_finding_no_longer_reported_by_a_complete_run_of_its_check_resolves(tmp_path: Path) -> None:
    book = ledger(tmp_path / "state.db")
    scan(book, verdict("ports.unexpected_open", Status.FAIL, 0, check="ports", subject="8080"),
         verdict("headers.csp", Status.FAIL, 0))
    closed = scan(book, verdict("ports.unexpected_open", Status.PASS, 1, check="ports"))
    assert closed == [(Change.RESOLVED, "ports.unexpected_open")]  # headers did not run: headers.csp stays open
    assert [finding.rule_id for finding in book.open_findings()] == ["headers.csp"]


def test_an_unapplied_assessment_changes_nothing_and_is_assessed_again_the_same(tmp_path: Path) -> None:
    """The collector applies an assessment only once the spool holds its events; a crash before that re-runs."""
    book = ledger(tmp_path / "state.db")
    report = AssetReport(SHOP, [verdict("headers.csp", Status.FAIL, 0)])
    crashed = book.assess(report)
    again = ledger(tmp_path / "state.db").assess(report)
    assert [t.event_id for t in crashed.transitions] == [t.event_id for t in again.transitions]
    assert len(again.transitions) == 1


def test_first_seen_is_the_start_of_the_status_episode_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    statuses = [Status.FAIL, Status.FAIL, Status.PASS, Status.FAIL]
    first_seen = []
    for day, status in enumerate(statuses):
        book = ledger(path)  # a new process each day
        assessment = book.assess(AssetReport(SHOP, [verdict("headers.csp", status, day)]))
        book.apply(assessment)
        first_seen.append(assessment.findings[0].first_seen)
    days = [MONDAY + timedelta(days=n) for n in range(4)]
    assert first_seen == [days[0], days[0], days[2], days[3]]


def test_a_state_store_of_the_first_release_keeps_its_open_findings(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript("CREATE TABLE findings (fingerprint TEXT PRIMARY KEY, status TEXT NOT NULL, "
                      "first_seen TEXT NOT NULL, last_seen TEXT NOT NULL);")
    failing = verdict("headers.csp", Status.FAIL, 0)
    old.execute("INSERT INTO findings VALUES (?, 'fail', ?, ?)",
                (failing.fingerprint, MONDAY.isoformat(), MONDAY.isoformat()))
    old.close()
    book = ledger(path)
    assert scan(book, verdict("headers.csp", Status.FAIL, 1)) == []  # still the same open episode
    assert scan(book, verdict("headers.csp", Status.PASS, 2)) == [(Change.RESOLVED, "headers.csp")]
