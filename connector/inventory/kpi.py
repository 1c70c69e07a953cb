"""The monitoring program's KPIs, as pure functions over what the state store keeps.

Inputs: the inventory (AssetRecord), the latest verdict of every (asset, rule, subject) (LatestVerdict), the
finding episodes (Episode), the drift detections (Detection), the analysts' verdicts and the rule catalog. Nothing
here reads a database or the clock, so every figure can be recomputed by hand from a fixture history.

Definitions (also in the README, "KPIs"):
- posture shares count *targets* (an asset's page or TLS endpoint) that a check evaluated (pass or fail):
  HTTPS routes served correctly (check https), pages meeting the header baseline (check headers), valid
  certificates (check certificate, none of INVALID_CERTIFICATE failing), cipher strength per TLS endpoint;
- the oldest TLS protocol still accepted, from the failing tls.protocol.* rules;
- MTTD is the median (and p95) of each drift's detection bound: from the last observation that was still good to
  the first that was not, an upper bound of the time from the change to its detection;
- false-positive rate: episodes opened in the window whose latest analyst verdict is false_positive, over the
  episodes opened; detection accuracy: reviewed episodes that were not false positives, over those reviewed;
- compliance score per framework: controls with no open failing finding over controls evaluated (a rule of the
  control passed or failed on an asset in scope); a control whose rules only errored is "not evaluated";
- risk score: the sum over open failing findings of severity weight x asset criticality weight x age factor x
  exploitability factor (RISK_* below); the same per asset, so scopes of different sizes compare;
- remediation rate: episodes opened in the window and decided (resolved, or open past their SLA) that were
  resolved within the SLA of their severity; each reopening is an episode with its own clock.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connector.core.catalog import Catalog, Compliance
from connector.core.lifecycle import AssetRecord, Detection, Episode, LatestVerdict, Measurement
from connector.core.model import Criticality, Severity, Status, is_advisory
from connector.core.units import Duration

FRAMEWORKS = tuple(Compliance.model_fields)  # pci_dss_4_0, soc2, iso27001_2022, hipaa, gdpr, cis_v8
SCOPE_KINDS = ("overall", "owner", "criticality", "tag")
# oldest first: the first failing one is the oldest protocol still accepted
LEGACY_PROTOCOLS = (("tls.protocol.sslv3", "SSLv3"), ("tls.protocol.tls10", "TLSv1.0"),
                    ("tls.protocol.tls11", "TLSv1.1"))
WEAK_CIPHERS = frozenset({"tls.cipher.null", "tls.cipher.anonymous", "tls.cipher.export", "tls.cipher.rc4",
                          "tls.cipher.des"})
ACCEPTABLE_CIPHERS = frozenset({"tls.cipher.static_kx", "tls.cipher.cbc", "tls.dh_weak"})  # not strong
INVALID_CERTIFICATE = frozenset({"cert.expired", "cert.not_yet_valid", "cert.untrusted", "cert.chain_incomplete",
                                 "cert.hostname_mismatch", "cert.self_signed"})
RISK_SEVERITY = {Severity.CRITICAL: 10.0, Severity.HIGH: 5.0, Severity.MEDIUM: 2.0, Severity.LOW: 1.0,
                 Severity.INFO: 0.0}
RISK_CRITICALITY = {Criticality.CRITICAL: 2.0, Criticality.HIGH: 1.5, Criticality.MEDIUM: 1.0, Criticality.LOW: 0.5}
RISK_AGE_DAYS = 90  # the age factor grows from 1 (new) to 2 (open this long or longer)
RISK_EXPLOITABLE = 1.5  # rules of these categories, or tagged "exploitable", are one step from an attack
EXPLOITABLE_CATEGORIES = frozenset({"exposure", "takeover"})


DigestPeriod = Literal["daily", "weekly"]
DIGEST_PERIODS: tuple[DigestPeriod, ...] = ("daily", "weekly")


class KpiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sla: dict[Severity, Duration] = Field(
        default_factory=lambda: {Severity.CRITICAL: timedelta(days=2), Severity.HIGH: timedelta(days=7),
                                 Severity.MEDIUM: timedelta(days=30), Severity.LOW: timedelta(days=90)},
        description="time to remediate, per severity; info findings have none")
    window: Duration = Field(default=timedelta(days=30), description="the period of the rates, MTTD and trends")
    digests: list[DigestPeriod] = Field(
        default_factory=lambda: list(DIGEST_PERIODS),
        description="owners' digests the collector publishes after each period (midnight UTC; Monday for weekly)")


@dataclass(frozen=True)
class Scope:
    kind: str  # overall, owner, criticality, tag
    value: str

    def __str__(self) -> str:
        return self.kind if self.kind == "overall" else f"{self.kind}:{self.value}"


@dataclass
class Share:
    """``good`` of ``total`` evaluated; ``percent`` None when nothing was evaluated."""

    good: int = 0
    total: int = 0

    @property
    def percent(self) -> float | None:
        return round(100 * self.good / self.total, 1) if self.total else None


@dataclass
class ComplianceScore:
    passing: int
    evaluated: int
    not_evaluated: list[str]  # controls whose every rule errored on the scope

    @property
    def score(self) -> float | None:
        return round(100 * self.passing / self.evaluated, 1) if self.evaluated else None


@dataclass
class Kpis:
    scope: Scope
    at: datetime
    window_days: float
    assets: int
    https_routes: Share
    header_baseline: Share
    valid_certificates: Share
    oldest_tls_protocol: str | None  # None: no TLS endpoint evaluated
    ciphers: dict[str, int]  # strong, acceptable, weak: TLS endpoints
    next_expiry_days: int | None
    open_by_severity: dict[str, int]
    open_trend: list[tuple[str, int]]  # (day, findings open at its end)
    risk_score: float
    risk_per_asset: float | None
    risk_trend: list[tuple[str, float]]
    mttd_median_seconds: float | None
    mttd_p95_seconds: float | None
    detections: int
    false_positive_rate: float | None
    detection_accuracy: float | None
    remediation: Share  # within the SLA, of the decided episodes
    compliance: dict[str, ComplianceScore] = field(default_factory=dict)
    errored_checks: int = 0  # (asset, rule, subject) whose latest verdict is an error: visibility lost

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON, CSV and metric events."""
        data = asdict(self)
        data["scope"] = {"kind": self.scope.kind, "value": self.scope.value}
        data["at"] = self.at.isoformat()
        for name in ("https_routes", "header_baseline", "valid_certificates", "remediation"):
            data[name]["percent"] = getattr(self, name).percent
        for framework, score in self.compliance.items():
            data["compliance"][framework]["score"] = score.score
        return data


