"""One scan run, wired once: engine -> inventory -> publish. The CLI, the sidecar and the rescan action use it.

The finding ledger assesses each asset's findings (their episodes, the transitions since the last scan) and the
baselines its observations (what drifted); both are made durable through the publisher, and only then are the
ledger, the baselines and the scan recorded, so a crash re-runs what was not published instead of losing it, and
never records a transition or a drift nobody was told about.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from connector.core.catalog import Catalog
from connector.core.clock import utc_now
from connector.core.errors import ConfigError
from connector.core.events import Publisher, RescanResult
from connector.core.lifecycle import StateChange
from connector.core.model import Asset, AssetReport
from connector.delivery.pipeline import Pipeline
from connector.delivery.spool import SpoolError
from connector.inventory.assets import DISCOVERED
from connector.inventory.baselines import DriftSettings
from connector.inventory.discovery import Discovery
from connector.normalise import Normaliser
from connector.runtime.config import Config
from connector.runtime.state import StateStore
from connector.scan.context import ScanContext
from connector.scan.engine import ScanPlan, scan


@dataclass(frozen=True)
class Collected:
    """One asset's scan, with its episodes and what changed; ``not_spooled`` says why it could not be published
    (it runs again)."""

    report: AssetReport
    scan_id: str
    changes: list[StateChange] = field(default_factory=list)
    not_spooled: SpoolError | None = None


async def collect(
    plan: ScanPlan,
    catalog: Catalog,
    ctx: ScanContext,
    *,
    scan_id: str | Callable[[Asset], str],
    state: StateStore | None = None,
    publisher: Publisher | None = None,
    clock: Callable[[], datetime] = utc_now,
    drift: DriftSettings | None = None,
    discovery: Discovery | None = None,
) -> AsyncGenerator[Collected, None]:
    """Yield each asset as it is done: annotated, published (when a publisher is given) and recorded; ``drift``
    says which observation kinds are baselined (all by default)."""
    kinds = (drift or DriftSettings()).enabled
    reports = scan(plan, catalog, ctx, scan_id=scan_id)
    try:
        async for observed in reports:
            asset_scan_id = scan_id(observed.asset) if callable(scan_id) else scan_id
            found = await discovery.assess(observed, _resolver(ctx)) if discovery is not None else None
            scanned = found.report if found is not None and found.report is not None else observed
            assessment = state.findings.assess(scanned) if state else None
            report = AssetReport(scanned.asset, assessment.findings) if assessment else scanned
            baselines = state.baselines.assess(report, kinds) if state else None
            changes: list[StateChange] = [*(assessment.transitions if assessment else ()),
                                          *(baselines.drifts if baselines else ())]
            changes += found.changes if found is not None else []
            if publisher is not None:
                try:
                    await asyncio.to_thread(publisher.publish, report.findings, changes)
                except SpoolError as exc:
                    yield Collected(report, asset_scan_id, changes, exc)
                    continue
            if state is not None and assessment is not None and baselines is not None:
                state.findings.apply(assessment)
                state.baselines.apply(baselines)
                if discovery is not None and found is not None:
                    discovery.apply(found)
                finished = clock()
                state.assets.scanned(report.asset.id, finished)
                state.record_scan(asset_scan_id, report.asset.id, finished, len(report.findings))
            yield Collected(report, asset_scan_id, changes)
    finally:
        await reports.aclose()


def _resolver(ctx: ScanContext) -> Callable[[str], Awaitable[list[str]]]:
    """Discovery resolves names through the scan's one resolution path, and never connects to them."""
    return lambda name: ctx.resolver.addresses(name, 443)


def planned_assets(config: Config, state: StateStore | None) -> list[Asset]:
    """What a run scans: the configured assets, and the discovered ones when ``inventory.auto_scan`` allows it
    (only then are they assets of the scan, which the outbound guard lets requests reach)."""
    assets = list(config.assets)
    if state is not None and config.inventory is not None and config.inventory.auto_scan:
        configured = {asset.id for asset in assets}
        assets += [record.asset for record in state.assets.records()
                   if record.source == DISCOVERED and record.asset.id not in configured]
    return assets


def register_inventory(state: StateStore, config: Config, discovery: Discovery | None,
                       publish: Callable[[Sequence[StateChange]], None],
                       clock: Callable[[], datetime] = utc_now) -> list[StateChange]:
    """The configuration's assets into the register and the seed names into discovery, each kept only once
    ``publish`` has made their events durable; returns those events."""
    changes: list[StateChange] = list(state.sync_assets(config.assets, clock(), publish))
    if discovery is not None:
        seeded = discovery.assess_seeds(clock())
        if seeded.changes:
            publish(seeded.changes)
        discovery.apply(seeded)
        changes += seeded.changes
    return changes


def build_pipeline(config: Config, catalog: Catalog, normaliser: Normaliser, **backoff: float) -> Pipeline:
    """The configured normaliser -> spool -> shippers -> sinks pipeline."""
    return Pipeline(config.sink_settings, config.spool, config.state_dir, catalog, normaliser, **backoff)


class ConfiguredRescanner:
    """core.events.Rescanner over the configured assets and checks: the ``rescan`` action's way into the scanner.

    It refuses assets and checks that the configuration does not name (discovered assets count only with
    ``inventory.auto_scan``), so a callback can never make the connector scan a host nobody configured. Each
    rescan opens its own connection to the state store (the process already holds the directory's lock), so the
    finding episodes stay the sidecar's.
    """

    def __init__(self, config: Config, catalog: Catalog, publisher: Publisher) -> None:
        self.config = config
        self.catalog = catalog
        self.publisher = publisher
        self.checks = {configured.check.name: configured for configured in config.configured_checks()}
        self.overrides = config.overrides(catalog)

    def rescan(self, asset_id: str, check: str) -> RescanResult:
        if check not in self.checks:
            raise ConfigError(f"rescan: check {check!r} is not enabled (enabled: {sorted(self.checks)})")
        scan_id = f"rescan-{secrets.token_hex(8)}"
        state = StateStore(self.config.state_dir / "state.sqlite", exclusive=False)
        try:
            asset = next((asset for asset in planned_assets(self.config, state) if asset.id == asset_id), None)
            if asset is None:
                raise ConfigError(f"rescan: asset {asset_id!r} is not configured; only configured assets (and "
                                  "discovered ones with inventory.auto_scan) are scanned")
            return asyncio.run(self._run(ScanPlan([asset], [self.checks[check]], self.overrides), scan_id, state))
        finally:
            state.close()

    async def _run(self, plan: ScanPlan, scan_id: str, state: StateStore) -> RescanResult:
        statuses: dict[str, str] = {}
        # with discovery, so that a rogue asset the rescanned check shows is restated, not resolved by absence
        async for collected in collect(plan, self.catalog, ScanContext(self.config.scan), scan_id=scan_id,
                                       state=state, publisher=self.publisher, drift=self.config.drift,
                                       discovery=self.config.discovery(state, self.catalog)):
            if collected.not_spooled is not None:
                raise collected.not_spooled
            statuses |= {finding.fingerprint: finding.status.value for finding in collected.report.findings}
        return RescanResult(scan_id, statuses)
