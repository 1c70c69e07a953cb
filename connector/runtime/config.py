"""The YAML configuration of the sidecar (and optional for one-shot scans): assets, checks, schedule, sinks.

Validation collects every problem with its location in the file, so ``connector validate`` can list them all.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from connector.core.catalog import Catalog
from connector.core.errors import ConfigError, format_validation_error
from connector.core.model import Asset, Severity
from connector.core.units import Duration
from connector.core.yamlio import load_yaml
from connector.delivery.sinks import parse_sink
from connector.delivery.sinks.base import SinkSettings
from connector.delivery.spool import SpoolConfig
from connector.inventory.baselines import DriftSettings
from connector.inventory.discovery import ROGUE_RULE, Discovery, InventorySettings
from connector.inventory.kpi import KpiSettings
from connector.respond.settings import RespondConfig
from connector.runtime.scheduler import ScheduleConfig
from connector.runtime.state import StateStore
from connector.runtime.watch import WatchSettings
from connector.scan.context import ScanSettings
from connector.scan.engine import ConfiguredCheck, RuleOverride, build_checks


class RuleOverrideConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    severity: Severity | None = None


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assets: list[Asset] = Field(min_length=1)
    scan: ScanSettings = ScanSettings()
    checks: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                              description="per-check settings; {enabled: false} turns one off")
    rules: dict[str, RuleOverrideConfig] = Field(default_factory=dict)
    drift: DriftSettings = Field(default=DriftSettings(), description="observation kinds whose changes are events")
    schedule: ScheduleConfig = ScheduleConfig()
    watch: WatchSettings = Field(default_factory=WatchSettings,
                                 description="the sentinel lane: critical assets looked at every minute")
    sinks: list[dict[str, Any]] = Field(default_factory=list)
    spool: SpoolConfig = SpoolConfig()
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="serve Prometheus metrics here")
    metrics_address: str = Field(default="127.0.0.1", description="0.0.0.0 to let a cluster scraper reach it")
    state_dir: Path = Path("connector-state")
    shutdown_grace: Duration = Field(default=timedelta(seconds=10), description="on SIGTERM, wait this long")
    mappings_dir: Path | None = None
    observer_name: str | None = None
    respond: RespondConfig | None = Field(default=None, description="the SOAR callback receiver and playbooks")
    kpi: KpiSettings = Field(default_factory=KpiSettings, description="remediation SLAs and the KPIs' window")
    inventory: InventorySettings | None = Field(default=None, description="discovery: the owned scope, and whether "
                                                                          "discovered assets are scanned")

    _sinks: list[SinkSettings] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _valid_sinks(self) -> Config:
        parsed = []
        for index, entry in enumerate(self.sinks):
            try:
                parsed.append(parse_sink(entry, f"sinks.{index}"))
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        names = [settings.name for settings in parsed]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"sinks: names must be unique; give each of {duplicates} a distinct name")
        self._sinks = parsed
        return self

    @property
    def sink_settings(self) -> list[SinkSettings]:
        return list(self._sinks)

    @model_validator(mode="after")
    def _unique_assets(self) -> Config:
        seen: dict[str, int] = {}
        for index, asset in enumerate(self.assets):
            if asset.id in seen:
                raise ValueError(f"assets.{index}: duplicate asset id {asset.id!r} (also assets.{seen[asset.id]}); "
                                 "give one of them a distinct name")
            seen[asset.id] = index
        return self

    def discovery(self, state: StateStore, catalog: Catalog) -> Discovery | None:
        """Discovery as configured (None without an ``inventory`` section), over ``state``'s register."""
        if self.inventory is None:
            return None
        override = self.rules.get(ROGUE_RULE, RuleOverrideConfig())
        return state.discovery(self.inventory, catalog, rogue_rule=override.enabled, rogue_severity=override.severity)

    def configured_checks(self) -> list[ConfiguredCheck]:
        return build_checks(self.checks)

    def overrides(self, catalog: Catalog) -> dict[str, RuleOverride]:
        unknown = sorted(set(self.rules) - set(catalog.rules))
        if unknown:
            raise ConfigError(f"rules: unknown rule ids {unknown} (see `connector rules`)")
        return {rule_id: RuleOverride(entry.enabled, entry.severity) for rule_id, entry in self.rules.items()}


def load_config(path: Path) -> Config:
    document = load_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping with at least an 'assets' list")
    try:
        config = Config.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from None
    base = path.parent
    updates: dict[str, Any] = {}
    if not config.state_dir.is_absolute():
        updates["state_dir"] = base / config.state_dir
    if config.mappings_dir is not None and not config.mappings_dir.is_absolute():
        updates["mappings_dir"] = base / config.mappings_dir
    if config.scan.ca_bundle is not None and not config.scan.ca_bundle.is_absolute():
        updates["scan"] = config.scan.model_copy(update={"ca_bundle": base / config.scan.ca_bundle})
    seeds = config.inventory.seeds_file if config.inventory is not None else None
    if config.inventory is not None and seeds is not None and not seeds.is_absolute():
        updates["inventory"] = config.inventory.model_copy(update={"seeds_file": base / seeds})
    config = config.model_copy(update=updates)
    try:
        config.configured_checks()  # settings errors surface at load, not at the first scan
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config
