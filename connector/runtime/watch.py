"""The watch lane: a sentinel (scan/sentinel.py) for each watched asset every ``interval``, spread evenly, and the
full checks of an asset at once when its sentinel differs. This is what brings a change to the SIEM in seconds
instead of at the next scheduled scan.

Cost per watched asset and hour at the default 60 s interval: 60 sentinels of one TLS handshake, one HTTPS
request and three DNS queries, about 2 TCP connections, ~12 KB and 3 UDP exchanges each (bench/mttd.py
measures it), plus the full checks of the asset once per change.

The previous sentinel is replaced only after the full scan it started was published: a scan that could not be
delivered is started again by the next sentinel, so a change is never lost between the lane and the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from connector.core import metrics
from connector.core.clock import utc_now
from connector.core.model import Asset, Criticality
from connector.core.units import Duration
from connector.runtime.state import StateStore
from connector.scan.context import ScanContext, ScanSettings
from connector.scan.sentinel import Sentinel, observe

log = logging.getLogger(__name__)


class WatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval: Duration = Field(default=timedelta(seconds=60), description="each watched asset once per interval")
    criticality: list[Criticality] = Field(default_factory=lambda: [Criticality.CRITICAL],
                                           description="the assets watched, by criticality")
    sentinel_concurrency: int = Field(default=32, ge=1, le=1024, description="sentinels in flight at once")
    rescan_concurrency: int = Field(default=8, ge=1, le=256,
                                    description="full scans started by a changed sentinel, at once")


# starts the full checks of an asset; returns whether their events are durable
Rescan = Callable[[Asset, list[str]], Awaitable[bool]]


class WatchLane:
    def __init__(self, settings: WatchSettings, scan: ScanSettings, state: StateStore, assets: Sequence[Asset],
                 rescan: Rescan, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.scan = scan
        self.state = state
        self.watched = [asset for asset in assets if asset.criticality in settings.criticality]
        self.rescan = rescan
        self.clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Start a sentinel of each watched asset every ``interval / len(watched)``, round-robin, until ``stop``.

        Each sentinel and the full checks it starts run as a task of their own, so a slow handshake or a rescan
        delays neither the other assets' sentinels nor the schedule: a lane that waited for them fell minutes
        behind on a busy estate. An asset whose last sentinel (or rescan) is still running skips its turn."""
        if not self.settings.enabled or not self.watched:
            return
        gap = self.settings.interval.total_seconds() / len(self.watched)
        log.info("watch lane started", extra={"assets": len(self.watched), "gap_seconds": round(gap, 3)})
        sentinels = asyncio.Semaphore(self.settings.sentinel_concurrency)
        rescans = asyncio.Semaphore(self.settings.rescan_concurrency)
        busy: dict[str, asyncio.Task[None]] = {}
        next_at = time.monotonic()
        try:
            while not stop.is_set():
                for asset in self.watched:
                    if stop.is_set():
                        break
                    if asset.id not in busy:
                        busy[asset.id] = asyncio.create_task(self._turn(asset, sentinels, rescans, busy))
                    next_at += gap
                    delay = next_at - time.monotonic()
                    if delay < 0:  # behind schedule (a stalled loop): go on from now, don't burst
                        next_at = time.monotonic()
                        continue
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            for task in list(busy.values()):
                task.cancel()
            await asyncio.gather(*busy.values(), return_exceptions=True)

    async def _turn(self, asset: Asset, sentinels: asyncio.Semaphore, rescans: asyncio.Semaphore,
                    busy: dict[str, asyncio.Task[None]]) -> None:
        try:
            await self.check(asset, sentinels, rescans)
        except Exception:
            log.exception("watch lane: sentinel failed", extra={"asset": asset.id})
        finally:
            busy.pop(asset.id, None)

    async def check(self, asset: Asset, sentinels: asyncio.Semaphore, rescans: asyncio.Semaphore) -> Sentinel:
        """One sentinel of ``asset``; a difference from the last one starts its full checks."""
        async with sentinels:
            ctx = ScanContext(self.scan, now=self.clock())
            ctx.configure([asset])
            try:
                sentinel = await asyncio.wait_for(observe(asset, ctx), timeout=self.scan.connect_timeout * 3)
            finally:
                await ctx.aclose()
        observed_at = self.clock()
        before = self.state.sentinel(asset.id)
        changed = sentinel.differences(before) if before is not None else []
        if sentinel.unobserved:
            metrics.WATCH_SENTINELS.labels("unobserved").inc()
            log.info("watch lane: part of the sentinel not observed",
                     extra={"asset": asset.id, "unobserved": sentinel.unobserved})
        if not changed:
            metrics.WATCH_SENTINELS.labels("same").inc()
            self.state.record_sentinel(asset.id, _merged(sentinel, before), observed_at)
            # what the sentinel saw unchanged was still good now: a later drift's bound starts here
            self.state.baselines.confirm(asset.id, _confirmed_kinds(asset, sentinel), observed_at)
            return sentinel
        metrics.WATCH_SENTINELS.labels("changed").inc()
        log.info("watch lane: change seen, scanning the asset now", extra={"asset": asset.id, "changed": changed})
        async with rescans:
            rescanned = await self.rescan(asset, changed)
        if rescanned:
            self.state.record_sentinel(asset.id, _merged(sentinel, before), observed_at)
        return sentinel


def _confirmed_kinds(asset: Asset, sentinel: Sentinel) -> list[str]:
    """The drift kinds (inventory/baselines.py) whose every baseline this sentinel saw: only those may have their
    last good observation moved, or a drift's detection bound would look narrower than it was. DNS is never among
    them: the sentinel asks for A, AAAA and CNAME, the baselines hold MX and NS too."""
    kinds = []
    if sentinel.certificate is not None and len(asset.ports) == 1:
        kinds.append("certificate")
    if sentinel.route is not None and len(asset.routes) == 1:
        kinds.append("headers")
        if asset.http_port is None:  # else the plain-HTTP chain is a redirects baseline the sentinel did not see
            kinds.append("redirects")
    return kinds


def _merged(sentinel: Sentinel, before: Sentinel | None) -> Sentinel:
    """The sentinel to remember: parts not observed this time keep their last known value."""
    if before is None or not sentinel.unobserved:
        return sentinel
    return Sentinel(sentinel.certificate if sentinel.certificate is not None else before.certificate,
                    sentinel.protocol if sentinel.protocol is not None else before.protocol,
                    sentinel.route if sentinel.route is not None else before.route,
                    sentinel.dns if sentinel.dns is not None else before.dns, sentinel.unobserved)
