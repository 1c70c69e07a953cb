"""The posture report's figures, as pure functions over the history the KPIs read: what `connector report` renders
for auditors and managers (connector/report/ draws it as HTML, JSON or CSV; the same model feeds all three).

Every day of the window is computed by the KPI engine itself, over the history as it stood at the end of that day
(``kpi.as_of``), so a day's figures are those `connector kpi` would have printed then. "Opened" and "resolved" lists
leave out info findings (advisories, as the owners' digests do); the risk terms are the KPI's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from math import ceil
from typing import Any

from connector.core.catalog import Catalog
from connector.core.lifecycle import Episode
from connector.core.model import Severity, Status, is_advisory
from connector.inventory.kpi import (
    FRAMEWORKS,
    History,
    Kpis,
    KpiSettings,
    Scope,
    as_of,
    compute,
    in_scope,
    measurement,
    risk_by_asset,
)

DAY = timedelta(days=1)
SEVERITIES = ("critical", "high", "medium", "low", "info")  # most severe first, as the report lists them
FRAMEWORK_NAMES = {"pci_dss_4_0": "PCI DSS 4.0", "soc2": "SOC 2", "iso27001_2022": "ISO/IEC 27001:2022",
                   "hipaa": "HIPAA", "gdpr": "GDPR", "cis_v8": "CIS Controls v8"}
TOP_ASSETS = 10


@dataclass
class DayPoint:
    """The KPIs at the end of one day of the window (``values``: the metric event's flat fields), and what opened
    and was resolved during it."""

    day: str
    at: datetime
    values: dict[str, float | int | str | None]
    opened: int
    resolved: int


@dataclass
class FailingControl:
    control: str
    rules: list[str]  # failing rule ids
    assets: list[str]


@dataclass
class FrameworkCompliance:
    framework: str
    name: str
    score: float | None
    passing: int
    evaluated: int
    failing: list[FailingControl]
    not_evaluated: list[str]  # controls whose every rule errored: not passed, not failed


@dataclass
class Certificate:
    asset: str
    owner: str | None
    target: str
    not_after: str | None
    days_left: int
    state: str  # expired, expiring (cert.expiring_soon fails), valid


@dataclass
class AssetRisk:
    asset: str
    owner: str | None
    criticality: str
    risk: float
    open_findings: int


@dataclass
class EpisodeLine:
    fingerprint: str
    asset: str
    owner: str | None
    rule: str
    title: str
    severity: str
    opened_at: str
    resolved_at: str | None


@dataclass
class OpenFinding:
    fingerprint: str
    asset: str
    owner: str | None
    target: str
    rule: str
    title: str
    severity: str
    opened_at: str | None
    days_open: int | None
    remediation: str
    references: list[str]


@dataclass
class PostureReport:
    generated_at: datetime
    since: datetime
    window_days: int
    scopes: list[str]
    catalog: str
    summary: dict[str, Any]
    kpis: dict[str, Any]  # the KPIs now (Kpis.as_dict)
    days: list[DayPoint]
    compliance: list[FrameworkCompliance]
    certificates: list[Certificate]
    top_assets: list[AssetRisk]
    opened: list[EpisodeLine]
    resolved: list[EpisodeLine]
    open_findings: list[OpenFinding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the whole model."""
        data = asdict(self)
        data["generated_at"] = self.generated_at.isoformat()
        data["since"] = self.since.isoformat()
        for day in data["days"]:
            day["at"] = day["at"].isoformat()
        return data


def restrict(history: History, scopes: Sequence[Scope]) -> History:
    """The history of the assets in any of ``scopes``."""
    records = [record for record in history.records if any(in_scope(record, scope) for scope in scopes)]
    return History(records, history.verdicts, history.episodes, history.detections, history.analyst)


def build(history: History, catalog: Catalog, settings: KpiSettings, now: datetime, *, window: timedelta,
          scopes: Sequence[Scope] = (Scope("overall", "all"),)) -> PostureReport:
    """The report of the assets in ``scopes`` over the ``window`` that ends at ``now``. ``history.records`` should
    include removed assets, so that the days before a removal count them."""
    mine = restrict(history, scopes)
    since = now - window
    overall = Scope("overall", "all")
    count = max(1, ceil(window / DAY))
    moments = [now - k * DAY for k in range(count - 1, -1, -1)]
    days = [_day(mine, catalog, settings, moment, overall) for moment in moments]
    today = as_of(mine, now)
    kpis = compute(overall, today, catalog, settings, now)
    present = {record.asset.id: record.asset for record in today.records}
    titles = {rule.id: rule.title for rule in catalog}

    def line(episode: Episode) -> EpisodeLine:
        asset = present.get(episode.asset_id)
        return EpisodeLine(episode.fingerprint, episode.asset_id, asset.owner if asset else None, episode.rule_id,
                           titles.get(episode.rule_id, episode.rule_id), episode.severity.value,
                           episode.opened_at.isoformat(),
                           episode.resolved_at.isoformat() if episode.resolved_at else None)

    # episodes of assets in scope, including those removed since (their findings opened and closed in the window)
    known = {record.asset.id for record in mine.records}
    alerts = [episode for episode in mine.episodes
              if episode.asset_id in known and episode.severity is not Severity.INFO and episode.opened_at <= now]
    opened = sorted((e for e in alerts if e.opened_at > since), key=lambda e: e.opened_at, reverse=True)
    resolved = sorted((e for e in alerts if e.resolved_at is not None and since < e.resolved_at <= now),
                      key=lambda e: e.resolved_at or now, reverse=True)
    certificates = _certificates(today)
    report = PostureReport(
        generated_at=now, since=since, window_days=count, scopes=[str(scope) for scope in scopes],
        catalog=f"{catalog.name} {catalog.version}", summary={}, kpis=kpis.as_dict(), days=days,
        compliance=_compliance(today, catalog, kpis), certificates=certificates,
        top_assets=_top_assets(today, catalog, now), opened=[line(e) for e in opened],
        resolved=[line(e) for e in resolved], open_findings=_open_findings(today, catalog, now))
    report.summary = _summary(report, kpis)
    return report


def _day(history: History, catalog: Catalog, settings: KpiSettings, moment: datetime, scope: Scope) -> DayPoint:
    then = as_of(history, moment)
    kpis = compute(scope, then, catalog, settings, moment)
    start = moment - DAY
    alerts = [e for e in then.episodes if e.severity is not Severity.INFO
              and e.asset_id in {record.asset.id for record in then.records}]
    return DayPoint(moment.date().isoformat(), moment, measurement(kpis).values,
                    sum(1 for e in alerts if start < e.opened_at <= moment),
                    sum(1 for e in alerts if e.resolved_at is not None and start < e.resolved_at <= moment))


def _failing_open(status: Status, severity: Severity, is_open: bool) -> bool:
    return status is Status.FAIL and is_open and not is_advisory(status, severity)


def _compliance(history: History, catalog: Catalog, kpis: Kpis) -> list[FrameworkCompliance]:
    present = {record.asset.id for record in history.records}
    failing_by_rule: dict[str, set[str]] = defaultdict(set)
    for verdict in history.verdicts:
        if verdict.asset_id in present and _failing_open(verdict.status, verdict.severity, verdict.is_open):
            failing_by_rule[verdict.rule_id].add(verdict.asset_id)
    result = []
    for framework in FRAMEWORKS:
        controls: dict[str, tuple[set[str], set[str]]] = {}
        for rule in catalog:
            for control in getattr(rule.compliance, framework):
                if rule.id in failing_by_rule:
                    rules, assets = controls.setdefault(control, (set(), set()))
                    rules.add(rule.id)
                    assets |= failing_by_rule[rule.id]
        score = kpis.compliance[framework]
        result.append(FrameworkCompliance(
            framework, FRAMEWORK_NAMES.get(framework, framework), score.score, score.passing, score.evaluated,
            [FailingControl(control, sorted(rules), sorted(assets))
             for control, (rules, assets) in sorted(controls.items())],
            list(score.not_evaluated)))
    return result


def _certificates(history: History) -> list[Certificate]:
    """One line per TLS endpoint whose certificate was read: days left, and whether it expired or expires soon."""
    owners = {record.asset.id: record.asset.owner for record in history.records}
    endpoints: dict[tuple[str, str], dict[str, Any]] = {}
    expiring: set[tuple[str, str]] = set()
    for verdict in history.verdicts:
        if verdict.check != "certificate" or verdict.asset_id not in owners:
            continue
        key = (verdict.asset_id, verdict.target)
        if "days_left" in verdict.facts:
            endpoints.setdefault(key, verdict.facts)
        if verdict.rule_id == "cert.expiring_soon" and verdict.status is Status.FAIL:
            expiring.add(key)
    lines = []
    for (asset, target), facts in endpoints.items():
        days_left = int(facts["days_left"])
        state = "expired" if days_left < 0 else "expiring" if (asset, target) in expiring else "valid"
        not_after = facts.get("not_after")
        lines.append(Certificate(asset, owners[asset], target, str(not_after) if not_after else None, days_left,
                                 state))
    return sorted(lines, key=lambda line: (line.days_left, line.asset, line.target))


def _top_assets(history: History, catalog: Catalog, now: datetime) -> list[AssetRisk]:
    records = {record.asset.id: record.asset for record in history.records}
    opened: dict[str, int] = defaultdict(int)
    for verdict in history.verdicts:
        if verdict.asset_id in records and _failing_open(verdict.status, verdict.severity, verdict.is_open):
            opened[verdict.asset_id] += 1
    return [AssetRisk(asset, records[asset].owner, records[asset].criticality.value, risk, opened[asset])
            for asset, risk in risk_by_asset(history, catalog, now).items()][:TOP_ASSETS]


def _open_findings(history: History, catalog: Catalog, now: datetime) -> list[OpenFinding]:
    owners = {record.asset.id: record.asset.owner for record in history.records}
    opened_at = {e.fingerprint: e.opened_at for e in history.episodes if e.resolved_at is None}
    lines = []
    for verdict in history.verdicts:
        if verdict.asset_id not in owners or not _failing_open(verdict.status, verdict.severity, verdict.is_open):
            continue
        rule = catalog.rules.get(verdict.rule_id)
        since = opened_at.get(verdict.fingerprint)
        lines.append(OpenFinding(
            verdict.fingerprint, verdict.asset_id, owners[verdict.asset_id], verdict.target, verdict.rule_id,
            rule.title if rule else verdict.rule_id, verdict.severity.value,
            since.isoformat() if since else None, (now - since).days if since else None,
            rule.remediation.strip() if rule else "(not in the rule catalog)",
            [str(reference) for reference in rule.references] if rule else []))
    rank = {name: index for index, name in enumerate(SEVERITIES)}
    return sorted(lines, key=lambda line: (rank[line.severity], line.asset, line.rule, line.target))


def _summary(report: PostureReport, kpis: Kpis) -> dict[str, Any]:
    first, last = report.days[0].values, report.days[-1].values
    open_now = sum(kpis.open_by_severity[name] for name in SEVERITIES if name != "info")
    open_then = sum(int(first.get(f"open.{name}") or 0) for name in SEVERITIES if name != "info")
    return {
        "assets": kpis.assets,
        "open_findings": open_now,
        "open_by_severity": dict(kpis.open_by_severity),
        "open_change": open_now - open_then,
        "opened": len(report.opened),
        "resolved": len(report.resolved),
        "risk_score": kpis.risk_score,
        "risk_change": round(kpis.risk_score - float(first.get("risk_score") or 0), 1),
        "remediation_pct": kpis.remediation.percent,
        "next_expiry_days": kpis.next_expiry_days,
        "certificates_expired": sum(1 for c in report.certificates if c.state == "expired"),
        "certificates_expiring": sum(1 for c in report.certificates if c.state == "expiring"),
        "compliance": {c.framework: c.score for c in report.compliance},
        "valid_certificates_pct": last.get("valid_certificates_pct"),
    }