@dataclass(frozen=True)
class History:
    """What the KPIs are computed from, as the state store keeps it; ``analyst``: each reviewed fingerprint's
    latest verdict (false_positive, accepted_risk, fixed)."""

    records: Sequence[AssetRecord]
    verdicts: Sequence[LatestVerdict]
    episodes: Sequence[Episode]
    detections: Sequence[Detection]
    analyst: Mapping[str, str]


def measurement(kpis: Kpis) -> Measurement:
    """The figures of ``kpis`` as a metric event's fields (normalise/kpi.py types them); trends are left out,
    since the series of metric events is the trend."""
    values: dict[str, float | int | str | None] = {
        "assets": kpis.assets, "https_routes_pct": kpis.https_routes.percent,
        "header_baseline_pct": kpis.header_baseline.percent,
        "valid_certificates_pct": kpis.valid_certificates.percent, "oldest_tls_protocol": kpis.oldest_tls_protocol,
        "next_expiry_days": kpis.next_expiry_days, "risk_score": kpis.risk_score,
        "risk_per_asset": kpis.risk_per_asset, "mttd.median_seconds": kpis.mttd_median_seconds,
        "mttd.p95_seconds": kpis.mttd_p95_seconds, "mttd.detections": kpis.detections,
        "false_positive_rate": kpis.false_positive_rate, "detection_accuracy": kpis.detection_accuracy,
        "remediation.rate_pct": kpis.remediation.percent, "remediation.within_sla": kpis.remediation.good,
        "remediation.decided": kpis.remediation.total, "errored_checks": kpis.errored_checks,
    }
    values |= {f"ciphers.{grade}": count for grade, count in kpis.ciphers.items()}
    values |= {f"open.{severity}": count for severity, count in kpis.open_by_severity.items()}
    for framework, score in kpis.compliance.items():
        values |= {f"compliance.{framework}.score": score.score, f"compliance.{framework}.passing": score.passing,
                   f"compliance.{framework}.evaluated": score.evaluated,
                   f"compliance.{framework}.not_evaluated": len(score.not_evaluated)}
    return Measurement(kpis.scope.kind, kpis.scope.value, kpis.at, values)


