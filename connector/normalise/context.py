"""The source document that mapping files read from: one finding joined with its rule, asset and runtime.

Paths available to ``mappings/*.yaml`` (documented in mappings/README.md):
``finding.*``, ``rule.*``, ``catalog.*``, ``asset.*``, ``target.*``, ``observed.*``, ``connector.*``, and
``lifecycle.*`` on a finding's transition (empty on the per-scan state events).
Rule and asset parts are built once per rule or asset and reused, so normalising is cheap per event.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from connector import __version__
from connector.core.catalog import Catalog, Rule
from connector.core.lifecycle import Transition
from connector.core.model import Asset, Finding, Status, event_id
from connector.normalise.lifecycle import lifecycle_context

EVALUATION = {Status.PASS: "passed", Status.FAIL: "failed", Status.ERROR: "unknown", Status.NOT_APPLICABLE: "unknown"}
OUTCOME = {Status.PASS: "success", Status.FAIL: "failure", Status.ERROR: "unknown", Status.NOT_APPLICABLE: "unknown"}


@dataclass(frozen=True)
class Scoring:
    """event.risk_score = severity base x asset criticality weight, capped at 100 (mappings/scoring.yaml)."""

    severity_base: dict[str, float]
    criticality_weight: dict[str, float]

    def risk(self, severity: str, criticality: str) -> float:
        score = self.severity_base.get(severity, 0.0) * self.criticality_weight.get(criticality, 1.0)
        return round(min(score, 100.0), 2)


@dataclass(frozen=True)
class Runtime:
    """Facts about this connector instance that every event carries as ``observer.*``."""

    version: str = __version__
    hostname: str = field(default_factory=socket.gethostname)
    name: str | None = None


class ContextBuilder:
    def __init__(self, catalog: Catalog, scoring: Scoring, runtime: Runtime) -> None:
        self.catalog = catalog
        self.scoring = scoring
        self.connector = {"version": runtime.version, "hostname": runtime.hostname,
                          "name": runtime.name or runtime.hostname}
        self.catalog_part = {"name": catalog.name, "version": catalog.version}
        self._rules: dict[str, dict[str, Any]] = {}
        self._assets: dict[str, dict[str, Any]] = {}

    def build(self, finding: Finding, transition: Transition | None = None) -> dict[str, Any]:
        """The mapping files' sources; with a transition, the event is the transition's (its id, ``lifecycle``)."""
        asset = finding.asset
        rule = self._rule(finding.rule_id)
        target = finding.target
        marker = finding.fingerprint
        return {
            "finding": {
                "rule_id": finding.rule_id,
                "check": finding.check,
                "status": finding.status.value,
                "evaluation": EVALUATION[finding.status],
                "outcome": OUTCOME[finding.status],
                "error_message": finding.message if finding.status is Status.ERROR else None,
                "severity": finding.severity.value,
                "risk_score": self.scoring.risk(finding.severity.value, asset.criticality.value),
                "message": finding.message,
                "summary": f"{rule['name']}: {finding.message}",
                "fingerprint": marker,
                "event_id": transition.event_id if transition else event_id(marker, finding.scan_id),
                "scan_id": finding.scan_id,
                "observed_at": finding.observed_at,
                "first_seen": finding.first_seen,
                "last_seen": finding.last_seen,
                "subject": finding.subject,
                "evidence": finding.evidence or None,
                "error_type": finding.evidence.get("error_kind") if finding.status is Status.ERROR else None,
            },
            "rule": rule,
            "catalog": self.catalog_part,
            "asset": self._asset(asset),
            "target": {"port": finding.port, "path": finding.path, "key": target.key, "url": target.url,
                       "scheme": target.scheme,
                       "domain": asset.host if target.scheme else None},
            "observed": finding.observed,
            "connector": self.connector,
            "lifecycle": lifecycle_context(transition) if transition else None,
        }

    def _rule(self, rule_id: str) -> dict[str, Any]:
        cached = self._rules.get(rule_id)
        if cached is None:
            rule: Rule = self.catalog[rule_id]
            references = [str(url) for url in rule.references]
            cached = {
                "id": rule.id,
                "name": rule.title,
                "description": rule.description,
                "severity": rule.severity.value,
                "category": rule.category,
                "check": rule.check,
                "remediation": rule.remediation,
                "references": references,
                "reference": references[0] if references else None,
                "compliance": rule.compliance.flattened(),
                "tags": list(rule.tags),
            }
            self._rules[rule_id] = cached
        return cached

    def _asset(self, asset: Asset) -> dict[str, Any]:
        cached = self._assets.get(asset.id)
        if cached is None:
            cached = {
                "id": asset.id,
                "host": asset.host,
                "address": asset.address,
                "criticality": asset.criticality.value,
                "owner": asset.owner,
                "tags": list(asset.tags),
            }
            self._assets[asset.id] = cached
        return cached
