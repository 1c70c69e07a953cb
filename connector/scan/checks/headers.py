"""Browser security headers on each key route: CSP (header and <meta>), framing, MIME sniffing, referrer,
permissions and cross-origin isolation policies, cookies, CORS, and version disclosure.

A rule that cannot apply produces no result (no cookie rules without cookies, no CSP details without a CSP), so a
hardened page yields passes only and one flaw yields one finding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin

from connector.core.model import Asset, CheckOutcome, RuleResult, Status, Target
from connector.parsers import csp
from connector.parsers.cookies import Cookie, parse_set_cookie
from connector.probes.web import CORS_PROBE_ORIGIN, Page, meta_csp
from connector.scan.checks.base import Check, NoSettings
from connector.scan.context import ScanContext

_VERSION = re.compile(r"\d+\.\d+")
_REFERRER_TOKENS = {"no-referrer", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin", "same-origin",
                    "strict-origin", "strict-origin-when-cross-origin", "unsafe-url"}
UNSAFE_REFERRER = {"unsafe-url", "no-referrer-when-downgrade"}


@dataclass(frozen=True)
class HeaderObservation:
    page: Page
    cors: Page | None
    meta_policies: tuple[str, ...]


def enforced_policies(page: Page, meta: tuple[str, ...]) -> list[csp.Policy]:
    policies = csp.parse_header_values(page.header_values("content-security-policy"))
    policies += [csp.parse_policy(text, source="meta") for text in meta if text.strip()]
    return policies


def report_only_policies(page: Page) -> list[csp.Policy]:
    return csp.parse_header_values(page.header_values("content-security-policy-report-only"), report_only=True)


def referrer_policy(page: Page) -> str | None:
    """The policy a browser applies: the last recognised token of the (comma-joined) header values."""
    tokens = [token.strip().lower() for value in page.header_values("referrer-policy") for token in value.split(",")]
    known = [token for token in tokens if token in _REFERRER_TOKENS]
    return known[-1] if known else None


class SecurityHeadersCheck(Check[HeaderObservation, NoSettings]):
    name = "headers"
    description = "CSP, framing, nosniff, referrer, permissions, cross-origin policies, cookies, CORS, disclosure"

    def targets(self, asset: Asset) -> list[Target]:
        return [Target(asset, asset.https_port, route, scheme="https") for route in asset.routes]

    async def observe(self, target: Target, ctx: ScanContext, settings: NoSettings) -> HeaderObservation:
        web = ctx.web(target.asset)
        page = await web.page(target.path or "/")
        cors = await web.page(target.path or "/", origin=CORS_PROBE_ORIGIN, limit=0)  # only its headers are judged
        return HeaderObservation(page, cors, meta_csp(page.parse_html()))

    def judge(
        self, target: Target, observation: HeaderObservation, settings: NoSettings, now: datetime
    ) -> CheckOutcome:
        page = observation.page
        policies = enforced_policies(page, observation.meta_policies)
        results = _csp_results(page, policies)
        results += _framing_results(page, policies)
        results += _simple_header_results(page)
        results += _cookie_results(page)
        results.append(_cors_result(observation.cors))
        results.append(_disclosure_result(page))
        observed = {
            "http": {"response": {"status_code": page.status}},
            "web_page": {"url": page.url, "redirects": list(page.redirects), "location": _onward(page),
                         "certificate_valid": page.certificate_valid,
                         "headers": {name: page.header_values(name) for name in _OBSERVED_HEADERS
                                     if page.header_values(name)}},
        }
        return CheckOutcome(results, observed)


_OBSERVED_HEADERS = ("strict-transport-security", "content-security-policy", "content-security-policy-report-only",
                     "x-frame-options", "x-content-type-options", "referrer-policy", "permissions-policy",
                     "cross-origin-opener-policy", "cross-origin-resource-policy", "cross-origin-embedder-policy",
                     "server", "x-powered-by")


def _onward(page: Page) -> str | None:
    """Where a route redirects beyond its origin (not followed): the end of its redirect chain."""
    location = page.headers.get("location")
    return urljoin(page.url, location) if location and 300 <= page.status < 400 else None


def _csp_results(page: Page, policies: list[csp.Policy]) -> list[RuleResult]:
    report_only = report_only_policies(page)
    evidence: dict[str, object] = {"policies": [";".join(f"{k} {' '.join(v)}".strip() for k, v in p.directives.items())
                                                for p in policies],
                                   "from_meta": [p.source == "meta" for p in policies],
                                   "report_only": [";".join(p.directives) for p in report_only]}
    if not policies:
        message = "no Content-Security-Policy is enforced"
        if report_only:
            message += " (only Content-Security-Policy-Report-Only, which blocks nothing)"
        return [RuleResult("csp.missing", Status.FAIL, message, evidence)]
    weak = csp.evaluate(policies)
    results = [RuleResult("csp.missing", Status.PASS, f"{len(policies)} policy(ies) enforced", evidence)]
    results.append(RuleResult(
        "csp.unsafe_inline", Status.FAIL if weak.unsafe_inline else Status.PASS,
        "script-src allows 'unsafe-inline' without a nonce or hash" if weak.unsafe_inline
        else "inline scripts need a nonce or hash", evidence))
    results.append(RuleResult(
        "csp.unsafe_eval", Status.FAIL if weak.unsafe_eval else Status.PASS,
        "script-src allows 'unsafe-eval'" if weak.unsafe_eval else "eval() is blocked", evidence))
    results.append(RuleResult(
        "csp.broad_script_source", Status.FAIL if weak.broad_sources else Status.PASS,
        f"script-src allows any script from {', '.join(weak.broad_sources)}" if weak.broad_sources
        else "script sources are restricted", {**evidence, "broad_sources": weak.broad_sources}))
    results.append(RuleResult(
        "csp.object_src_missing", Status.FAIL if weak.object_src_open else Status.PASS,
        "object-src is not 'none' (plugins can run scripts)" if weak.object_src_open else "object-src is 'none'",
        evidence))
    if weak.nonce_based:
        results.append(RuleResult(
            "csp.base_uri_missing", Status.FAIL if weak.base_uri_missing else Status.PASS,
            "no base-uri: an injected <base> can redirect nonce-trusted relative scripts" if weak.base_uri_missing
            else "base-uri is restricted", evidence))
    return results


def _framing_results(page: Page, policies: list[csp.Policy]) -> list[RuleResult]:
    frame_ancestors = any(p.has("frame-ancestors") for p in policies)
    values = [value.strip().lower() for value in page.header_values("x-frame-options")]
    xfo = values[0] if values else None
    xfo_protects = xfo in ("deny", "sameorigin")
    evidence = {"x_frame_options": values, "csp_frame_ancestors": frame_ancestors}
    protected = frame_ancestors or xfo_protects
    results = [RuleResult(
        "headers.clickjacking", Status.PASS if protected else Status.FAIL,
        "framing is restricted" if protected else "any site can frame this page (no frame-ancestors, no valid "
        "X-Frame-Options)", evidence)]
    if xfo_protects and policies:  # without any CSP, csp.missing already says to add one
        results.append(RuleResult(
            "headers.frame_ancestors_missing", Status.PASS if frame_ancestors else Status.FAIL,
            "CSP frame-ancestors is set" if frame_ancestors
            else "framing relies on X-Frame-Options only; CSP frame-ancestors supersedes it", evidence))
    return results


def _simple_header_results(page: Page) -> list[RuleResult]:
    results = []
    nosniff = [value.strip().lower() for value in page.header_values("x-content-type-options")]
    ok = bool(nosniff) and nosniff[0] == "nosniff"
    results.append(RuleResult("headers.nosniff_missing", Status.PASS if ok else Status.FAIL,
                              "X-Content-Type-Options: nosniff" if ok
                              else "X-Content-Type-Options: nosniff is missing or invalid", {"values": nosniff}))
    policy = referrer_policy(page)
    unsafe = policy in UNSAFE_REFERRER
    described = policy or "unset (browser default strict-origin-when-cross-origin)"
    results.append(RuleResult("headers.referrer_policy_unsafe", Status.FAIL if unsafe else Status.PASS,
                              f"Referrer-Policy {described} leaks full URLs to other sites" if unsafe
                              else f"Referrer-Policy {described}",
                              {"values": page.header_values("referrer-policy"), "effective": policy}))
    permissions = page.header_values("permissions-policy")
    results.append(RuleResult("headers.permissions_policy_missing", Status.PASS if permissions else Status.FAIL,
                              "Permissions-Policy is set" if permissions
                              else "no Permissions-Policy: powerful features are not restricted",
                              {"values": permissions}))
    coop = (page.headers.get("cross-origin-opener-policy") or "").split(";")[0].strip().lower()
    coop_ok = coop in ("same-origin", "same-origin-allow-popups", "noopener-allow-popups")
    results.append(RuleResult("headers.coop_missing", Status.PASS if coop_ok else Status.FAIL,
                              f"Cross-Origin-Opener-Policy {coop}" if coop_ok
                              else "no isolating Cross-Origin-Opener-Policy: other windows keep a handle on this one",
                              {"value": coop or None}))
    corp = (page.headers.get("cross-origin-resource-policy") or "").strip().lower()
    corp_ok = corp in ("same-origin", "same-site")
    results.append(RuleResult("headers.corp_missing", Status.PASS if corp_ok else Status.FAIL,
                              f"Cross-Origin-Resource-Policy {corp}" if corp_ok
                              else "no Cross-Origin-Resource-Policy: other sites can embed this response",
                              {"value": corp or None}))
    return results


def _cookie_results(page: Page) -> list[RuleResult]:
    results = []
    for value in page.header_values("set-cookie"):
        cookie = parse_set_cookie(value)
        if cookie is None:
            continue
        results.extend(_cookie_rules(cookie))
    return results


def _cookie_rules(cookie: Cookie) -> list[RuleResult]:
    evidence = {"cookie": cookie.name, "secure": cookie.secure, "http_only": cookie.http_only,
                "same_site": cookie.same_site}
    rules = [RuleResult("cookies.secure_missing", Status.PASS if cookie.secure else Status.FAIL,
                        f"cookie {cookie.name} is Secure" if cookie.secure
                        else f"cookie {cookie.name} lacks Secure: it is also sent over plain HTTP",
                        evidence, subject=cookie.name),
             RuleResult("cookies.samesite_missing", Status.PASS if cookie.same_site_valid else Status.FAIL,
                        f"cookie {cookie.name} has SameSite={cookie.same_site}" if cookie.same_site_valid
                        else f"cookie {cookie.name} has no valid SameSite attribute",
                        evidence, subject=cookie.name)]
    if cookie.session_like:
        rules.append(RuleResult("cookies.httponly_missing", Status.PASS if cookie.http_only else Status.FAIL,
                                f"session cookie {cookie.name} is HttpOnly" if cookie.http_only
                                else f"session cookie {cookie.name} lacks HttpOnly: scripts can read it",
                                evidence, subject=cookie.name))
    return rules


def _cors_result(cors: Page | None) -> RuleResult:
    if cors is None:
        return RuleResult("cors.reflects_origin", Status.ERROR, "the CORS probe could not be made")
    allowed = cors.headers.get("access-control-allow-origin", "")
    credentials = cors.headers.get("access-control-allow-credentials", "").strip().lower() == "true"
    evidence = {"probe_origin": CORS_PROBE_ORIGIN, "access_control_allow_origin": allowed or None,
                "allow_credentials": credentials}
    reflected = allowed.strip() == CORS_PROBE_ORIGIN
    if reflected and credentials:
        return RuleResult("cors.reflects_origin", Status.FAIL,
                          "any origin may read responses with the user's cookies (origin reflected with "
                          "Access-Control-Allow-Credentials: true)", evidence)
    return RuleResult("cors.reflects_origin", Status.PASS,
                      "a foreign origin is not granted credentialed access", evidence)


def _disclosure_result(page: Page) -> RuleResult:
    disclosed = {name: value for name in ("server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version")
                 for value in page.header_values(name) if _VERSION.search(value)}
    if disclosed:
        return RuleResult("headers.version_disclosure", Status.FAIL,
                          "software versions are advertised: " + ", ".join(f"{k}: {v}" for k, v in disclosed.items()),
                          {"headers": disclosed})
    return RuleResult("headers.version_disclosure", Status.PASS, "no software version is advertised",
                      {"headers": {}})


CHECK = SecurityHeadersCheck()
