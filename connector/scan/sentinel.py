"""The watch lane's sentinel: a cheap look at an asset that tells whether anything a full scan judges has moved.

One TLS handshake (the leaf certificate's fingerprint and the protocol), one request to the first key route
without following redirects (status, redirect target, the set of response header names and the security
headers' values) and the DNS answers of the name. Three to five packets' worth of work instead of a full scan's
dozens of connections; a difference starts the full checks of that asset at once.

A part that could not be observed (a timeout, a refused connection) is lost visibility, not a change: only parts
observed in both sentinels are compared, so a flaky network does not start full scans.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from connector.core.errors import ProbeError
from connector.core.model import Asset, Target
from connector.probes.endpoint import endpoint_of
from connector.scan.context import ScanContext

# response headers whose values matter for posture; for the others, only presence is compared (a Date or an
# ETag changes on every request); of cookies, only the names
SECURITY_HEADERS = ("strict-transport-security", "content-security-policy", "x-frame-options",
                    "x-content-type-options", "referrer-policy", "permissions-policy",
                    "cross-origin-opener-policy", "cross-origin-resource-policy", "cross-origin-embedder-policy",
                    "access-control-allow-origin")
VOLATILE_HEADERS = frozenset({"date", "etag", "age", "expires", "last-modified", "content-length", "set-cookie",
                              "x-request-id", "x-amz-cf-id", "cf-ray", "server-timing", "x-runtime", "via",
                              "report-to", "nel", "content-security-policy-report-only"})
DNS_TYPES = ("A", "AAAA", "CNAME")


@dataclass(frozen=True)
class Sentinel:
    """Each part is None when it could not be observed this time (the reason is in ``unobserved``)."""

    certificate: str | None  # SHA-256 of the leaf certificate
    protocol: str | None
    route: dict[str, Any] | None  # status, location, header names, security header values
    dns: dict[str, list[str]] | None
    unobserved: dict[str, str]

    def parts(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "unobserved"}

    def differences(self, before: Sentinel) -> list[str]:
        """The parts observed both times that differ."""
        now, then = self.parts(), before.parts()
        return [name for name in now if now[name] is not None and then[name] is not None and now[name] != then[name]]

    @property
    def digest(self) -> str:
        return hashlib.sha256(repr(sorted(self.parts().items())).encode()).hexdigest()[:16]


async def observe(asset: Asset, ctx: ScanContext) -> Sentinel:
    """The asset's sentinel; never raises for what the asset does (that is an unobserved part)."""
    unobserved: dict[str, str] = {}
    tls, route, answers = await asyncio.gather(_tls(asset, ctx), _route(asset, ctx), _dns(asset, ctx),
                                               return_exceptions=True)
    certificate = protocol = None
    if isinstance(tls, BaseException):
        unobserved["tls"] = _reason(tls)
    else:
        certificate, protocol = tls
    if isinstance(route, BaseException):
        unobserved["route"] = _reason(route)
        route = None
    if isinstance(answers, BaseException):
        unobserved["dns"] = _reason(answers)
        answers = None
    return Sentinel(certificate, protocol, route, answers, unobserved)


async def _tls(asset: Asset, ctx: ScanContext) -> tuple[str, str]:
    handshake = await ctx.tls_prober(asset, endpoint_of(Target(asset, asset.https_port))).full_handshake()
    if not handshake.certificates:
        raise ProbeError(f"{asset.host}: the server sent no certificate")
    return hashlib.sha256(handshake.certificates[0]).hexdigest(), handshake.version


async def _route(asset: Asset, ctx: ScanContext) -> dict[str, Any]:
    route = asset.routes[0] if asset.routes else "/"
    page = await ctx.web(asset).page(route, follow=False)
    names = sorted({name.lower() for name in page.headers} - VOLATILE_HEADERS)
    values = {name: sorted(page.header_values(name)) for name in SECURITY_HEADERS if page.header_values(name)}
    cookies = sorted(value.split("=", 1)[0] for value in page.header_values("set-cookie"))
    return {"status": page.status, "location": page.headers.get("location"), "headers": names,
            "security_headers": values, "cookies": cookies}


async def _dns(asset: Asset, ctx: ScanContext) -> dict[str, list[str]] | None:
    if asset.is_ip:
        return None
    answers = await asyncio.gather(*(ctx.dns.lookup(asset.host, rdtype, follow=False) for rdtype in DNS_TYPES))
    return {rdtype: sorted(answer.data) for rdtype, answer in zip(DNS_TYPES, answers, strict=True)}


def _reason(error: BaseException) -> str:
    if isinstance(error, ProbeError | OSError | TimeoutError):
        return str(error) or type(error).__name__
    raise error  # a bug, not the asset's doing: let the lane log it
