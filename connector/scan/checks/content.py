"""Content integrity: mixed content (active separated from passive), cross-origin scripts and stylesheets without
Subresource Integrity, and sensitive pages the browser or a proxy may cache.

The key routes are read, then same-origin pages they link to (bounded by depth and count; links that look like
they change state, such as logout, are never followed). Every finding names the page it is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urldefrag, urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field
from selectolax.lexbor import LexborHTMLParser

from connector.core.errors import ProbeError
from connector.core.model import Asset, CheckOutcome, RuleResult, Status, Target
from connector.probes.web import Page, origin_of
from connector.scan.checks.base import Check
from connector.scan.context import ScanContext

# W3C Mixed Content: blockable ("active") versus upgradable ("passive") request contexts.
ACTIVE = (("script", "src"), ("iframe", "src"), ("frame", "src"), ("object", "data"), ("embed", "src"),
          ("form", "action"))
PASSIVE = (("img", "src"), ("audio", "src"), ("video", "src"), ("video", "poster"), ("source", "src"),
           ("track", "src"))
SENSITIVE_PATH = re.compile(r"(log-?in|sign-?in|log-?on|account|profile|password|checkout|billing|payment|admin)",
                            re.IGNORECASE)
NEVER_FOLLOW = re.compile(r"(log-?out|sign-?out|delete|remove|unsubscribe)", re.IGNORECASE)
# other hosts the pages link to or load from, kept in the observed values for discovery (at most this many)
MAX_FOREIGN_ORIGINS = 100
SKIP_EXTENSIONS = re.compile(r"\.(pdf|zip|gz|tgz|rar|7z|png|jpe?g|gif|webp|svg|ico|mp4|mp3|woff2?|ttf|css|js|json|"
                             r"xml|txt|csv|docx?|xlsx?)$", re.IGNORECASE)


class ContentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crawl_depth: int = Field(default=1, ge=0, le=5, description="link hops followed from each key route")
    max_pages: int = Field(default=20, ge=1, le=500, description="pages read per asset, key routes included")
    max_links: int = Field(default=100, ge=0, le=10_000,
                           description="same-origin links queued from one page; the rest are counted, not followed")


@dataclass(frozen=True)
class Resource:
    tag: str
    url: str
    active: bool
    integrity: bool


@dataclass(frozen=True)
class PageContent:
    path: str
    url: str
    resources: tuple[Resource, ...]
    password_field: bool
    cache_control: str
    sensitive_by_config: bool
    links: tuple[str, ...] = ()  # absolute URLs of its <a href> links


@dataclass(frozen=True)
class ContentObservation:
    pages: tuple[PageContent, ...]
    skipped: tuple[str, ...]


class ContentCheck(Check[ContentObservation, ContentSettings]):
    name = "content"
    description = "mixed content, Subresource Integrity, caching of sensitive pages"
    settings_model = ContentSettings

    def targets(self, asset: Asset) -> list[Target]:
        return [Target(asset, asset.https_port, scheme="https")]

    async def observe(self, target: Target, ctx: ScanContext, settings: ContentSettings) -> ContentObservation:
        return await crawl(target.asset, ctx, settings)

    def judge(self, target: Target, observation: ContentObservation, settings: ContentSettings,
              now: datetime) -> CheckOutcome:
        results: list[RuleResult] = []
        for page in observation.pages:
            results.extend(_page_results(page))
        observed = {"content": {"pages": [page.path for page in observation.pages],
                                "skipped": list(observation.skipped),
                                "foreign_origins": _foreign_origins(target.asset, observation.pages)}}
        return CheckOutcome(results, observed)


async def crawl(asset: Asset, ctx: ScanContext, settings: ContentSettings) -> ContentObservation:
    """Breadth-first over same-origin links from the key routes."""
    web = ctx.web(asset)
    queue: list[tuple[str, int]] = [(route, 0) for route in asset.routes]
    queue += [(route, 0) for route in asset.sensitive_routes]
    seen: set[str] = set()
    pages: list[PageContent] = []
    skipped: list[str] = []
    while queue and len(pages) < settings.max_pages:
        path, depth = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        try:
            page = await web.page(path, shared=depth == 0)  # only the key routes are read by other checks too
        except ProbeError as exc:
            if depth == 0:
                raise
            skipped.append(f"{path}: {exc}")
            continue
        read = _read(page, path in asset.sensitive_routes, follow=depth < settings.crawl_depth)
        del page  # not held while the next page is read
        if read is None:
            continue
        content, found = read
        pages.append(content)
        if found:
            links = [link for link in dict.fromkeys(found) if link not in seen]
            if len(links) > settings.max_links:
                skipped.append(f"{path}: {len(links) - settings.max_links} of its {len(links)} same-origin links "
                               f"not followed (max_links {settings.max_links})")
            queue.extend((link, depth + 1) for link in links[:settings.max_links])
    if queue:
        skipped.append(f"{len(queue)} queued page(s) not read (max_pages {settings.max_pages})")
    return ContentObservation(tuple(pages), tuple(skipped))


def _read(page: Page, sensitive: bool, follow: bool) -> tuple[PageContent, list[str]] | None:
    """What the crawl keeps of an HTML page: its content and, when its links are to be ``follow``ed, its same-origin
    links; not its tree, which is dropped on return (before the next await), so pages crawled at once never hold a
    tree each."""
    html = page.parse_html()
    if page.status >= 400 or html is None:
        return None
    return _content(page, html, sensitive), list(_same_origin_links(page, html)) if follow else []


def _content(page: Page, html: LexborHTMLParser, sensitive: bool) -> PageContent:
    resources = []
    for group, active in ((ACTIVE, True), (PASSIVE, False)):
        for tag, attribute in group:
            for node in html.css(f"{tag}[{attribute}]"):
                resources.append(Resource(tag, urljoin(page.url, node.attributes.get(attribute) or ""), active,
                                          "integrity" in node.attributes))
    for node in html.css("link[href]"):
        rel = (node.attributes.get("rel") or "").lower().split()
        href = urljoin(page.url, node.attributes.get("href") or "")
        if "stylesheet" in rel:
            resources.append(Resource("link[stylesheet]", href, True, "integrity" in node.attributes))
        elif {"preload", "modulepreload"} & set(rel):
            kind = (node.attributes.get("as") or "").lower()
            resources.append(Resource(f"link[preload {kind}]", href, kind in ("script", "style", "fetch", "worker"),
                                      "integrity" in node.attributes))
        elif "icon" in rel:
            resources.append(Resource("link[icon]", href, False, False))
    for node in html.css("img[srcset], source[srcset]"):
        for candidate in (node.attributes.get("srcset") or "").split(","):
            if candidate.strip():
                resources.append(Resource(f"{node.tag}[srcset]", urljoin(page.url, candidate.split()[0]), False, False))
    password = bool(html.css("input[type=password]"))
    links = tuple(urljoin(page.url, node.attributes.get("href") or "") for node in html.css("a[href]"))
    return PageContent(page.path, page.url, tuple(resources), password,
                       ", ".join(page.header_values("cache-control")), sensitive, links)


def _foreign_origins(asset: Asset, pages: tuple[PageContent, ...]) -> list[dict[str, str]]:
    """The http(s) origins of other hosts that the pages link to or load from, each with the first page that
    names it: what discovery reads, so it needs no fetch of its own."""
    found: dict[str, dict[str, str]] = {}
    for page in pages:
        named = [("link", url) for url in page.links] + [(f"<{r.tag}>", r.url) for r in page.resources]
        for kind, url in named:
            scheme, host, port = origin_of(url)
            if scheme not in ("http", "https") or not host or host == asset.host or port < 0:
                continue
            origin = f"{scheme}://{host}:{port}"
            if origin not in found:
                if len(found) == MAX_FOREIGN_ORIGINS:
                    return list(found.values())
                found[origin] = {"origin": origin, "kind": kind, "page": page.url}
    return list(found.values())


def _same_origin_links(page: Page, html: LexborHTMLParser) -> Iterator[str]:
    here = origin_of(page.url)
    for node in html.css("a[href]"):
        target, _ = urldefrag(urljoin(page.url, node.attributes.get("href") or ""))
        parts = urlsplit(target)
        if parts.scheme != "https" or origin_of(target) != here:
            continue
        if NEVER_FOLLOW.search(parts.path) or SKIP_EXTENSIONS.search(parts.path):
            continue
        yield parts.path + (f"?{parts.query}" if parts.query else "")


def _listed(resources: list[Resource]) -> list[str]:
    return [f"<{resource.tag}> {resource.url}" for resource in resources[:20]]


def _page_results(page: PageContent) -> list[RuleResult]:
    insecure = [r for r in page.resources if urlsplit(r.url).scheme == "http"]
    active = [r for r in insecure if r.active]
    passive = [r for r in insecure if not r.active]
    here = origin_of(page.url)
    foreign = [r for r in page.resources
               if r.tag in ("script", "link[stylesheet]") and urlsplit(r.url).scheme == "https"
               and origin_of(r.url) != here]
    unprotected = [r for r in foreign if not r.integrity]
    results = [
        RuleResult("content.mixed_active", Status.FAIL if active else Status.PASS,
                   f"{page.path} loads {len(active)} script/frame/stylesheet/form target(s) over plain HTTP"
                   if active else f"{page.path} loads no active content over HTTP",
                   {"page": page.url, "resources": _listed(active)}, subject=page.path),
        RuleResult("content.mixed_passive", Status.FAIL if passive else Status.PASS,
                   f"{page.path} loads {len(passive)} image/media resource(s) over plain HTTP"
                   if passive else f"{page.path} loads no passive content over HTTP",
                   {"page": page.url, "resources": _listed(passive)}, subject=page.path),
    ]
    if foreign:
        results.append(RuleResult(
            "content.sri_missing", Status.FAIL if unprotected else Status.PASS,
            f"{page.path} loads {len(unprotected)} cross-origin script(s)/stylesheet(s) without integrity="
            if unprotected else f"{page.path}: every cross-origin script and stylesheet has integrity=",
            {"page": page.url, "resources": _listed(unprotected or foreign)}, subject=page.path))
    sensitive = page.sensitive_by_config or page.password_field or bool(SENSITIVE_PATH.search(page.path))
    if sensitive:
        no_store = "no-store" in page.cache_control.lower()
        why = ("named sensitive in the configuration" if page.sensitive_by_config else
               "has a password field" if page.password_field else "looks like an account or login page")
        results.append(RuleResult(
            "content.sensitive_cacheable", Status.PASS if no_store else Status.FAIL,
            f"{page.path} ({why}) is sent with Cache-Control: no-store" if no_store
            else f"{page.path} ({why}) may be stored by browsers and proxies: Cache-Control is "
                 f"{page.cache_control or 'absent'}, without no-store",
            {"page": page.url, "cache_control": page.cache_control, "reason": why}, subject=page.path))
    return results


CHECK = ContentCheck()