def scopes(records: Sequence[AssetRecord], kind: str) -> list[Scope]:
    """The scopes of one kind present in the inventory (an asset with three tags is in three tag scopes)."""
    if kind == "overall":
        return [Scope("overall", "all")]
    values: set[str] = set()
    for record in records:
        values |= _scope_values(record, kind)
    return [Scope(kind, value) for value in sorted(values)]


def compute(scope: Scope, history: History, catalog: Catalog, settings: KpiSettings, now: datetime) -> Kpis:
    """Every KPI of ``scope`` at ``now``, from a history as it stood at ``now``: for a past moment, pass
    ``as_of(history, moment)`` (the store's history holds later episodes, detections and the latest verdicts)."""
    assets = {record.asset.id: record for record in history.records
              if record.removed_at is None and (scope.kind == "overall" or scope.value in _scope_values(record,
                                                                                                       scope.kind))}
    mine = [verdict for verdict in history.verdicts if verdict.asset_id in assets]
    episodes = [episode for episode in history.episodes if episode.asset_id in assets]
    since = now - settings.window
    open_now = [verdict for verdict in mine if verdict.is_open and _failing(verdict)]
    opened_at = {episode.fingerprint: episode.opened_at for episode in episodes if episode.resolved_at is None}
    risk = _risk(open_now, opened_at, assets, catalog, now)
    bounds = sorted(d.seconds for d in history.detections if d.asset_id in assets and d.detected_at >= since)
    return Kpis(
        scope=scope, at=now, window_days=settings.window.total_seconds() / 86400, assets=len(assets),
        https_routes=_subjects(mine, lambda v: v.check == "https"),
        header_baseline=_subjects(mine, lambda v: v.check == "headers"),
        valid_certificates=_subjects(mine, lambda v: v.rule_id in INVALID_CERTIFICATE),
        oldest_tls_protocol=_oldest_protocol(mine),
        ciphers=_ciphers(mine),
        next_expiry_days=min((int(v.facts["days_left"]) for v in mine
                              if v.check == "certificate" and "days_left" in v.facts), default=None),
        open_by_severity={severity.value: sum(1 for v in open_now if v.severity is severity) for severity in Severity},
        open_trend=[(day.date().isoformat(), len(_open_at(episodes, day))) for day in _days(since, now)],
        risk_score=round(risk, 1), risk_per_asset=round(risk / len(assets), 2) if assets else None,
        risk_trend=[(day.date().isoformat(), round(_risk_at(episodes, day, assets, catalog), 1))
                    for day in _days(since, now)],
        mttd_median_seconds=round(statistics.median(bounds), 1) if bounds else None,
        mttd_p95_seconds=round(_percentile(bounds, 0.95), 1) if bounds else None,
        detections=len(bounds),
        **_analyst_rates(episodes, history.analyst, since),
        remediation=_remediation(episodes, settings, since, now),
        compliance={framework: _compliance(mine, catalog, framework) for framework in FRAMEWORKS},
        errored_checks=sum(1 for verdict in mine if verdict.status is Status.ERROR),
    )


def in_scope(record: AssetRecord, scope: Scope) -> bool:
    return scope.kind == "overall" or scope.value in _scope_values(record, scope.kind)


def as_of(history: History, moment: datetime) -> History:
    """The history as it stood at ``moment``, for the KPIs of a past day (the report's trends).

    ``history.records`` should include removed assets (an asset removed since was there then). Assets not yet in
    the inventory, episodes not yet opened and drifts not yet detected are left out; an episode resolved since is
    open again. The ledger keeps only the latest verdict of each (asset, rule, subject), so the verdicts of an asset
    scanned after ``moment`` are rebuilt from its episodes: failing where an episode was open then, passing where
    the rule was evaluated and none was (errors stay errors: lost visibility then is not known). A certificate's
    days left are recounted from its ``not_after``, and dropped when its asset's certificate changed since (the
    one served then is not known). Analysts' verdicts carry no time and are kept.
    """
    records = [replace(record, removed_at=None) for record in history.records if record.first_seen <= moment
               and (record.removed_at is None or record.removed_at > moment)]
    present = {record.asset.id: record for record in records}
    episodes = [replace(episode, resolved_at=None) if episode.resolved_at and episode.resolved_at > moment
                else episode for episode in history.episodes if episode.opened_at <= moment]
    open_then = {episode.fingerprint: episode for episode in episodes if episode.resolved_at is None}
    renewed = {detection.asset_id for detection in history.detections
               if detection.kind == "certificate" and detection.detected_at > moment}
    verdicts = []
    for verdict in history.verdicts:
        record = present.get(verdict.asset_id)
        if record is None:
            continue
        if record.last_scanned is None or record.last_scanned <= moment:
            verdicts.append(verdict)  # its latest verdicts were already in force then
            continue
        verdicts.append(_verdict_at(verdict, open_then.get(verdict.fingerprint), moment,
                                    verdict.asset_id in renewed))
    return History(records, verdicts, episodes, [d for d in history.detections if d.detected_at <= moment],
                   history.analyst)


