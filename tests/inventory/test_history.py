"""First-seen episodes as a SOC reads them: a finding that stays failing keeps the date it started failing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.core.model import Asset, Finding, Severity, Status
from connector.inventory.history import FindingHistory

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def seen(status: Status, at: datetime, scan_id: str) -> Finding:
    return Finding(rule_id="cert.expiring", check="certificate", status=status, severity=Severity.MEDIUM,
                   message="expires soon", asset=Asset(host="shop.test"), port=443, scheme="https",
                   scan_id=scan_id, observed_at=at, first_seen=at, last_seen=at)


def test_a_failing_finding_keeps_its_first_seen_until_its_status_changes(tmp_path: Path) -> None:
    history = FindingHistory(sqlite3.connect(tmp_path / "state.db", isolation_level=None))
    days = [MONDAY + timedelta(days=n) for n in range(4)]
    statuses = [Status.FAIL, Status.FAIL, Status.PASS, Status.FAIL]
    first_seen = [history.annotate([seen(status, day, f"scan-{n}")])[0].first_seen
                  for n, (status, day) in enumerate(zip(statuses, days, strict=True))]
    assert first_seen == [days[0], days[0], days[2], days[3]]  # fixed, then each status change starts over


def test_episodes_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    FindingHistory(sqlite3.connect(path, isolation_level=None)).annotate([seen(Status.FAIL, MONDAY, "scan-1")])
    reopened = FindingHistory(sqlite3.connect(path, isolation_level=None))
    later = reopened.annotate([seen(Status.FAIL, MONDAY + timedelta(days=1), "scan-2")])[0]
    assert later.first_seen == MONDAY and later.observed_at == MONDAY + timedelta(days=1)
