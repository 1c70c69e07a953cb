"""The YAML configuration of the sidecar (and optional for one-shot scans): assets, checks, schedule, sinks.

Validation collects every problem with its location in the file, so ``connector validate`` can list them all.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from connector.catalog import Catalog, format_validation_error
from connector.checks import AnyCheck, ScanSettings, available_checks
from connector.config_types import ByteSize, Duration
from connector.engine import ConfiguredCheck, RuleOverride
from connector.errors import ConfigError
from connector.model import Asset, Criticality, Severity
from connector.sinks import parse_sink
from connector.sinks.base import SinkSettings
from connector.spool import OverflowPolicy
from connector.yamlio import load_yaml


class ScheduleConfig(BaseModel):
    """How often each asset is scanned, by criticality, with jitter so scans do not bunch up."""

    model_config = ConfigDict(extra="forbid")

    intervals: dict[Criticality, Duration] = Field(default_factory=lambda: {
        Criticality.CRITICAL: timedelta(days=1),
        Criticality.HIGH: timedelta(days=3),
        Criticality.MEDIUM: timedelta(days=7),
        Criticality.LOW: timedelta(days=7),
    })
    jitter: float = Field(default=0.1, ge=0, le=0.5, description="fraction of the interval, applied +/-")
    startup_spread: Duration = Field(default=timedelta(minutes=5), description="first scans spread over this")

    @model_validator(mode="after")
    def _all_criticalities(self) -> ScheduleConfig:
        for level in Criticality:
            interval = self.intervals.get(level)
            if interval is None:
                raise ValueError(f"intervals: no interval for criticality {level.value!r}")
            if interval < timedelta(minutes=1):
                raise ValueError(f"intervals.{level.value}: must be at least one minute")
        return self


class RuleOverrideConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    severity: Severity | None = None


class SpoolConfig(BaseModel):
    """Bounds and durability of the on-disk spool (state_dir/spool.sqlite)."""

    model_config = ConfigDict(extra="forbid")

    max_events: int = Field(default=5_000_000, ge=100)
    max_bytes: ByteSize = Field(default=2 * 1024**3, ge=1024 * 1024)
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    block_timeout: Duration = Field(default=timedelta(minutes=10),
                                    description="overflow=block: how long a scan waits for room before giving up")
    max_dead_letters: int = Field(default=100_000, ge=1)
    fsync: bool = Field(default=False, description="fsync every commit: survives power loss, not just crashes")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assets: list[Asset] = Field(min_length=1)
    scan: ScanSettings = ScanSettings()
    checks: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                              description="per-check settings; {enabled: false} turns one off")
    rules: dict[str, RuleOverrideConfig] = Field(default_factory=dict)
    schedule: ScheduleConfig = ScheduleConfig()
    sinks: list[dict[str, Any]] = Field(default_factory=list)
    spool: SpoolConfig = SpoolConfig()
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="serve Prometheus metrics here")
    metrics_address: str = Field(default="127.0.0.1", description="0.0.0.0 to let a cluster scraper reach it")
    state_dir: Path = Path("connector-state")
    shutdown_grace: Duration = Field(default=timedelta(seconds=10), description="on SIGTERM, wait this long")
    mappings_dir: Path | None = None
    observer_name: str | None = None

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

    def configured_checks(self) -> list[ConfiguredCheck]:
        return build_checks(self.checks)

    def overrides(self, catalog: Catalog) -> dict[str, RuleOverride]:
        unknown = sorted(set(self.rules) - set(catalog.rules))
        if unknown:
            raise ConfigError(f"rules: unknown rule ids {unknown} (see `connector rules`)")
        return {rule_id: RuleOverride(entry.enabled, entry.severity) for rule_id, entry in self.rules.items()}


def build_checks(settings: dict[str, dict[str, Any]], only: list[str] | None = None) -> list[ConfiguredCheck]:
    """The enabled checks with their validated settings; ``only`` narrows to named checks (CLI --checks)."""
    checks = available_checks()
    unknown = sorted(set(settings) - set(checks)) + sorted(set(only or ()) - set(checks))
    if unknown:
        raise ConfigError(f"checks: unknown checks {unknown} (available: {sorted(checks)})")
    configured = []
    for name, check in checks.items():
        entry = dict(settings.get(name) or {})
        enabled = entry.pop("enabled", True)
        if only is not None and name not in only:
            continue
        if enabled is not True and only is None:
            continue
        configured.append(ConfiguredCheck(check, _check_settings(check, entry)))
    return configured


def _check_settings(check: AnyCheck, entry: dict[str, Any]) -> BaseModel:
    try:
        return check.settings_model.model_validate(entry)
    except ValidationError as exc:
        raise ConfigError(f"checks.{check.name}: {format_validation_error(exc)}") from None


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
    config = config.model_copy(update=updates)
    try:
        config.configured_checks()  # settings errors surface at load, not at the first scan
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config
