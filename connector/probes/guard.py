"""The one outbound guard: where the connector may connect when a target, not the operator, chose the address.

A redirect, an AIA issuer URL or (later) a SOAR action's URL can name any host. Resolved addresses in link-local
(cloud metadata at 169.254.169.254 and fd00:ec2::254), loopback, private, CGNAT, multicast, reserved and
unspecified ranges are denied unless explicitly allowed, or unless the asset itself lives there. The check is on
the resolved IP, and the caller connects to that very IP (address pinning), so a name that re-resolves elsewhere
between the check and the connection (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

from connector.core.errors import ProbeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast; metadata endpoints never, whatever ipaddress thinks of their range."""
    return address.is_global and not address.is_multicast and address not in _METADATA


async def permitted_address(host: str, port: int, *, allow_private: bool = False,
                            own_addresses: Iterable[str] = ()) -> str:
    """The address to connect to for ``host``, or ProbeError(kind="denied") naming the refused address."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        candidates = [literal]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ProbeError(f"{host}: cannot resolve host name: {exc}", kind="dns") from None
        candidates = [ipaddress.ip_address(info[4][0]) for info in infos]
    own = {ipaddress.ip_address(address) for address in own_addresses}
    for address in candidates:
        if address in _METADATA and address not in own:
            continue
        if allow_private or address in own or is_public(address):
            return str(address)
    refused = ", ".join(sorted({str(address) for address in candidates}))
    raise ProbeError(f"{host} resolves to {refused}, which the outbound guard does not allow (not public; allow "
                     "private addresses explicitly if this is intended)", kind="denied")
