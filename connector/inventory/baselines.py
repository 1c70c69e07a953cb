"""Observation baselines: what each asset looked like at its last scan (DNS answers, certificate, accepted TLS, the
security-header set, open ports, redirect chains), and each change between scans as one drift, whether or not a
rule fails.

Rules that keep noise out of the SIEM:
- a kind is compared only where its check ran and observed it in this scan: an errored, skipped or not-applicable
  check is lost visibility, never a change, and a ``--checks`` run compares only what it ran;
- the first observation of a subject is its baseline, not a change; so is one made within another scope (another
  list of probed ports, another zone's NS set): that is another question, not another answer;
- observations are normalised (sorted answers, lower-case names, TTLs dropped, the set of header names, cipher
  classes rather than suites or their order), so order, TTL and case never make a drift;
- baselines change only after the report's events are durable (``apply``), so a crash re-reports a drift.

``last_good_at`` is the last observation of the old value (each confirming scan, or ``confirm``, moves it on) and
``detected_at`` the scan's observation of the new one: the change happened between them.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field

from connector.core.lifecycle import Detection, Drift
from connector.core.model import AssetReport, Finding, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS baselines (
    asset_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    value TEXT NOT NULL,
    scope TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_good_at TEXT NOT NULL,
    PRIMARY KEY (asset_id, kind, subject)
);
CREATE TABLE IF NOT EXISTS detections (
    asset_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    last_good_at TEXT NOT NULL,
    detected_at TEXT NOT NULL,
    PRIMARY KEY (asset_id, kind, subject, detected_at)
);
"""


class DriftKinds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dns: bool = Field(default=True, description="A, AAAA, CNAME, MX and NS answers")
    certificate: bool = Field(default=True, description="the leaf served on each TLS port: fingerprint, issuer, "
                              "notAfter")
    tls: bool = Field(default=True, description="accepted protocol versions and weak cipher classes per port")
    headers: bool = Field(default=True, description="the set of security headers on each key route")
    ports: bool = Field(default=True, description="the open TCP ports")
    redirects: bool = Field(default=True, description="the redirect chain of each key route and of plain HTTP")


class DriftSettings(BaseModel):
    """The ``drift`` section of the configuration: which observation kinds are baselined and reported."""

    model_config = ConfigDict(extra="forbid")

    kinds: DriftKinds = DriftKinds()

    @property
    def enabled(self) -> frozenset[str]:
        return frozenset(kind for kind, enabled in self.kinds.model_dump().items() if enabled)


class Seen(NamedTuple):
    """One observed value of a kind: ``subject`` says which one (record type, port, URL); ``scope`` what was asked."""

    subject: str
    value: Any
    scope: str = ""


@dataclass
class _Row:
    kind: str
    subject: str
    value: str  # normalised JSON
    scope: str
    first_seen: str
    last_good_at: str


@dataclass
class BaselineAssessment:
    """One asset's observations against its baselines; ``apply`` records them once their events are durable."""

    drifts: list[Drift]
    asset_id: str
    rows: list[_Row] = field(default_factory=list, repr=False)


