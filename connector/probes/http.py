"""HTTP fetching for checks: one request at a time, no automatic redirects, optional address pinning.

Checks judge redirects hop by hop, so redirects are never followed here. Every request is pinned: to a configured
address, or to the one the outbound guard resolved and checked (so a rebinding name cannot change it between the
check and the connection), keeping the real name for Host, SNI and certificate verification (``curl --resolve``).

What a target can make us hold is bounded by design, not by a timeout: the body is read raw and decompressed here,
a bounded piece at a time, and reading stops at ``limit`` decoded bytes, so a decompression bomb costs at most the
limit (httpx's own decoder inflates each received chunk whole: 64 KiB of a double-gzip bomb is gigabytes). Headers
are bounded by h11 (16 KiB in all). The whole request (connect, TLS, headers, body) runs under one deadline,
``timeout``, so a server that drips a byte a second cannot hold a check longer than that.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from connector.core.errors import ProbeError
from connector.probes.guard import OutboundGuard

MAX_BODY = 2 * 1024 * 1024  # pages larger than this are judged on their first 2 MiB
SMALL_DOCUMENT = 64 * 1024  # security.txt, MTA-STS policies, AIA issuers: anything larger is not what we asked for
_PIECE = 64 * 1024  # decompressed per step, so no single step can inflate beyond it
_ACCEPT_ENCODING = "gzip, deflate"  # what we can decode within bounds; a server sending anything else is judged raw


@dataclass(frozen=True)
class Fetched:
    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool = False  # the body went on past the limit; checks judge its first ``limit`` bytes
    address: str | None = None  # where the request went, as resolved (or pinned)

    def header_values(self, name: str) -> list[str]:
        return self.headers.get_list(name)

    @property
    def location(self) -> str | None:
        value: str | None = self.headers.get("location")
        return value

    @property
    def is_redirect(self) -> bool:
        return self.status in (301, 302, 303, 307, 308) and bool(self.location)


class TlsVerificationError(ProbeError):
    """The server's certificate failed verification; the unverified response may still be inspected."""


class TlsHandshakeError(ProbeError):
    """Something listens and speaks TLS, but a standard client cannot complete a handshake with it."""