def _verdict_at(verdict: LatestVerdict, episode: Episode | None, moment: datetime, renewed: bool) -> LatestVerdict:
    facts = {key: value for key, value in verdict.facts.items() if key not in ("days_left", "not_after")}
    if "not_after" in verdict.facts and not renewed:
        not_after = datetime.fromisoformat(str(verdict.facts["not_after"]))
        facts |= {"not_after": verdict.facts["not_after"],
                  "days_left": int((not_after - moment).total_seconds() // 86400)}
    if episode is not None:
        return replace(verdict, status=Status.FAIL, severity=episode.severity, is_open=True, facts=facts)
    if verdict.status in (Status.PASS, Status.FAIL):
        return replace(verdict, status=Status.PASS, severity=Severity.INFO, is_open=False, facts=facts)
    return replace(verdict, is_open=False, facts=facts)


def risk_by_asset(history: History, catalog: Catalog, now: datetime) -> dict[str, float]:
    """Each present asset's risk score at ``now`` (the risk KPI's terms, summed per asset), highest first."""
    assets = {record.asset.id: record for record in history.records if record.removed_at is None}
    opened_at = {episode.fingerprint: episode.opened_at for episode in history.episodes
                 if episode.resolved_at is None and episode.asset_id in assets}
    totals = dict.fromkeys(assets, 0.0)
    for verdict in history.verdicts:
        if verdict.asset_id in assets and verdict.is_open and _failing(verdict):
            totals[verdict.asset_id] += _risk([verdict], opened_at, assets, catalog, now)
    return dict(sorted(((asset, round(score, 1)) for asset, score in totals.items()),
                       key=lambda item: (-item[1], item[0])))


def _scope_values(record: AssetRecord, kind: str) -> set[str]:
    asset = record.asset
    if kind == "owner":
        return {asset.owner or "(none)"}
    if kind == "criticality":
        return {asset.criticality.value}
    if kind == "tag":
        return set(asset.tags)
    raise ValueError(f"unknown scope kind {kind!r}: one of {', '.join(SCOPE_KINDS)}")


def _failing(verdict: LatestVerdict) -> bool:
    return verdict.status is Status.FAIL and not is_advisory(verdict.status, verdict.severity)


def _subjects(verdicts: Iterable[LatestVerdict], counts: Any) -> Share:
    """Targets (an asset's page or endpoint) with at least one evaluated verdict of the kind, and those with none
    failing."""
    evaluated: dict[tuple[str, str], bool] = {}
    for verdict in verdicts:
        if counts(verdict) and verdict.status in (Status.PASS, Status.FAIL):
            key = (verdict.asset_id, verdict.target)
            evaluated[key] = evaluated.get(key, True) and not _failing(verdict)
    return Share(sum(evaluated.values()), len(evaluated))


def _oldest_protocol(verdicts: Sequence[LatestVerdict]) -> str | None:
    tls = [verdict for verdict in verdicts if verdict.rule_id.startswith("tls.protocol.")
           and verdict.status in (Status.PASS, Status.FAIL)]
    if not tls:
        return None
    failing = {verdict.rule_id for verdict in tls if verdict.status is Status.FAIL}
    return next((name for rule, name in LEGACY_PROTOCOLS if rule in failing), "TLSv1.2")


def _ciphers(verdicts: Sequence[LatestVerdict]) -> dict[str, int]:
    endpoints: dict[tuple[str, str], str] = {}
    rank = {"strong": 0, "acceptable": 1, "weak": 2}
    for verdict in verdicts:
        if not verdict.rule_id.startswith(("tls.cipher.", "tls.dh_")) or verdict.status not in (Status.PASS,
                                                                                                 Status.FAIL):
            continue
        grade = "strong"
        if verdict.status is Status.FAIL:
            grade = "weak" if verdict.rule_id in WEAK_CIPHERS else "acceptable"
        key = (verdict.asset_id, verdict.target)
        if rank[grade] >= rank[endpoints.get(key, "strong")]:
            endpoints[key] = grade
    return {grade: sum(1 for value in endpoints.values() if value == grade) for grade in rank}


def _exploitable(rule_id: str, catalog: Catalog) -> bool:
    if rule_id not in catalog:
        return False
    rule = catalog[rule_id]
    return rule.category in EXPLOITABLE_CATEGORIES or "exploitable" in rule.tags


def _weight(severity: Severity, criticality: Criticality, age: timedelta, exploitable: bool) -> float:
    age_factor = 1 + min(max(age.total_seconds(), 0) / 86400, RISK_AGE_DAYS) / RISK_AGE_DAYS
    return (RISK_SEVERITY[severity] * RISK_CRITICALITY[criticality] * age_factor
            * (RISK_EXPLOITABLE if exploitable else 1.0))


def _risk(open_now: Sequence[LatestVerdict], opened_at: Mapping[str, datetime], assets: Mapping[str, AssetRecord],
          catalog: Catalog, now: datetime) -> float:
    return sum(_weight(verdict.severity, assets[verdict.asset_id].asset.criticality,
                       now - opened_at.get(verdict.fingerprint, now), _exploitable(verdict.rule_id, catalog))
               for verdict in open_now)


def _open_at(episodes: Sequence[Episode], moment: datetime) -> list[Episode]:
    return [episode for episode in episodes if episode.opened_at <= moment
            and (episode.resolved_at is None or episode.resolved_at > moment)]


def _risk_at(episodes: Sequence[Episode], moment: datetime, assets: Mapping[str, AssetRecord],
             catalog: Catalog) -> float:
    """The risk score as it stood at ``moment``, from the episodes then open (the current classification)."""
    return sum(_weight(episode.severity, assets[episode.asset_id].asset.criticality, moment - episode.opened_at,
                       _exploitable(episode.rule_id, catalog)) for episode in _open_at(episodes, moment))


def _days(since: datetime, now: datetime) -> list[datetime]:
    """The end of each day in the window, the last one being ``now``."""
    days, moment = [], now
    while moment > since:
        days.append(moment)
        moment -= timedelta(days=1)
    return days[::-1]


def _percentile(values: Sequence[float], fraction: float) -> float:
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))]


