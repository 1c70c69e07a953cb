"""Pages of a site as a browser lands on them, fetched once per scan and shared by the header, grade, content and
exposure checks.

A page is fetched over HTTPS with certificate verification (and again without it, when verification fails, so
the headers can still be judged); redirects are followed while they stay on the same origin, the way a browser
reaches the page a user sees.

Whatever a site redirects to, nothing is fetched outside the configured assets: ``refusal`` tells a check that
judges redirect chains whether a hop may be followed (the asset's own origins, the upgrade of its host to HTTPS,
another configured asset) or must only be recorded (another host or port, a file:, data: or javascript: URL).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
from selectolax.lexbor import LexborHTMLParser

from connector.core.errors import ProbeError
from connector.core.model import Asset, Target
from connector.probes.http import MAX_BODY, Fetched, HttpFetcher, TlsVerificationError

MAX_SAME_ORIGIN_REDIRECTS = 5


@dataclass(frozen=True)
class Page:
    requested: str
    url: str  # where the same-origin redirects ended
    status: int
    headers: httpx.Headers
    body: bytes
    certificate_valid: bool
    redirects: tuple[str, ...] = ()

    def header_values(self, name: str) -> list[str]:
        return self.headers.get_list(name)

    @property
    def is_html(self) -> bool:
        content_type = self.headers.get("content-type", "")
        return "html" in content_type.lower() or (not content_type and self.body.lstrip()[:1] == b"<")

    def parse_html(self) -> LexborHTMLParser | None:
        """The document's tree, parsed anew on each call and kept by nobody: a tree of 20,000 tags costs ~6 MiB, so
        one cached on every page being scanned added up to hundreds. Callers use it without awaiting in between,
        so however many pages are being scanned, one tree at a time exists."""
        if not self.is_html or not self.body:
            return None
        # lexbor holds NUL before its tree builder drops it: 2 MiB of NUL made a 38 MiB tree
        return LexborHTMLParser(within_depth(self.body.decode("utf-8", "replace").replace("\x00", "")))

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


MAX_HTML_DEPTH = 512  # Chromium's tree builder stops nesting here too (kMaximumHTMLParserDOMTreeDepth)
# A parsed tree costs ~140 bytes a node: 2 MiB of links made an 18 MiB tree, and 32 such pages at once 400+ MiB.
# Documents are parsed up to this many tags (a long real article has a few thousand).
MAX_HTML_TAGS = 20_000
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)[^>]*?(/?)>")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                   "track", "wbr"})


def within_depth(html: str, limit: int = MAX_HTML_DEPTH) -> str:
    """The document up to where its elements nest deeper than ``limit`` or pass MAX_HTML_TAGS tags, found in one
    linear pass.

    Lexbor's tree building is quadratic in nesting depth (measured: 1 ms at 512 levels, 0.19 s at 10,000, 0.77 s at
    20,000; 200,000 levels in a 2 MiB page would take minutes on the event loop, stalling every check of the
    scan). A guard before parsing is cheaper and safer than a thread (which cannot be stopped) or a process per
    page; a flat 2 MiB page still parses in about 0.2 s. Nothing a browser renders is lost: Chromium does not nest
    deeper than 512 either.
    """
    depth = 0
    for count, match in enumerate(_TAG.finditer(html)):
        if count == MAX_HTML_TAGS:
            return html[: match.start()]
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(3)
        if closing:
            depth = max(0, depth - 1)
        elif name not in _VOID and not self_closing:
            depth += 1
            if depth > limit:
                return html[: match.start()]
    return html


CORS_PROBE_ORIGIN = "https://cors-probe.postern.invalid"  # an origin nobody owns: reflecting it is the finding


def meta_csp(html: LexborHTMLParser | None) -> tuple[str, ...]:
    """The policies of ``<meta http-equiv="Content-Security-Policy">`` elements, in document order."""
    if html is None:
        return ()
    policies = []
    for node in html.css("meta[http-equiv]"):
        if (node.attributes.get("http-equiv") or "").strip().lower() == "content-security-policy":
            policies.append(node.attributes.get("content") or "")
    return tuple(policies)


Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port
    except ValueError:  # a port out of range or not a number: an origin of its own that no asset has
        port = -1
    return (parts.scheme, parts.hostname or "", port or default)


def asset_origins(asset: Asset) -> frozenset[Origin]:
    """Where the asset itself answers: its HTTPS ports, its plain-HTTP port, and HTTPS on 443 (the upgrade)."""
    host = asset.host.lower()
    origins = {("https", host, port) for port in (*asset.ports, 443)}
    if asset.http_port is not None:
        origins.add(("http", host, asset.http_port))
    return frozenset(origins)


class WebProbe:
    """Memoised requests for one asset: a URL (with the same Origin header) is fetched once per scan, whichever
    checks ask for it: pages for the header, grade, content and exposure checks, single hops for the redirect
    chains of the HTTPS-transport and grade checks.

    What is memoised stays until the asset's checks are done, so only what several checks read is: a page that
    one check alone reads (one a crawl found) is fetched with ``shared=False`` and freed with that check's use of
    it. Memoised, 20 crawled pages of 2 MiB, each with its parsed tree, held ~140 MiB for each asset being scanned.
    """

    def __init__(self, asset: Asset, http: HttpFetcher, parallel: int = 4,
                 elsewhere: frozenset[Origin] = frozenset()) -> None:
        self.asset = asset
        self.http = http
        self.followable = asset_origins(asset) | elsewhere  # ``elsewhere``: the other configured assets
        self.base = (Target(asset, asset.https_port, scheme="https").url or "").rstrip("/")
        self._pages: dict[tuple[str, str | None, int], asyncio.Task[Page]] = {}
        self._hops: dict[tuple[str, str | None, int], asyncio.Task[tuple[Fetched, bool]]] = {}
        self._gate = asyncio.Semaphore(parallel)

    def url(self, path: str) -> str:
        return urljoin(self.base + "/", path.lstrip("/")) if not path.startswith(("http://", "https://")) else path

    async def page(self, path: str, *, origin: str | None = None, follow: bool = True, limit: int = MAX_BODY,
                   shared: bool = True) -> Page:
        """The page at ``path``, its body read up to ``limit`` bytes (0 when only its headers are judged)."""
        key = (self.url(path) + ("" if follow else "#nofollow"), origin, limit)
        task = self._pages.get(key)
        if task is None and not shared:
            return await self._fetch(self.url(path), origin, follow, limit, remember=False)
        if task is None:
            task = asyncio.ensure_future(self._fetch(self.url(path), origin, follow, limit, remember=True))
            self._pages[key] = task
        return await asyncio.shield(task)  # another check's timeout must not cancel the fetch under this one

    async def hop(self, url: str, *, origin: str | None = None, limit: int = MAX_BODY) -> tuple[Fetched, bool]:
        """One GET of ``url``, redirects not followed, and whether its certificate verified (HTTPS with a bad
        certificate is fetched again unverified, so its answer can still be judged)."""
        key = (url, origin, limit)
        task = self._hops.get(key)
        if task is None:
            task = asyncio.ensure_future(self._get(url, origin, limit))
            self._hops[key] = task
        return await asyncio.shield(task)

    def cancel_pending(self) -> None:
        """Stop fetches nobody waits for any more (their checks timed out), once the asset's checks are done."""
        for task in [*self._pages.values(), *self._hops.values()]:
            if not task.done():
                task.cancel()

    def refusal(self, location: str) -> str | None:
        """Why a redirect to ``location`` must not be followed: "scheme" (not HTTP or HTTPS) or "offhost" (no
        configured asset answers there); None when it may be."""
        if urlsplit(location).scheme not in ("http", "https"):
            return "scheme"
        return None if origin_of(location) in self.followable else "offhost"

    async def _fetch(self, url: str, origin: str | None, follow: bool, limit: int, remember: bool) -> Page:
        redirects: list[str] = []
        current = url
        for _ in range(MAX_SAME_ORIGIN_REDIRECTS + 1):
            if remember:
                response, valid = await self.hop(current, origin=origin, limit=limit)
            else:
                response, valid = await self._get(current, origin, limit)
            location = urljoin(current, response.location or "") if response.is_redirect else None
            if not follow or location is None or origin_of(location) != origin_of(current):
                return Page(url, current, response.status, response.headers, response.body, valid, tuple(redirects))
            redirects.append(f"{response.status} {current} -> {location}")
            current = location
        raise ProbeError(f"{url}: more than {MAX_SAME_ORIGIN_REDIRECTS} redirects on one origin")

    async def _get(self, url: str, origin: str | None, limit: int) -> tuple[Fetched, bool]:
        if origin_of(url) not in self.followable:
            raise ProbeError(f"{url}: not an origin of a configured asset; not fetched", kind="denied")
        own = urlsplit(url).hostname == self.asset.host.lower()
        address = self.asset.address if own else None
        headers = {"Origin": origin} if origin else None
        async with self._gate:
            try:
                return await self.http.get(url, address=address, headers=headers, asset_host=True, limit=limit), True
            except TlsVerificationError:
                return await self.http.get(url, address=address, headers=headers, verify=False, asset_host=True,
                                           limit=limit), False
