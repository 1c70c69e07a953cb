"""The finding ledger: each finding's episode (first_seen) and whether it is open, and the transitions between scans.

Rules that keep a false "resolved" out of the SIEM:
- a finding resolves on a passing verdict for it, or when a complete run of its check on the asset no longer
  reports it (a closed port, a removed path);
- a check that errored anywhere on the asset resolves nothing by absence: visibility was lost, the state stays;
- a check that did not run (``--checks``, a rescan of another check) resolves nothing;
- a scan is assessed per asset from its whole report, and the ledger changes only after the report's events are
  durable, so a crash mid-scan changes nothing and the re-run reports the same transitions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.core.lifecycle import Change, Episode, LatestVerdict, Transition
from connector.core.model import Asset, AssetReport, Finding, Severity, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS findings (
    fingerprint TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS finding_episodes (
    fingerprint TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    resolved_at TEXT,
    PRIMARY KEY (fingerprint, opened_at)
);
"""
# columns added to the first release's table; old rows that were failing count as open since their first_seen
_COLUMNS = {"asset_id": "TEXT", "check_name": "TEXT", "is_open": "INTEGER NOT NULL DEFAULT 0", "opened_at": "TEXT",
            "resolved_at": "TEXT", "failing": "TEXT", "rule_id": "TEXT", "severity": "TEXT", "subject": "TEXT",
            "facts": "TEXT", "target": "TEXT"}
_MIGRATE_OPEN = "UPDATE findings SET is_open = 1, opened_at = first_seen WHERE status = 'fail' AND opened_at IS NULL"
# open episodes from before the ledger kept their history: the KPIs count them from when they opened
_MIGRATE_EPISODES = ("INSERT OR IGNORE INTO finding_episodes (fingerprint, opened_at, asset_id, rule_id, severity) "
                     "SELECT fingerprint, opened_at, asset_id, json_extract(failing, '$.rule_id'), "
                     "json_extract(failing, '$.severity') FROM findings WHERE is_open = 1 AND failing IS NOT NULL "
                     "AND opened_at IS NOT NULL AND asset_id IS NOT NULL")
# evidence the KPIs read from the latest verdict of each rule (connector/inventory/kpi.py), kept small
KPI_FACTS = ("days_left", "not_after")  # not_after: the report's expiry timeline, and days left on a past day

# evidence that moves on every scan without the finding changing (a certificate's days left): not a "change"
VOLATILE_EVIDENCE = frozenset({"days_left"})


@dataclass
class _Row:
    fingerprint: str
    asset_id: str
    check_name: str
    status: str
    first_seen: str
    last_seen: str
    is_open: bool
    opened_at: str | None
    resolved_at: str | None
    failing: str | None  # the open episode's last failing verdict, as Finding JSON
    rule_id: str | None = None  # the latest verdict's rule, severity, subject and KPI facts (None: older rows)
    severity: str | None = None
    subject: str | None = None
    facts: str | None = None
    target: str | None = None  # what was probed: the page, the TLS endpoint

    @classmethod
    def read(cls, values: Sequence[Any]) -> _Row:
        """A row as selected with ``_FIELDS``."""
        return cls(values[0], values[1], values[2], values[3], values[4], values[5], bool(values[6]), values[7],
                   values[8], values[9], values[10], values[11], values[12], values[13], values[14])

    def values(self) -> tuple[Any, ...]:
        """The row in ``_FIELDS`` order."""
        return (self.fingerprint, self.asset_id, self.check_name, self.status, self.first_seen, self.last_seen,
                int(self.is_open), self.opened_at, self.resolved_at, self.failing, self.rule_id, self.severity,
                self.subject, self.facts, self.target)

    def failing_finding(self) -> Finding | None:
        return Finding.model_validate_json(self.failing) if self.failing else None


@dataclass
class Assessment:
    """One asset's scan as the ledger sees it; ``apply`` records it once its events are durable."""

    findings: list[Finding]
    transitions: list[Transition]
    rows: list[_Row] = field(default_factory=list, repr=False)