def _analyst_rates(episodes: Sequence[Episode], analyst: Mapping[str, str], since: datetime) -> dict[str, Any]:
    opened = {episode.fingerprint for episode in episodes if episode.opened_at >= since}
    reviewed = [analyst[fingerprint] for fingerprint in opened if fingerprint in analyst]
    false = sum(1 for verdict in reviewed if verdict == "false_positive")
    return {"false_positive_rate": round(false / len(opened), 4) if opened else None,
            "detection_accuracy": round(1 - false / len(reviewed), 4) if reviewed else None}


def _remediation(episodes: Sequence[Episode], settings: KpiSettings, since: datetime, now: datetime) -> Share:
    share = Share()
    for episode in episodes:
        sla = settings.sla.get(episode.severity)
        if sla is None or episode.opened_at < since:
            continue
        deadline = episode.opened_at + sla
        if episode.resolved_at is not None:
            share.total += 1
            share.good += episode.resolved_at <= deadline
        elif now > deadline:
            share.total += 1  # still open past its SLA: missed
    return share


def _compliance(verdicts: Sequence[LatestVerdict], catalog: Catalog, framework: str) -> ComplianceScore:
    by_rule: dict[str, list[LatestVerdict]] = defaultdict(list)
    for verdict in verdicts:
        by_rule[verdict.rule_id].append(verdict)
    evaluated: dict[str, bool] = {}  # control -> no open failing finding
    errored: set[str] = set()
    for rule in catalog:
        for control in getattr(rule.compliance, framework):
            for verdict in by_rule.get(rule.id, []):
                if verdict.status in (Status.PASS, Status.FAIL):
                    evaluated[control] = evaluated.get(control, True) and not (verdict.is_open and _failing(verdict))
                elif verdict.status is Status.ERROR:
                    errored.add(control)
    return ComplianceScore(sum(evaluated.values()), len(evaluated), sorted(errored - set(evaluated)))