class BaselineStore:
    """Kept in the state database the runtime opens, next to the finding ledger."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)

    def assess(self, report: AssetReport, kinds: frozenset[str]) -> BaselineAssessment:
        """The drifts of ``report`` for the enabled ``kinds``; changes nothing until ``apply``."""
        asset = report.asset
        known = {(row.kind, row.subject): row for row in self._rows(asset.id)}
        assessment = BaselineAssessment([], asset.id)
        for kind, seen, finding in observations(report, kinds):
            at = _stamp(finding.observed_at)
            value = _json(seen.value)
            row = known.get((kind, seen.subject))
            if row is not None and row.scope == seen.scope and row.value == value:
                assessment.rows.append(_Row(kind, seen.subject, value, seen.scope, row.first_seen,
                                            max(row.last_good_at, at)))
                continue
            if row is not None and row.scope == seen.scope:
                assessment.drifts.append(Drift(kind, asset, seen.subject, orjson.loads(row.value), seen.value,
                                               datetime.fromisoformat(row.last_good_at), finding.observed_at,
                                               finding.scan_id))
            assessment.rows.append(_Row(kind, seen.subject, value, seen.scope, at, at))
        return assessment

    def apply(self, assessment: BaselineAssessment) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO baselines (asset_id, kind, subject, value, scope, first_seen, last_good_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(asset_id, kind, subject) DO UPDATE SET "
                "value = excluded.value, scope = excluded.scope, first_seen = excluded.first_seen, "
                "last_good_at = excluded.last_good_at",
                [(assessment.asset_id, row.kind, row.subject, row.value, row.scope, row.first_seen, row.last_good_at)
                 for row in assessment.rows])
            self._db.executemany(  # the history of detection times (MTTD), read by the KPIs
                "INSERT OR IGNORE INTO detections (asset_id, kind, subject, last_good_at, detected_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(assessment.asset_id, drift.kind, drift.subject, _stamp(drift.last_good_at),
                  _stamp(drift.detected_at)) for drift in assessment.drifts])

    def rename(self, old_id: str, new_id: str) -> None:
        """A renamed asset keeps its baselines and detections (runs in the caller's transaction)."""
        self._db.execute("UPDATE OR REPLACE baselines SET asset_id = ? WHERE asset_id = ?", (new_id, old_id))
        self._db.execute("UPDATE OR REPLACE detections SET asset_id = ? WHERE asset_id = ?", (new_id, old_id))

    def detections(self) -> list[Detection]:
        """Every drift detected: between its last good and first bad observation, oldest first."""
        return [Detection(asset_id, kind, subject, datetime.fromisoformat(good), datetime.fromisoformat(detected))
                for asset_id, kind, subject, good, detected in self._db.execute(
                    "SELECT asset_id, kind, subject, last_good_at, detected_at FROM detections ORDER BY detected_at")]

    def confirm(self, asset_id: str, kinds: Iterable[str], at: datetime) -> int:
        """Something cheaper than a scan saw the baselines of ``kinds`` unchanged at ``at``: move their last good
        observation there, which narrows the bound of a later drift. Returns how many baselines moved."""
        wanted = sorted(set(kinds))
        if not wanted:
            return 0
        marks = ",".join("?" * len(wanted))
        stamp = _stamp(at)
        with self._db:
            cursor = self._db.execute(f"UPDATE baselines SET last_good_at = ? WHERE asset_id = ? AND kind IN ({marks}) "
                                      "AND last_good_at < ?", (stamp, asset_id, *wanted, stamp))
        return cursor.rowcount

    def baselines(self, asset_id: str) -> dict[tuple[str, str], tuple[Any, datetime]]:
        """Each baselined (kind, subject) of the asset: its value and when it was last observed."""
        return {(row.kind, row.subject): (orjson.loads(row.value), datetime.fromisoformat(row.last_good_at))
                for row in self._rows(asset_id)}

    def _rows(self, asset_id: str) -> list[_Row]:
        return [_Row(*values) for values in self._db.execute(
            "SELECT kind, subject, value, scope, first_seen, last_good_at FROM baselines WHERE asset_id = ?",
            (asset_id,))]


def observations(report: AssetReport, kinds: frozenset[str]) -> Iterable[tuple[str, Seen, Finding]]:
    """(kind, what was seen, a finding of the target that saw it) for each enabled kind the report observed."""
    targets: dict[tuple[str, str], list[Finding]] = {}
    for finding in report.findings:
        targets.setdefault((finding.check, finding.target.key), []).append(finding)
    for (check, _key), findings in targets.items():
        latest = max(findings, key=lambda finding: finding.observed_at)
        if not latest.observed:
            continue  # scan.error or not applicable: nothing was observed, so nothing is compared
        errors = frozenset(finding.rule_id for finding in findings if finding.status is Status.ERROR)
        for kind, read in _READERS.get(check, ()):
            if kind in kinds:
                for seen in read(latest, latest.observed, errors):
                    yield kind, seen, latest


Reader = Callable[[Finding, Mapping[str, Any], frozenset[str]], list[Seen]]


def _dns(finding: Finding, observed: Mapping[str, Any], errors: frozenset[str]) -> list[Seen]:
    """A lookup that failed (its type in lookup_failures) is not "no records": that type is left out."""
    records = observed["dns_records"]
    failed = set(records.get("lookup_failures", {}))
    answers = {
        "A": sorted({_address(value) for value in records["a"]}),
        "AAAA": sorted({_address(value) for value in records["aaaa"]}),
        "CNAME": [_name(value) for value in records["cname"]],  # a chain: its order is its meaning
        "MX": sorted({_mx(value) for value in records["mx"]}),
        "NS": sorted({_name(value) for value in records["ns"]}),
    }
    return [Seen(kind, value, str(records.get("zone") or "") if kind == "NS" else "")
            for kind, value in answers.items() if kind not in failed]


def _certificate(finding: Finding, observed: Mapping[str, Any], errors: frozenset[str]) -> list[Seen]:
    """The leaf as served (its fingerprint in upper-case hex, as the findings' tls.server.hash.sha256); a trust
    verdict that could not be decided does not hide which certificate it was."""
    server = observed["tls_server"]
    return [Seen(str(finding.port), {"sha256": str(server["hash"]["sha256"]).upper(), "issuer": server["issuer"],
                                     "not_after": server["not_after"]})]


def _tls(finding: Finding, observed: Mapping[str, Any], errors: frozenset[str]) -> list[Seen]:
    """Undecided versions or classes would read as refused: the target is compared only when all were decided."""
    if errors - {"tls.dh_weak"}:
        return []
    scan = observed["tls_scan"]
    return [Seen(str(finding.port), {"protocols": sorted(scan["accepted_versions"]),
                                     "weak_classes": sorted(scan["weak_suites"])})]


def _headers(finding: Finding, observed: Mapping[str, Any], errors: frozenset[str]) -> list[Seen]:
    return [Seen(finding.target.url or "", sorted({name.lower() for name in observed["web_page"]["headers"]}))]


def _route_redirects(finding: Finding, observed: Mapping[str, Any], errors: frozenset[str]) -> list[Seen]:
    page = observed["web_page"]
    chain = [_hop_text(hop) for hop in page["redirects"]]
    if page.get("location"):
        chain.append(_hop(observed["http"]["response"]["status_code"], page["url"], page["location"]))
    return [Seen(finding.target.url or "", chain)]


def _http_redirects(finding: Finding, observed: Mapping[str, Any], errors: frozenset[str]) -> list[Seen]:
    """Plain HTTP's chain to HTTPS; not when nothing answered plain HTTP (an outage is not a new chain) or following
    it failed part way (http.no_redirect errored)."""
    transport = observed["http_transport"]
    if transport["http_url"] is None or not transport["redirects"] or "http.no_redirect" in errors:
        return []
    return [Seen(transport["http_url"], [_hop(hop["status"], hop["url"], hop["location"])
                                         for hop in transport["redirects"] if hop["location"]])]


def _ports(finding: Finding, observed: Mapping[str, Any], errors: frozenset[str]) -> list[Seen]:
    """Another list of probed ports is another question: scoped by it, so editing scan_ports re-baselines."""
    ports = observed["ports"]
    asked = finding.asset.scan_ports
    scope = ",".join(str(port) for port in sorted(asked)) if asked is not None else f"catalogue:{ports['probed']}"
    return [Seen("tcp", sorted(set(ports["open"])), scope)]


_READERS: dict[str, Sequence[tuple[str, Reader]]] = {
    "dns": [("dns", _dns)],
    "certificate": [("certificate", _certificate)],
    "tls": [("tls", _tls)],
    "headers": [("headers", _headers), ("redirects", _route_redirects)],
    "https": [("redirects", _http_redirects)],
    "ports": [("ports", _ports)],
}
_HOP = re.compile(r"(?P<status>\d{3}) (?P<source>\S+) -> (?P<target>.*)")


def _address(value: str) -> str:
    try:
        return ip_address(value).compressed
    except ValueError:
        return value.strip().lower()


def _name(value: str) -> str:
    return value.strip().lower().rstrip(".")


def _mx(value: str) -> str:
    preference, _, exchange = value.strip().partition(" ")
    return f"{preference} {_name(exchange)}" if exchange else _name(preference)


def _url(value: str) -> str:
    parts = urlsplit(value.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, parts.fragment))


def _hop(status: int, source: str, target: str) -> str:
    return f"{status} {_url(source)} -> {_url(target)}"


def _hop_text(text: str) -> str:
    """A hop as the web probe records it, "301 https://a/ -> https://a/b"."""
    match = _HOP.fullmatch(text)
    return _hop(int(match["status"]), match["source"], match["target"]) if match else text


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _stamp(moment: datetime) -> str:
    """Fixed width in UTC, so stamps compare as text in SQL too."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