class HttpFetcher:
    """Requests go to an address resolved and checked by ``guard``, never to one httpx resolves by itself."""

    def __init__(self, timeout: float, ca_bundle: Path | None, user_agent: str, guard: OutboundGuard) -> None:
        self.guard = guard
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        self._user_agent = user_agent
        self._clients: dict[bool, httpx.AsyncClient] = {}

    def client(self, verify: bool) -> httpx.AsyncClient:
        if verify not in self._clients:
            if verify:
                context = ssl.create_default_context(cafile=str(self._ca_bundle) if self._ca_bundle else None)
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._clients[verify] = httpx.AsyncClient(
                verify=context,
                timeout=httpx.Timeout(self._timeout),
                follow_redirects=False,
                headers={"User-Agent": self._user_agent},
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                event_hooks={"response": [_hide_foreign_location]},
            )
        return self._clients[verify]

    async def get(
        self, url: str, *, address: str | None = None, verify: bool = True, headers: dict[str, str] | None = None,
        method: str = "GET", asset_host: bool = False, limit: int = MAX_BODY,
    ) -> Fetched:
        """Request ``url`` (GET unless told); TlsVerificationError for a bad certificate, ProbeError otherwise.

        ``address`` pins the connection (the caller vouches for it); otherwise the host is resolved and checked by
        the guard, with ``asset_host`` telling that it is the asset's own name, so wherever it lives is allowed.
        """
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https"):
            raise ProbeError(f"{url}: only http and https URLs are fetched", kind="protocol")
        request_url, extensions = url, {}
        headers = {"Accept-Encoding": _ACCEPT_ENCODING, **(headers or {})}
        if not address:
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError as exc:
                raise ProbeError(f"{url}: {exc}", kind="protocol") from None
            address = await self.guard.address(host, port, lives_there=asset_host)
        if address:
            netloc = f"[{address}]" if ":" in address else address
            if parts.port:
                netloc += f":{parts.port}"
            request_url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
            extensions["sni_hostname"] = host
        client = self.client(verify)
        try:
            async with asyncio.timeout(self._timeout):
                request = client.build_request(method, request_url, headers=headers, extensions=extensions)
                response = await client.send(request, stream=True)
                if FOREIGN_LOCATION in response.extensions:
                    response.headers["location"] = response.extensions[FOREIGN_LOCATION]
                try:
                    body, truncated = await _read_bounded(response, limit)
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise ProbeError(f"{url}: no complete response within {self._timeout:g}s", kind="timeout") from exc
        except httpx.ConnectError as exc:
            if _is_certificate_error(exc):
                raise TlsVerificationError(f"{url}: certificate verification failed: {_reason(exc)}") from exc
            if _caused_by(exc, ssl.SSLError):
                raise TlsHandshakeError(f"{url}: TLS handshake failed: {_reason(exc)}", kind="tls") from exc
            if _caused_by(exc, socket.gaierror) or "Name or service not known" in str(exc):
                raise ProbeError(f"{url}: cannot resolve host name: {_reason(exc)}", kind="dns") from exc
            kind = "refused" if _caused_by(exc, ConnectionRefusedError) or "refused" in str(exc) else "unreachable"
            raise ProbeError(f"{url}: cannot connect: {_reason(exc)}", kind=kind) from exc
        except httpx.TimeoutException as exc:
            raise ProbeError(f"{url}: no response within {self._timeout:g}s", kind="timeout") from exc
        except (httpx.HTTPError, ssl.SSLError) as exc:
            raise ProbeError(f"{url}: {type(exc).__name__}: {_reason(exc)}", kind="protocol") from exc
        except zlib.error as exc:
            raise ProbeError(f"{url}: the body does not decode as its Content-Encoding says: {exc}",
                             kind="protocol") from exc
        return Fetched(url=url, status=response.status_code, headers=response.headers, body=body,
                       truncated=truncated, address=address)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` decoded bytes, and whether there was more; memory stays near ``limit`` whatever arrives."""
    decoders = _decoders(response.headers.get("content-encoding", ""))
    body = bytearray()

    def take(raw: bytes) -> bool:
        pieces = [raw]
        for decoder in decoders:
            # one budget for the stage, not one per piece: a bomb's outer layer comes out in 64 KiB pieces, and
            # each of them, given a budget of its own, inflated a whole body of its inner layer (16 at once)
            pieces = _inflate(decoder, b"".join(pieces), limit + 1 - len(body))
        for piece in pieces:
            body.extend(piece[: limit + 1 - len(body)])
        return len(body) > limit

    async for raw in response.aiter_raw():
        if take(raw):
            break
    else:
        while decoders and any(decoder.unconsumed_tail for decoder in decoders):  # what a stage held back
            before = len(body)
            if take(b"") or len(body) == before:
                break
    truncated = len(body) > limit
    del body[limit:]  # in place: a slice would be one more copy of the body
    return bytes(body), truncated


def _decoders(content_encoding: str) -> list[zlib._Decompress]:
    """One decompressor per listed coding, outermost first (``gzip, gzip`` is two); others are left encoded."""
    decoders = []
    for coding in reversed([part.strip().lower() for part in content_encoding.split(",") if part.strip()]):
        if coding in {"gzip", "x-gzip"}:
            decoders.append(zlib.decompressobj(zlib.MAX_WBITS | 16))
        elif coding == "deflate":
            decoders.append(zlib.decompressobj())  # zlib-wrapped, as RFC 9110 defines it
        elif coding != "identity":
            return []  # we did not offer it (Accept-Encoding): judge the bytes as sent
    return decoders


def _inflate(decoder: zlib._Decompress, data: bytes, budget: int) -> list[bytes]:
    """Decompress ``data`` in pieces of at most _PIECE bytes, stopping once ``budget`` bytes have come out."""
    out: list[bytes] = []
    produced = 0
    data = decoder.unconsumed_tail + data  # input a previous call left for lack of budget
    while data and produced < budget:
        piece = decoder.decompress(data, min(_PIECE, budget - produced))
        data = decoder.unconsumed_tail
        if not piece:
            break
        out.append(piece)
        produced += len(piece)
    return out


FOREIGN_LOCATION = "postern_foreign_location"


async def _hide_foreign_location(response: httpx.Response) -> None:
    """Keep a redirect to file:, data:, javascript: (any non-HTTP scheme) from httpx's own redirect handling, which
    runs even when redirects are not followed: it raises on data: and turns file:///etc/passwd into
    file://<host>/etc/passwd. The header is put back verbatim once httpx is done, for the checks to judge."""
    location = response.headers.get("location")
    if location is not None and urlsplit(location.strip()).scheme.lower() not in ("", "http", "https"):
        response.extensions[FOREIGN_LOCATION] = location
        del response.headers["location"]


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, kind):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _is_certificate_error(exc: BaseException) -> bool:
    return _caused_by(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _reason(exc: BaseException) -> str:
    text = re.sub(r"^\[Errno -?\d+\] ", "", str(exc).strip())
    if text:
        return text.splitlines()[0]
    cause = exc.__cause__ or exc.__context__
    return _reason(cause) if cause is not None else type(exc).__name__
