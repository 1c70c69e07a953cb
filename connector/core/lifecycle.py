"""What changed, as events: finding transitions, observation drift and inventory changes.

A scan restates every rule (``event.kind: state``); these say what changed since the last complete scan, so SIEM
rules and playbooks alert once per change instead of once per scan. The inventory decides them, the normaliser
encodes them, and the spool carries them with the scan's findings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from connector.core.model import Asset, Finding, Severity, Status, fingerprint


class Change(StrEnum):
    """ECS ``event.action`` of a transition."""

    OPENED = "finding-opened"
    REOPENED = "finding-reopened"
    CHANGED = "finding-changed"
    RESOLVED = "finding-resolved"


@dataclass(frozen=True)
class Transition:
    """``finding`` is the verdict that caused it (the passing one for RESOLVED); ``before`` is the open episode's
    last failing verdict (None when opening); ``opened_at`` is when the current (or resolved) episode opened."""

    change: Change
    finding: Finding
    before: Finding | None
    opened_at: datetime
    reason: str

    @property
    def open_seconds(self) -> float:
        return max(0.0, (self.finding.observed_at - self.opened_at).total_seconds())

    @property
    def event_id(self) -> str:
        """Deterministic per scan, so a transition re-spooled after a crash is one event to every sink."""
        return _event_id(self.finding.fingerprint, self.change.value, self.finding.scan_id)


@dataclass(frozen=True)
class Drift:
    """An observation of an asset that changed between scans, whether or not a rule fails: an A record, the
    certificate, the accepted protocols, the header set, the open ports, a redirect chain.

    ``last_good_at`` is the last observation of ``before`` and ``detected_at`` the first of ``after``: the change
    happened between them, which bounds the time to detect it (MTTD).
    """

    kind: str  # dns, certificate, tls, headers, ports, redirects
    asset: Asset
    subject: str  # which one within the kind: the record type, the port, the route
    before: Any
    after: Any
    last_good_at: datetime
    detected_at: datetime
    scan_id: str

    @property
    def fingerprint(self) -> str:
        """Stable across scans, as a finding's is: SIEM alerts suppress on it and playbooks act on it."""
        return fingerprint(f"drift.{self.kind}", self.asset.id, "", self.subject)

    @property
    def event_id(self) -> str:
        return _event_id("drift", self.asset.id, self.kind, self.subject, self.scan_id)


@dataclass(frozen=True)
class Detection:
    """When a drift was detected, and the last observation before it that was still good: MTTD is bounded by it."""

    asset_id: str
    kind: str
    subject: str
    last_good_at: datetime
    detected_at: datetime

    @property
    def seconds(self) -> float:
        return (self.detected_at - self.last_good_at).total_seconds()


@dataclass(frozen=True)
class Episode:
    """One open-to-resolved stretch of a finding (``resolved_at`` None: still open), for the remediation KPIs."""

    fingerprint: str
    asset_id: str
    rule_id: str
    severity: Severity
    opened_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class LatestVerdict:
    """The latest verdict of one (asset, rule, subject), with the few evidence facts the posture KPIs read."""

    fingerprint: str
    asset_id: str
    rule_id: str
    check: str
    target: str  # what was probed (core.model.Target.key): a page, a TLS endpoint
    status: Status
    severity: Severity
    subject: str | None
    facts: dict[str, Any]
    is_open: bool


class AssetAction(StrEnum):
    """ECS ``event.action`` of an inventory change."""

    CREATED = "asset-created"
    CHANGED = "asset-changed"
    REMOVED = "asset-removed"


@dataclass(frozen=True)
class AssetRecord:
    """An asset as the inventory knows it: the declaration (or what discovery inferred) plus where it came from
    and when it was seen and scanned."""

    asset: Asset
    source: str  # config, discovered
    seen_from: str | None  # discovered: where the name was found (a SAN of shop.example.com, a link on /)
    first_seen: datetime
    last_seen: datetime
    last_scanned: datetime | None
    removed_at: datetime | None = None


@dataclass(frozen=True)
class AssetChange:
    """An asset entered, changed in, or left the inventory; ``before`` is the previous record when it changed."""

    action: AssetAction
    record: AssetRecord
    before: AssetRecord | None
    at: datetime

    @property
    def event_id(self) -> str:
        return _event_id("asset", self.record.asset.id, self.action.value, self.at.isoformat())


@dataclass(frozen=True)
class ThirdPartyDependency:
    """A name an asset depends on that is outside the declared scope: reported once, and never probed."""

    name: str
    asset: Asset | None  # whose scan showed it; None for a name of the seed list
    seen_from: str  # how: "link on https://shop.example.com/", "CSP script-src of ...", "CNAME of www..."
    at: datetime

    @property
    def event_id(self) -> str:
        """One per name: reported once, so a re-spool after a crash is the same event."""
        return _event_id("third-party", self.name)


def _event_id(*parts: str) -> str:
    """Deterministic from what the event is about, so one re-spooled after a crash is one event to every sink."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


# what the inventory hands the publisher besides findings: every one is an event of its own
@dataclass(frozen=True)
class Measurement:
    """The KPIs of one scope after a scan cycle (inventory/kpi.py): an ECS ``event.kind: metric`` event.

    ``values`` are flat field names under ``postern.kpi`` (``https_routes_pct``, ``open.critical``...) with
    numbers, strings or None (not evaluated)."""

    scope_kind: str
    scope_value: str
    at: datetime
    values: dict[str, float | int | str | None]

    @property
    def event_id(self) -> str:
        return _event_id("kpi", self.scope_kind, self.scope_value, self.at.isoformat())


@dataclass(frozen=True)
class DigestEntry:
    fingerprint: str
    asset_id: str
    rule_id: str
    severity: Severity
    opened_at: datetime
    resolved_at: datetime | None
    due: datetime | None  # opened_at + the severity's SLA; None: info, no SLA


@dataclass(frozen=True)
class Digest:
    """One owner's roll-up of a period (daily, weekly): what opened, what was resolved, what is past its SLA.
    Routine findings reach people this way instead of one message each."""

    owner: str
    period: str  # daily, weekly
    start: datetime
    end: datetime
    opened: tuple[DigestEntry, ...]
    resolved: tuple[DigestEntry, ...]
    overdue: tuple[DigestEntry, ...]

    @property
    def fingerprint(self) -> str:
        """One per owner and period kind: SIEM alerts suppress on it, playbooks cool down on it."""
        return fingerprint(f"digest.{self.period}", self.owner, "", None)

    @property
    def event_id(self) -> str:
        return _event_id("digest", self.owner, self.period, self.end.isoformat())


StateChange = Transition | Drift | AssetChange | ThirdPartyDependency | Measurement | Digest
