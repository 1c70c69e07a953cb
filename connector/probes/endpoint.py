"""Where to connect: a name (for SNI, Host and certificate matching) and, optionally, a pinned address."""

from __future__ import annotations

from dataclasses import dataclass

from connector.core.model import Target
from connector.probes.guard import Resolver


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    address: str | None = None  # connect here instead of resolving ``host`` (like curl --resolve)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def resolve(self, resolver: Resolver) -> tuple[str, int]:
        """The address probes connect to: the pinned one, else the first that the scan's resolver gives."""
        if self.address:
            return (self.address, self.port)
        return ((await resolver.addresses(self.host, self.port))[0], self.port)


def endpoint_of(target: Target, port: int | None = None) -> Endpoint:
    """Where to connect for a target: its own port (or ``port``), else the asset's HTTPS port."""
    chosen = port if port is not None else target.port
    asset = target.asset
    return Endpoint(asset.host, chosen if chosen is not None else asset.https_port, asset.address)