class FindingLedger:
    """Kept in the state database the runtime opens (one writer, WAL: safe to read while it runs)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(findings)")}
        for name, kind in _COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE findings ADD COLUMN {name} {kind}")
        self._db.execute(_MIGRATE_OPEN)
        self._db.execute(_MIGRATE_EPISODES)
        self._db.execute("CREATE INDEX IF NOT EXISTS findings_open ON findings (asset_id, is_open)")

    def assess(self, report: AssetReport) -> Assessment:
        """The report's findings with their episodes, and its transitions; changes nothing until ``apply``."""
        known = self._rows(report.asset.id, [finding.fingerprint for finding in report.findings])
        findings, transitions, rows = [], [], []
        for finding in report.findings:
            row = known.get(finding.fingerprint)
            annotated, row, transition = _step(finding, row)
            findings.append(annotated)
            rows.append(row)
            if transition is not None:
                transitions.append(transition)
        for row in self._vanished(report):
            rows.append(row)
            transitions.append(_resolve_vanished(row, report))
        return Assessment(findings, transitions, rows)

    def apply(self, assessment: Assessment) -> None:
        """Record the assessment, and each opened or resolved episode in the history the KPIs read."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR REPLACE INTO findings ({_FIELDS}) VALUES ({_MARKS})",
                [row.values() for row in assessment.rows])
            for transition in assessment.transitions:
                finding = transition.finding
                if transition.change in (Change.OPENED, Change.REOPENED):
                    self._db.execute(
                        "INSERT OR IGNORE INTO finding_episodes (fingerprint, opened_at, asset_id, rule_id, severity) "
                        "VALUES (?, ?, ?, ?, ?)", (finding.fingerprint, finding.observed_at.isoformat(),
                                                   finding.asset.id, finding.rule_id, finding.severity.value))
                elif transition.change is Change.CHANGED:
                    self._db.execute("UPDATE finding_episodes SET severity = ? WHERE fingerprint = ? AND "
                                     "resolved_at IS NULL", (finding.severity.value, finding.fingerprint))
                else:
                    self._db.execute("UPDATE finding_episodes SET resolved_at = ? WHERE fingerprint = ? AND "
                                     "resolved_at IS NULL", (finding.observed_at.isoformat(), finding.fingerprint))

    def episodes(self) -> list[Episode]:
        """Every finding episode, open or resolved, oldest first."""
        return [Episode(fingerprint, asset_id, rule_id, Severity(severity), datetime.fromisoformat(opened),
                        datetime.fromisoformat(resolved) if resolved else None)
                for fingerprint, asset_id, rule_id, severity, opened, resolved in self._db.execute(
                    "SELECT fingerprint, asset_id, rule_id, severity, opened_at, resolved_at FROM finding_episodes "
                    "WHERE rule_id IS NOT NULL ORDER BY opened_at")]

    def verdicts(self) -> list[LatestVerdict]:
        """The latest verdict of every (asset, rule, subject) the ledger knows, for the posture KPIs."""
        rows = self._db.execute("SELECT fingerprint, asset_id, rule_id, check_name, target, status, severity, subject, "
                                "facts, is_open FROM findings WHERE rule_id IS NOT NULL AND asset_id IS NOT NULL")
        return [LatestVerdict(fingerprint, asset_id, rule_id, check, target or "", Status(status), Severity(severity),
                              subject, json.loads(facts) if facts else {}, bool(is_open))
                for fingerprint, asset_id, rule_id, check, target, status, severity, subject, facts, is_open in rows]

    def open_findings(self, asset_id: str | None = None) -> list[Finding]:
        """The last failing verdict of each open finding (of one asset, or all)."""
        query = "SELECT failing FROM findings WHERE is_open = 1 AND failing IS NOT NULL"
        rows = self._db.execute(query + " AND asset_id = ?", (asset_id,)) if asset_id else self._db.execute(query)
        return [Finding.model_validate_json(row[0]) for row in rows]

    def rename(self, old_id: str, asset: Asset) -> None:
        """The open findings of ``old_id`` now belong to ``asset`` (renamed): same episodes under the new
        fingerprints, so its first scan opens nothing. Closed ones start afresh. Runs in the caller's transaction."""
        rows = [_Row.read(values) for values in self._db.execute(
            f"SELECT {_FIELDS} FROM findings WHERE asset_id = ?", (old_id,))]
        self._db.execute("DELETE FROM findings WHERE asset_id = ?", (old_id,))
        for row in rows:
            failing = row.failing_finding()
            if not row.is_open or failing is None:
                continue
            moved = failing.model_copy(update={"asset": asset})
            row.fingerprint, row.asset_id, row.failing = moved.fingerprint, asset.id, moved.model_dump_json()
            self._db.execute(f"INSERT OR REPLACE INTO findings ({_FIELDS}) VALUES ({_MARKS})", row.values())
            self._db.execute("UPDATE finding_episodes SET fingerprint = ?, asset_id = ? WHERE fingerprint = ?",
                             (moved.fingerprint, asset.id, failing.fingerprint))

    def open_counts(self) -> dict[str, int]:
        """Open findings per asset id."""
        rows = self._db.execute("SELECT asset_id, COUNT(*) FROM findings WHERE is_open = 1 AND asset_id IS NOT NULL "
                                "GROUP BY asset_id")
        return {asset_id: count for asset_id, count in rows}

    def _rows(self, asset_id: str, fingerprints: Sequence[str]) -> dict[str, _Row]:
        rows: dict[str, _Row] = {}
        wanted = list(dict.fromkeys(fingerprints))
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for values in self._db.execute(f"SELECT {_FIELDS} FROM findings WHERE fingerprint IN ({marks})", chunk):
                row = _Row.read(values)
                row.asset_id = row.asset_id or asset_id  # a row from before the ledger kept assets
                rows[row.fingerprint] = row
        return rows

    def _vanished(self, report: AssetReport) -> list[_Row]:
        """Open findings of checks that ran completely on the asset and no longer report them."""
        ran = {finding.check for finding in report.findings}
        errored = {finding.check for finding in report.findings if finding.status is Status.ERROR}
        complete = ran - errored
        reported = {finding.fingerprint for finding in report.findings}
        vanished = []
        for values in self._db.execute(f"SELECT {_FIELDS} FROM findings WHERE asset_id = ? AND is_open = 1 "
                                       "AND failing IS NOT NULL",
                                       (report.asset.id,)):
            row = _Row.read(values)
            if row.check_name in complete and row.fingerprint not in reported:
                vanished.append(row)
        return vanished


