"""The long-running collector: scan assets when due, write their events, stop cleanly on SIGTERM.

An asset's slot is marked complete only after its events are durably written, so a crash re-runs the slot
(with the same scan id, hence the same event ids) instead of losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import datetime

from connector.core.catalog import Catalog
from connector.core.clock import utc_now
from connector.core.errors import ConnectorError
from connector.core.metrics import ASSETS_UNFINISHED
from connector.core.model import Asset
from connector.normalise import Normaliser, change_action
from connector.runtime.collector import build_pipeline, collect, planned_assets, register_inventory
from connector.runtime.config import Config
from connector.runtime.kpis import due_digests, measurements
from connector.runtime.scheduler import next_slot, scan_id
from connector.runtime.state import StateStore
from connector.runtime.watch import WatchLane
from connector.scan.context import ScanContext
from connector.scan.engine import ScanPlan

log = logging.getLogger(__name__)

MAX_SLEEP = 60.0


class Sidecar:
    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        normaliser: Normaliser,
        state: StateStore,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.normaliser = normaliser
        self.state = state
        self.clock = clock
        self.checks = config.configured_checks()
        self.overrides = config.overrides(catalog)
        self.pipeline = build_pipeline(config, catalog, normaliser)
        self.discovery = config.discovery(state, catalog)
        self.started_at = clock()
        self.scans_completed = 0
        self.unspooled = 0  # assets whose findings could not be spooled; their slots run again
        self.unfinished = 0  # assets whose scan was cut short (stop, crash); their slots run again
        self.in_flight: set[str] = set()  # assets being scanned: the watch lane does not scan them twice
        self.watch = WatchLane(config.watch, config.scan, state, config.assets, self.rescan_now, clock=clock)

    def due(self, now: datetime) -> tuple[dict[Asset, datetime], datetime | None]:
        """Assets due now with their slots, and the earliest future slot."""
        due: dict[Asset, datetime] = {}
        upcoming: datetime | None = None
        for asset in planned_assets(self.config, self.state):
            slot = next_slot(asset, self.config.schedule, self.state.slot(asset.id), self.started_at)
            if slot <= now:
                due[asset] = slot
            elif upcoming is None or slot < upcoming:
                upcoming = slot
        return due, upcoming

    async def run(self, stop: asyncio.Event, once: bool = False) -> None:
        log.info("sidecar started",
                 extra={"assets": len(self.config.assets), "checks": [c.check.name for c in self.checks],
                        "sinks": [sink.name for sink in self.pipeline.sinks]})
        self.pipeline.start()
        inventory = register_inventory(self.state, self.config, self.discovery,
                                       lambda changes: self.pipeline.publish([], changes), self.clock)
        if inventory:
            log.info("inventory changed", extra={"changes": [change_action(change) for change in inventory][:50]})
        watching = None if once else asyncio.create_task(self.watch.run(stop))
        try:
            await self._schedule(stop, once)
        finally:
            if watching is not None:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
        log.info("sidecar stopped", extra={"scans_completed": self.scans_completed})

    async def _schedule(self, stop: asyncio.Event, once: bool) -> None:
        while not stop.is_set():
            now = self.clock()
            if once:
                due = {asset: now for asset in planned_assets(self.config, self.state)}
                upcoming = None
            else:
                due, upcoming = self.due(now)
            failures_before = self.unspooled + self.unfinished
            if due:
                await self._scan(due, stop)
                self._publish_kpis()
            self._publish_digests()
            if once:
                break
            wait = MAX_SLEEP
            if upcoming is not None and self.unspooled + self.unfinished == failures_before:
                wait = min(MAX_SLEEP, max(0.5, (upcoming - self.clock()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    def _publish_kpis(self) -> None:
        """After each scan cycle, the KPIs of every scope as metric events (and Prometheus gauges)."""
        try:
            self.pipeline.publish([], measurements(self.config, self.state, self.catalog, self.clock()))
        except ConnectorError as exc:  # the spool is full or failing: the next cycle publishes fresh figures
            log.warning("KPI metric events not spooled; the next cycle publishes fresh ones: %s", exc)

    def _publish_digests(self) -> None:
        """Each owner's digest once a day (and week) has ended; a period is marked done only once spooled."""
        for period, end, digests in due_digests(self.config, self.state, self.clock()):
            try:
                self.pipeline.publish([], digests)
            except ConnectorError as exc:
                log.warning("digests not spooled; tried again on the next loop: %s", exc, extra={"period": period})
                return
            self.state.record_digest(period, end)
            if digests:
                log.info("digests published", extra={"period": period, "owners": len(digests)})

    async def rescan_now(self, asset: Asset, changed: list[str]) -> bool:
        """The watch lane saw ``changed``: every check of the asset, now, outside its schedule."""
        if asset.id in self.in_flight:
            return False  # a scan of it is running, maybe begun before the change: the next sentinel tries again
        self.in_flight.add(asset.id)
        try:
            plan = ScanPlan([asset], self.checks, self.overrides)
            watch_id = f"watch-{self.clock():%Y%m%dT%H%M%S%f}"
            runs = collect(plan, self.catalog, ScanContext(self.config.scan, now=self.clock()), scan_id=watch_id,
                           state=self.state, publisher=self.pipeline, clock=self.clock, drift=self.config.drift)
            try:
                async for run in runs:
                    if run.not_spooled is not None:
                        log.error("watch scan not spooled; the next sentinel starts it again: %s", run.not_spooled,
                                  extra={"asset": asset.id})
                        return False
                    self.scans_completed += 1
                    log.info("asset scanned on change", extra={"asset": asset.id, "changed": changed,
                                                               "changes": len(run.changes)})
            finally:
                await runs.aclose()
            return True
        finally:
            self.in_flight.discard(asset.id)

    async def _scan(self, due: dict[Asset, datetime], stop: asyncio.Event) -> None:
        """Scan the due assets; on stop, give in-flight assets ``shutdown_grace`` to finish, then cancel them."""
        for asset, slot in due.items():
            self.state.record_slot(asset.id, slot, completed=False)
        finished: set[str] = set()
        consumer = asyncio.create_task(self._consume(due, finished))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not consumer.done():
                grace = self.config.shutdown_grace.total_seconds()
                log.info("stop requested: waiting for in-flight assets", extra={"grace_seconds": grace})
                done, _ = await asyncio.wait({consumer}, timeout=grace)
                if not done:
                    self.pipeline.stopping.set()  # a publish waiting for spool room gives up; its slot re-runs
                    consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
        except Exception:
            # a scan that crashed must not stop the collector: what it did not finish is logged and runs again
            log.exception("scan failed", extra={"assets": len(due) - len(finished)})
        finally:
            stopper.cancel()
            self._count_unfinished(due, finished)

    def _count_unfinished(self, due: dict[Asset, datetime], finished: set[str]) -> None:
        unfinished = sorted(asset.id for asset in due if asset.id not in finished)
        for asset_id in unfinished:
            log.warning("asset not scanned to the end; its slot runs again", extra={"asset": asset_id})
        self.unfinished += len(unfinished)
        ASSETS_UNFINISHED.inc(len(unfinished))

    async def _consume(self, due: dict[Asset, datetime], finished: set[str]) -> None:
        self.in_flight |= {asset.id for asset in due}
        try:
            await self._collect(due, finished)
        finally:
            self.in_flight -= {asset.id for asset in due}

    async def _collect(self, due: dict[Asset, datetime], finished: set[str]) -> None:
        ctx = ScanContext(self.config.scan, now=self.clock())
        plan = ScanPlan(list(due), self.checks, self.overrides)
        runs = collect(plan, self.catalog, ctx, scan_id=lambda asset: scan_id(asset, due[asset]), state=self.state,
                       publisher=self.pipeline, clock=self.clock, drift=self.config.drift, discovery=self.discovery)
        try:
            async for run in runs:
                asset = run.report.asset
                if run.not_spooled is not None:
                    finished.add(asset.id)  # counted as unspooled, not as unfinished
                    self.unspooled += 1
                    log.error("findings not spooled; the asset is scanned again later: %s", run.not_spooled,
                              extra={"asset": asset.id})
                    continue
                # durable in the spool before the slot is marked done: a crash re-runs the slot, never loses it
                self.state.record_slot(asset.id, due[asset], completed=True)
                finished.add(asset.id)
                self.scans_completed += 1
                failing = sum(1 for finding in run.report.findings if finding.status.value == "fail")
                log.info("asset scanned", extra={"asset": asset.id, "findings": len(run.report.findings),
                                                 "failing": failing})
        finally:
            await runs.aclose()

    def close(self) -> None:
        """Stop the shippers: the batch in flight stays in the spool and is sent again on the next start."""
        self.pipeline.stop(self.config.shutdown_grace.total_seconds())


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

