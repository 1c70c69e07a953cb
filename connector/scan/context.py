"""What one scan run shares across its checks: settings, the clock, the trust store and memoised probers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from connector.core.clock import utc_now
from connector.core.limits import socket_budget
from connector.core.model import Asset
from connector.probes.dns import DnsClient, ResolverSettings
from connector.probes.endpoint import Endpoint
from connector.probes.guard import GuardSettings, OutboundGuard, Resolver
from connector.probes.http import SMALL_DOCUMENT, Fetched, HttpFetcher
from connector.probes.tls.prober import TlsProber
from connector.probes.tls.trust import TrustStore, load_trust_store
from connector.probes.web import Origin, WebProbe, asset_origins

SharedT = TypeVar("SharedT")


class ScanSettings(BaseModel):
    """How hard and how long to probe; shared by every check."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout: float = Field(default=5.0, gt=0, le=120, description="seconds per connection or request")
    check_timeout: float = Field(default=60.0, gt=0, le=3600, description="seconds for one check on one target")
    concurrency: int = Field(default=32, ge=1, le=1024, description="targets probed at once")
    connections_per_host: int = Field(default=3, ge=1, le=32, description="parallel connections to one endpoint")
    ca_bundle: Path | None = Field(default=None, description="PEM roots to trust instead of the system store")
    user_agent: str = "postern-connector (security posture scan)"
    dns: ResolverSettings = Field(default_factory=ResolverSettings,
                                  description="resolvers for every check; none: the system's, with /etc/hosts")
    outbound: GuardSettings = Field(default_factory=GuardSettings,
                                    description="internal ranges requests may reach beyond the assets' own")


class ScanContext:
    """Per-scan state shared by checks: settings, the clock, the trust store and memoised probers."""

    def __init__(self, settings: ScanSettings | None = None, now: datetime | None = None) -> None:
        self.settings = settings or ScanSettings()
        self.now = now or utc_now()
        self._shared: dict[tuple[str, Any], Any] = {}
        self._http: HttpFetcher | None = None
        self._dns: DnsClient | None = None
        self._origins: dict[str, frozenset[Origin]] = {}  # asset id -> where it answers
        self.released_tls_connections = 0
        # one budget for every probe socket of the scan, below the descriptor limit: see core.limits
        self.sockets = asyncio.Semaphore(socket_budget())
        self.resolver = Resolver(self.dns if self.settings.dns.nameservers else None, self.settings.connect_timeout)
        self.guard = OutboundGuard(self.resolver, self.settings.outbound)

    def configure(self, assets: Sequence[Asset]) -> None:
        """The assets of this scan: a redirect from one to another may be followed, anywhere else it may not."""
        self._origins = {asset.id: asset_origins(asset) for asset in assets}

    def shared(self, kind: str, key: tuple[Any, ...], factory: Callable[[], SharedT]) -> SharedT:
        """One instance per (kind, key) for the scan, so checks reuse each other's observations.

        Keys start with the asset id, so ``release`` can drop an asset's entries when its checks are done.
        """
        slot = (kind, key)
        if slot not in self._shared:
            self._shared[slot] = factory()
        value: SharedT = self._shared[slot]
        return value

    def tls_prober(self, asset: Asset, endpoint: Endpoint) -> TlsProber:
        return self.shared(
            "tls", (asset.id, endpoint),
            lambda: TlsProber(endpoint, self.resolver, self.settings.connect_timeout,
                              self.settings.connections_per_host, sockets=self.sockets),
        )

    @property
    def trust_store(self) -> TrustStore:
        return load_trust_store(self.settings.ca_bundle)

    @property
    def http(self) -> HttpFetcher:
        if self._http is None:
            self._http = HttpFetcher(
                timeout=self.settings.connect_timeout,
                ca_bundle=self.settings.ca_bundle,
                user_agent=self.settings.user_agent,
                guard=self.guard,
            )
        return self._http

    @property
    def dns(self) -> DnsClient:
        """Lookups through the configured resolvers, memoised for the whole scan (checks share domains)."""
        if self._dns is None:
            self._dns = DnsClient(self.settings.dns)
        return self._dns

    def web(self, asset: Asset) -> WebProbe:
        """The asset's pages, fetched once per scan for every check that reads them."""
        elsewhere = frozenset().union(*(origins for key, origins in self._origins.items() if key != asset.id))
        return self.shared("web", (asset.id,), lambda: WebProbe(asset, self.http, self.settings.connections_per_host,
                                                                  elsewhere))

    async def fetch_public(self, url: str) -> Fetched:
        """A URL a target named but that is no asset (an AIA issuer): guarded, so only public addresses or
        allowlisted ranges are reached, and only over HTTP(S); at most a small document is read."""
        return await self.http.get(url, limit=SMALL_DOCUMENT)

    def release(self, asset: Asset) -> None:
        """Drop what was memoised for an asset once all its checks are done, so long scans stay small."""
        for slot in [slot for slot in self._shared if isinstance(slot[1], tuple) and slot[1][:1] == (asset.id,)]:
            value = self._shared.pop(slot)
            if isinstance(value, TlsProber):
                self.released_tls_connections += value.connections
            if isinstance(value, TlsProber | WebProbe):
                value.cancel_pending()  # shared fetches outlive a timed-out check, never their asset

    def tls_connections(self) -> int:
        """TLS connections opened so far in this scan (for benchmarks and the connection budget)."""
        live = sum(value.connections for value in self._shared.values() if isinstance(value, TlsProber))
        return self.released_tls_connections + live

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        for value in self._shared.values():
            if isinstance(value, TlsProber | WebProbe):
                value.cancel_pending()
        await asyncio.sleep(0)