_FIELDS = ("fingerprint, asset_id, check_name, status, first_seen, last_seen, is_open, opened_at, resolved_at, "
           "failing, rule_id, severity, subject, facts, target")
_MARKS = ", ".join("?" * len(_FIELDS.split(",")))


def _step(finding: Finding, row: _Row | None) -> tuple[Finding, _Row, Transition | None]:
    """One verdict against the finding's record: its episode, its new record and the transition it makes."""
    stamp = finding.observed_at.isoformat()
    same_status = row is not None and row.status == finding.status.value
    first_seen = row.first_seen if row is not None and same_status else stamp
    annotated = finding if first_seen == stamp else finding.model_copy(
        update={"first_seen": datetime.fromisoformat(first_seen)})
    facts = {key: finding.evidence[key] for key in KPI_FACTS if key in finding.evidence}
    updated = _Row(finding.fingerprint, finding.asset.id, finding.check, finding.status.value, first_seen, stamp,
                   row.is_open if row else False, row.opened_at if row else None, row.resolved_at if row else None,
                   row.failing if row else None, finding.rule_id, finding.severity.value, finding.subject,
                   json.dumps(facts) if facts else None, finding.target.key)
    transition: Transition | None = None
    before = row.failing_finding() if row is not None and row.is_open else None
    if finding.status is Status.FAIL:
        failing = annotated.model_dump_json()
        if row is None or not row.is_open:
            change = Change.REOPENED if row is not None and row.opened_at else Change.OPENED
            updated.is_open, updated.opened_at, updated.resolved_at = True, stamp, None
            transition = Transition(change, annotated, None, finding.observed_at,
                                    "failing again" if change is Change.REOPENED else "failing")
        elif before is not None and _changed(before, finding):
            transition = Transition(Change.CHANGED, annotated, before, _opened(row, finding),
                                    _what_changed(before, finding))
        updated.failing = failing
    elif finding.status is Status.PASS and row is not None and row.is_open:
        updated.is_open, updated.resolved_at = False, stamp
        transition = Transition(Change.RESOLVED, annotated, before, _opened(row, finding), "passing")
    return annotated, updated, transition


def _resolve_vanished(row: _Row, report: AssetReport) -> Transition:
    before = Finding.model_validate_json(row.failing or "")
    latest = max(report.findings, key=lambda finding: finding.observed_at)
    resolved = before.model_copy(update={
        "status": Status.PASS, "severity": Severity.INFO,  # as the engine gives every passing verdict
        "message": f"no longer reported by a complete run of the {row.check_name} check",
        "scan_id": latest.scan_id, "observed_at": latest.observed_at, "first_seen": latest.observed_at,
        "last_seen": latest.observed_at, "asset": report.asset})
    stamp = latest.observed_at.isoformat()
    row.status, row.first_seen, row.last_seen = Status.PASS.value, stamp, stamp
    row.rule_id, row.severity, row.subject = before.rule_id, Severity.INFO.value, before.subject
    row.is_open, row.resolved_at = False, stamp
    return Transition(Change.RESOLVED, resolved, before, _opened(row, resolved), "no longer reported")


def _opened(row: _Row, finding: Finding) -> datetime:
    return datetime.fromisoformat(row.opened_at) if row.opened_at else finding.first_seen


def _stable(evidence: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in evidence.items() if key not in VOLATILE_EVIDENCE}


def _changed(before: Finding, after: Finding) -> bool:
    return before.severity is not after.severity or _stable(before.evidence) != _stable(after.evidence)


def _what_changed(before: Finding, after: Finding) -> str:
    if before.severity is not after.severity:
        return f"severity {before.severity.value} -> {after.severity.value}"
    return "evidence changed"
