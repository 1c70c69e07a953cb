"""Where the connector may connect: one resolution path for every probe, and one guard on the addresses it yields.

Every check resolves names the same way: through the configured ``scan.dns`` nameservers when there are any (so
a split-horizon or test zone answers the web and TLS checks too), otherwise through the system resolver, which
honours /etc/hosts. A pinned address (the asset's ``address``, like ``curl --resolve``) wins over both.

The guard judges the *resolved* address, and callers connect to exactly that address (keeping the name for
Host and SNI), so a name that resolves to a public address when checked and to 169.254.169.254 when connected
(DNS rebinding) cannot slip through. It refuses link-local (cloud metadata included), loopback, private, CGNAT,
multicast, reserved and unspecified ranges, unless the asset itself lives there or the range is allowlisted.
Shared with the SOAR actions, which call out to URLs they are handed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork

from connector.core.errors import ProbeError
from connector.probes.dns import DnsClient

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges an outside target has no business sending us to, named for the refusal message. IPv4-mapped IPv6
# addresses are unwrapped before the lookup, so ::ffff:127.0.0.1 is loopback too.
DENIED: tuple[tuple[str, str], ...] = (
    ("169.254.169.254/32", "cloud metadata"),
    ("fd00:ec2::254/128", "cloud metadata"),
    ("0.0.0.0/8", "unspecified"),
    ("::/128", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("fc00::/7", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("192.0.0.0/24", "reserved"),
    ("198.18.0.0/15", "reserved"),
    ("240.0.0.0/4", "reserved"),
    ("64:ff9b:1::/48", "reserved"),
)
_DENIED = tuple((ipaddress.ip_network(network), label) for network, label in DENIED)


class GuardSettings(BaseModel):
    """Internal ranges outbound requests may still reach (for example a private PKI's AIA server)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: tuple[IPvAnyNetwork, ...] = Field(
        default=(), description="networks (CIDR) exempt from the outbound guard, e.g. 10.20.0.0/16")


class OutboundDenied(ProbeError):
    """The address a request would go to is internal and neither the asset's own nor allowlisted."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="denied")


def parse_ip(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Resolver:
    """The one resolution path: the configured nameservers when given, otherwise the system's (with /etc/hosts)."""

    def __init__(self, dns: DnsClient | None, timeout: float) -> None:
        self._dns = dns
        self._timeout = timeout

    @property
    def source(self) -> str:
        """How names are resolved, for evidence."""
        return "nameservers " + ", ".join(self._dns.nameservers) if self._dns is not None else "system resolver"

    async def addresses(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, in preference order; ProbeError(kind="dns") when there is none."""
        if parse_ip(host) is not None:
            return [host.strip("[]")]
        try:
            async with asyncio.timeout(self._timeout):
                found = await (self._dns.addresses(host) if self._dns is not None else self._system(host, port))
        except TimeoutError as exc:
            raise ProbeError(f"{host}: name resolution timed out after {self._timeout:g}s", kind="dns") from exc
        except socket.gaierror as exc:
            if exc.errno in _NO_SUCH_NAME:
                raise NameNotFound(f"{host}: cannot resolve host name: {exc.strerror}") from exc
            raise ProbeError(f"{host}: cannot resolve host name: {exc.strerror}", kind="dns") from exc
        if not found:
            raise NameNotFound(f"{host}: host name has no addresses ({self.source})")
        return list(dict.fromkeys(found))

    @staticmethod
    async def _system(host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]


class NameNotFound(ProbeError):
    """The name has no address (NXDOMAIN, no A or AAAA record): an answer, where a timeout or SERVFAIL is not."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="dns")


# getaddrinfo's answers that the name has no address, as against a resolver it could not ask
_NO_SUCH_NAME = {socket.EAI_NONAME} | ({socket.EAI_NODATA} if hasattr(socket, "EAI_NODATA") else set())


class AddressPolicy:
    """Which resolved addresses may be reached: the judgement the scan's probes and the SOAR actions share.

    ``refusal`` ends the message of a refusal, telling where to allow the range: the scan and each action have
    their own allowlist."""

    def __init__(self, settings: GuardSettings | None = None, *,
                 refusal: str = "not the asset's address and not allowlisted (scan.outbound.allow)") -> None:
        self._allow = (settings or GuardSettings()).allow
        self._refusal = refusal

    def denial(self, address: str, own: Collection[str] = ()) -> str | None:
        """Why ``address`` may not be reached (the range's name), or None when it may."""
        ip = parse_ip(address)
        if ip is None:
            return "not an IP address"
        if str(ip) in {str(parse_ip(item)) for item in own}:
            return None
        if any(ip.version == network.version and ip in network for network in self._allow):
            return None
        for network, label in _DENIED:
            if ip.version == network.version and ip in network:
                return label
        return None

    def check(self, host: str, addresses: list[str], own: Collection[str] = ()) -> str:
        """The first of ``host``'s resolved ``addresses``, once all of them pass; OutboundDenied otherwise."""
        refused = [(address, reason) for address in addresses if (reason := self.denial(address, own))]
        if refused:
            # One internal answer is enough to refuse: a client picking among the answers may pick that one.
            if parse_ip(host) is not None:
                what = f"{host} is {refused[0][1]}"
            else:
                what = f"{host} resolves to " + ", ".join(f"{address} ({reason})" for address, reason in refused)
            raise OutboundDenied(f"{what}: {self._refusal}")
        return addresses[0]


class OutboundGuard(AddressPolicy):
    """Resolve once, check every address, hand back the one to connect to."""

    def __init__(self, resolver: Resolver, settings: GuardSettings | None = None) -> None:
        super().__init__(settings)
        self.resolver = resolver

    async def address(self, host: str, port: int, *, own: Collection[str] = (), lives_there: bool = False) -> str:
        """The address to connect to for ``host``. ``lives_there``: the asset itself is ``host``, so wherever it
        resolves is where it lives; ``own``: addresses an asset is configured or known to live at."""
        addresses = await self.resolver.addresses(host, port)
        if lives_there:
            return addresses[0]
        return self.check(host, addresses, own)
