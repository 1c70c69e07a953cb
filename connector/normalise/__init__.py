"""Findings to SIEM events (ECS documents, CEF lines), driven by the mapping files in ``mappings/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from connector.core.catalog import Catalog
from connector.core.errors import ConfigError, format_validation_error
from connector.core.events import NewEvent
from connector.core.lifecycle import (
    AssetChange,
    Digest,
    Drift,
    Measurement,
    StateChange,
    ThirdPartyDependency,
    Transition,
)
from connector.core.model import Finding
from connector.core.resources import mappings_dir
from connector.core.yamlio import load_yaml
from connector.normalise.assets import asset_spool_event
from connector.normalise.cef import CefEncoder
from connector.normalise.context import ContextBuilder, Runtime, Scoring
from connector.normalise.dependencies import ACTION as DEPENDENCY_ACTION
from connector.normalise.dependencies import dependency_spool_event
from connector.normalise.digest import digest_spool_event
from connector.normalise.drift import drift_spool_event
from connector.normalise.ecs import EcsEncoder
from connector.normalise.kpi import kpi_spool_event
from connector.normalise.lifecycle import rekind

__all__ = ["Normaliser", "Runtime", "change_action"]


class _ScoringFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity_base: dict[str, float]
    criticality_weight: dict[str, float]


def _mapping_file(path: Path) -> dict[str, Any]:
    document = load_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return document


def change_action(change: StateChange) -> str:
    """The change's ``event.action``: finding-opened, drift-certificate, asset-created..."""
    if isinstance(change, Transition):
        return change.change.value
    if isinstance(change, AssetChange):
        return change.action.value
    if isinstance(change, ThirdPartyDependency):
        return DEPENDENCY_ACTION
    if isinstance(change, Measurement):
        return "kpi"
    if isinstance(change, Digest):
        return f"digest-{change.period}"
    return f"drift-{change.kind}"


class Normaliser:
    def __init__(self, catalog: Catalog, ecs: EcsEncoder, cef: CefEncoder, scoring: Scoring, runtime: Runtime) -> None:
        self.catalog = catalog
        self.ecs_encoder = ecs
        self.cef_encoder = cef
        self.contexts = ContextBuilder(catalog, scoring, runtime)
        ecs.check_rule_categories({rule.category for rule in catalog}, "mappings/ecs.yaml")

    @classmethod
    def load(cls, catalog: Catalog, directory: Path | None = None, runtime: Runtime | None = None) -> Normaliser:
        root = directory or mappings_dir()
        scoring_path = root / "scoring.yaml"
        try:
            scoring = _ScoringFile.model_validate(_mapping_file(scoring_path))
        except ValidationError as exc:
            raise ConfigError(f"{scoring_path}: {format_validation_error(exc)}") from None
        ecs_path, cef_path = root / "ecs.yaml", root / "cef.yaml"
        return cls(
            catalog,
            EcsEncoder(_mapping_file(ecs_path), str(ecs_path), directory),
            CefEncoder(_mapping_file(cef_path), str(cef_path)),
            Scoring(scoring.severity_base, scoring.criticality_weight),
            runtime or Runtime(),
        )

    def ecs(self, finding: Finding) -> dict[str, Any]:
        return self.ecs_encoder.encode(self.contexts.build(finding))

    def cef(self, finding: Finding) -> str:
        return self.cef_encoder.encode(self.contexts.build(finding))

    def transition_ecs(self, transition: Transition) -> dict[str, Any]:
        return rekind(self.ecs_encoder.encode(self.contexts.build(transition.finding, transition)), transition)

    def change_event(self, change: StateChange, formats: frozenset[str]) -> NewEvent:
        """The spooled form of a change: a finding's transition, a drift, an inventory change, a third-party
        dependency."""
        if isinstance(change, Transition):
            return self.spool_event(change.finding, formats, change)
        if isinstance(change, AssetChange):
            return asset_spool_event(change, self.contexts.connector, formats)
        if isinstance(change, Drift):
            return drift_spool_event(change, self.contexts.connector, formats)
        if isinstance(change, ThirdPartyDependency):
            return dependency_spool_event(change, self.contexts.connector, formats)
        if isinstance(change, Measurement):
            return kpi_spool_event(change, self.contexts.connector, formats)
        if isinstance(change, Digest):
            return digest_spool_event(change, self.contexts.connector, formats)
        raise TypeError(f"no event encoding for {type(change).__name__}")

    def spool_event(self, finding: Finding, formats: frozenset[str], transition: Transition | None = None) -> NewEvent:
        """The spooled form: only the encodings some sink needs, plus the fields sinks route on.

        With ``transition``, the event is that transition of ``finding`` (opened, resolved...), not its state.
        """
        context = self.contexts.build(finding, transition)
        document = self.ecs_encoder.encode(context) if "ecs" in formats else None
        if document is not None and transition is not None:
            rekind(document, transition)
        meta = {
            "time": finding.observed_at.timestamp(),
            "host": finding.asset.host,
            "asset": finding.asset.id,
            "rule": finding.rule_id,
            "category": context["rule"]["category"],
            "severity": finding.severity.value,
            "status": finding.status.value,
            "check": finding.check,
            "scan_id": finding.scan_id,
        }
        if transition is not None:
            meta["action"] = transition.change.value
        return NewEvent(
            event_id=context["finding"]["event_id"],
            meta=orjson.dumps(meta).decode(),
            ecs=orjson.dumps(document) if document is not None else None,
            cef=self.cef_encoder.encode(context) if "cef" in formats else None,
        )
