"""Where to connect: a name (for SNI, Host and certificate matching) and, optionally, a pinned address."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from connector.core.errors import ProbeError
from connector.core.model import Target


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    address: str | None = None  # connect here instead of resolving ``host`` (like curl --resolve)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def resolve(self, within: float) -> tuple[str, int]:
        if self.address:
            return (self.address, self.port)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(within):
                infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise ProbeError(f"{self}: name resolution timed out after {within:g}s", kind="dns") from exc
        except socket.gaierror as exc:
            raise ProbeError(f"{self}: cannot resolve host name: {exc.strerror}", kind="dns") from exc
        if not infos:
            raise ProbeError(f"{self}: host name has no addresses", kind="dns")
        address = infos[0][4]
        return (str(address[0]), int(address[1]))


def endpoint_of(target: Target, port: int | None = None) -> Endpoint:
    """Where to connect for a target: its own port (or ``port``), else the asset's HTTPS port."""
    chosen = port if port is not None else target.port
    asset = target.asset
    return Endpoint(asset.host, chosen if chosen is not None else asset.https_port, asset.address)
