"""The MDN HTTP Observatory score and grade (algorithm version 6), computed the way mdn/mdn-http-observatory does.

Twelve tests each yield one named result with a score modifier; the score starts at 100, bonuses count only if
penalties alone leave at least 90, and the grade comes from the score rounded down to a multiple of 5. The
Observatory's own quirks are kept on purpose (its CSP parser intersects policies and lowercases sources; its
HSTS threshold is 15552000 seconds), so users get the number they would get there. Not reproduced: the HSTS
preload list (no list is shipped), so "hsts-preloaded" and "redirection-all-redirects-preloaded" are awarded
only through ``preloaded``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser

from connector.parsers.domains import organisational_domain
from connector.probes.web import within_depth

ALGORITHM_VERSION = 6
MINIMUM_SCORE_FOR_EXTRA_CREDIT = 90
SIX_MONTHS = 15_552_000

SCORE_TABLE: dict[str, int] = {
    "csp-implemented-with-no-unsafe-default-src-none": 10, "csp-implemented-with-no-unsafe": 5,
    "csp-implemented-with-unsafe-inline-in-style-src-only": 0, "csp-implemented-but-duplicate-directives": 0,
    "csp-implemented-with-insecure-scheme-in-passive-content-only": -10, "csp-implemented-with-unsafe-eval": -10,
    "csp-implemented-with-unsafe-inline": -20, "csp-implemented-with-insecure-scheme": -20,
    "csp-header-invalid": -25, "csp-not-implemented": -25, "csp-not-implemented-but-reporting-enabled": -25,
    "cookies-secure-with-httponly-sessions-and-samesite": 5, "cookies-secure-with-httponly-sessions": 0,
    "cookies-not-found": 0, "cookies-without-secure-flag-but-protected-by-hsts": -5,
    "cookies-session-without-secure-flag-but-protected-by-hsts": -10, "cookies-without-secure-flag": -20,
    "cookies-samesite-flag-invalid": -20, "cookies-anticsrf-without-samesite-flag": -20,
    "cookies-session-without-httponly-flag": -30, "cookies-session-without-secure-flag": -40,
    "cross-origin-resource-sharing-not-implemented": 0,
    "cross-origin-resource-sharing-implemented-with-public-access": 0,
    "cross-origin-resource-sharing-implemented-with-restricted-access": 0,
    "cross-origin-resource-sharing-implemented-with-universal-access": -50,
    "redirection-all-redirects-preloaded": 0, "redirection-to-https": 0, "redirection-not-needed-no-http": 0,
    "redirection-off-host-from-http": -5, "redirection-not-to-https-on-initial-redirection": -10,
    "redirection-not-to-https": -20, "redirection-missing": -20, "redirection-invalid-cert": -20,
    "referrer-policy-private": 5, "referrer-policy-not-implemented": 0, "referrer-policy-unsafe": -5,
    "referrer-policy-header-invalid": -5,
    "hsts-preloaded": 5, "hsts-implemented-max-age-at-least-six-months": 0,
    "hsts-implemented-max-age-less-than-six-months": -10, "hsts-not-implemented": -20, "hsts-header-invalid": -20,
    "hsts-not-implemented-no-https": -20, "hsts-invalid-cert": -20,
    "sri-implemented-and-all-scripts-loaded-securely": 5, "sri-implemented-and-external-scripts-loaded-securely": 5,
    "sri-not-implemented-response-not-html": 0, "sri-not-implemented-but-no-scripts-loaded": 0,
    "sri-not-implemented-but-all-scripts-loaded-from-secure-origin": 0,
    "sri-not-implemented-but-external-scripts-loaded-securely": -5,
    "sri-implemented-but-external-scripts-not-loaded-securely": -20,
    "sri-not-implemented-and-external-scripts-not-loaded-securely": -50, "html-not-parseable": -20,
    "x-content-type-options-nosniff": 0, "x-content-type-options-not-implemented": -5,
    "x-content-type-options-header-invalid": -5,
    "x-frame-options-implemented-via-csp": 5, "x-frame-options-sameorigin-or-deny": 5,
    "x-frame-options-allow-from-origin": 0, "x-frame-options-not-implemented": -20,
    "x-frame-options-header-invalid": -20,
    "corp-implemented-with-same-origin": 10, "corp-implemented-with-same-site": 10,
    "corp-implemented-with-cross-origin": 0, "corp-not-implemented": 0, "corp-header-invalid": -5,
    "coop-implemented-with-same-origin": 10, "coop-implemented-with-same-origin-allow-popups": 10,
    "coop-implemented-with-noopener-allow-popups": 10, "coop-implemented-with-unsafe-none": 0,
    "coop-not-implemented": 0, "coop-header-invalid": -5,
    "coep-implemented-with-require-corp": 10, "coep-implemented-with-credentialless": 10,
    "coep-implemented-with-unsafe-none": 0, "coep-not-implemented": 0, "coep-header-invalid": -5,
}
GRADE_CHART = ((100, "A+"), (90, "A"), (85, "A-"), (80, "B+"), (70, "B"), (65, "B-"), (60, "C+"), (50, "C"),
               (45, "C-"), (40, "D+"), (30, "D"), (25, "D-"), (0, "F"))
GRADES = tuple(grade for _, grade in GRADE_CHART)

Headers = Mapping[str, Sequence[str]]  # lower-cased name -> values in order


@dataclass(frozen=True)
class Response:
    status: int
    headers: Headers
    body: bytes = b""
    verified: bool = True

    def all(self, name: str) -> list[str]:
        return list(self.headers.get(name, ()))

    def first(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None


@dataclass(frozen=True)
class SiteResponses:
    """What the Observatory's retriever collects, in its terms."""

    host: str
    session_https: bool  # the scanned session started on https
    auto: Response | None  # the page: the HTTPS session's final response, else HTTP's
    https: Response | None  # final response of the https:// session (None: nothing answered HTTPS)
    http: Response | None  # final response of the http:// session (None: no HTTP listener)
    http_redirects: tuple[str, ...] = ()  # URLs of the http:// session, the initial URL first
    cors: Response | None = None  # the preflight answer
    cors_origin: str = ""
    cookies: tuple[str, ...] = ()  # every Set-Cookie value the session collected
    meta_csp: tuple[str, ...] = ()
    meta_referrer: str | None = None
    preloaded: Callable[[str], bool] = field(default=lambda _host: False)


@dataclass(frozen=True)
class ScoredResult:
    test: str
    result: str
    modifier: int


@dataclass(frozen=True)
class Grade:
    score: int
    grade: str
    algorithm_version: int
    results: tuple[ScoredResult, ...]

    def as_dict(self) -> dict[str, object]:
        return {"score": self.score, "grade": self.grade, "algorithm_version": self.algorithm_version,
                "tests": {r.test: {"result": r.result, "modifier": r.modifier} for r in self.results}}


def grade(site: SiteResponses) -> Grade:
    csp = _csp(site)
    hsts_result, hsts_passes = _hsts(site)
    results = [
        ScoredResult("content-security-policy", csp.result, 0),
        ScoredResult("cookies", _cookies(site, hsts_passes), 0),
        ScoredResult("cross-origin-embedder-policy", _coep(site), 0),
        ScoredResult("cross-origin-opener-policy", _coop(site), 0),
        ScoredResult("cross-origin-resource-sharing", _cors(site), 0),
        ScoredResult("redirection", _redirection(site), 0),
        ScoredResult("referrer-policy", _referrer(site), 0),
        ScoredResult("strict-transport-security", hsts_result, 0),
        ScoredResult("subresource-integrity", _sri(site), 0),
        ScoredResult("x-content-type-options", _xcto(site), 0),
        ScoredResult("x-frame-options", _xfo(site, csp), 0),
        ScoredResult("cross-origin-resource-policy", _corp(site), 0),
    ]
    scored = tuple(ScoredResult(r.test, r.result, SCORE_TABLE.get(r.result, 0)) for r in results)
    return score(scored)


def score(results: tuple[ScoredResult, ...]) -> Grade:
    with_bonus = 100 + sum(r.modifier for r in results)
    penalties_only = 100 + sum(r.modifier for r in results if r.modifier < 0)
    total = max(with_bonus if penalties_only >= MINIMUM_SCORE_FOR_EXTRA_CREDIT else penalties_only, 0)
    return Grade(total, grade_for(total), ALGORITHM_VERSION, results)


def grade_for(total: int) -> str:
    rounded = min(total - total % 5, 100)
    return next(letter for floor, letter in GRADE_CHART if rounded >= floor)


# ----- content-security-policy -------------------------------------------------------------------------------

DANGEROUSLY_BROAD = {"ftp:", "http:", "https:", "*", "http://*", "http://*.*", "https://*", "https://*.*"}
UNSAFE_INLINE = {"'unsafe-inline'", "data:"}
BROAD_OR_INLINE = DANGEROUSLY_BROAD | UNSAFE_INLINE
NONCE_HASH = ("'sha256-", "'sha384-", "'sha512-", "'nonce-")
PASSIVE_DIRECTIVES = ("img-src", "media-src")
_DUPLICATES_ALLOWED = {"report-uri", "report-to"}


class CspInvalidError(ValueError):
    pass


@dataclass(frozen=True)
class CspVerdict:
    result: str
    directives: dict[str, set[str]] | None  # the combined policy (None when not implemented or invalid)


def parse_policies(policies: Sequence[str]) -> tuple[dict[str, set[str]], bool]:
    """The Observatory's parser: policies intersected directive by directive; duplicates of report-* flagged."""
    combined: dict[str, list[tuple[str, int, bool]]] = {}  # directive -> (source, policy index, keep)
    duplicate_warning = False
    for index, raw in enumerate(policies):
        policy = raw.replace("\r", "").replace("\n", "").strip()
        if len(policy) < len("img-src") - 1:
            raise CspInvalidError(f"policy too short: {raw!r}")
        seen: set[str] = set()
        parsed: dict[str, list[str]] = {}
        for entry in policy.split(";"):
            tokens = entry.strip().split()
            if not tokens:
                continue
            name = tokens[0].lower()
            if name in seen:
                if name in _DUPLICATES_ALLOWED:
                    duplicate_warning = True
                    continue
                raise CspInvalidError(f"duplicate directive {name}")
            seen.add(name)
            sources = sorted({token.strip().lower() for token in tokens[1:]})
            deduplicated: list[str] = []
            for source in sources:
                if deduplicated and source.startswith(deduplicated[-1]):
                    continue  # a narrower source after a broader one of the same policy is superfluous
                deduplicated.append(source)
            parsed[name] = deduplicated
        for name, sources in parsed.items():
            if name not in combined:
                combined[name] = [(source, index, index == 0) for source in sources] if index == 0 else []
                continue
            merged = sorted(combined[name] + [(source, index, False) for source in sources], key=lambda s: s[0])
            kept: list[tuple[str, int, bool]] = []
            for position, (source, origin, _) in enumerate(merged):
                previous = merged[position - 1] if position else None
                keep = previous is not None and previous[1] != origin and _path_part_match(previous[0], source)
                kept.append((source, origin, keep))
            combined[name] = [item for item in kept if item[2]]
    directives = {name: ({source for source, _, _ in items} or {"'none'"}) for name, items in combined.items()}
    return directives, duplicate_warning


def _path_part_match(broader: str, narrower: str) -> bool:
    return narrower.startswith(broader)


def _csp(site: SiteResponses) -> CspVerdict:
    auto = site.auto
    if auto is None:
        return CspVerdict("csp-not-implemented", None)
    parsed = _enforced_policy(auto, site.meta_csp)
    if isinstance(parsed, str):
        return CspVerdict(parsed, None)
    csp, duplicates = parsed
    result = _csp_result(csp, site.session_https)
    if result == "csp-header-invalid":
        return CspVerdict(result, None)
    if result in _CSP_PASSING and duplicates:
        result = "csp-implemented-but-duplicate-directives"
    return CspVerdict(result, dict(csp))  # the X-Frame-Options test reads frame-ancestors from this


_CSP_PASSING = {"csp-implemented-with-no-unsafe", "csp-implemented-with-no-unsafe-default-src-none",
                "csp-implemented-with-unsafe-inline-in-style-src-only",
                "csp-implemented-with-insecure-scheme-in-passive-content-only"}


def _enforced_policy(auto: Response, meta_csp: Sequence[str]) -> tuple[dict[str, set[str]], bool] | str:
    """The header and <meta> policies combined, with whether directives repeat; or the verdict when none applies."""
    http_policies = [p.strip() for value in auto.all("content-security-policy") for p in value.split(",")]
    meta_policies = [p.strip() for value in meta_csp for p in value.split(",")]
    try:
        csp, duplicates = parse_policies([*http_policies, *meta_policies])
    except CspInvalidError:
        return "csp-header-invalid"
    try:
        header_only, _ = parse_policies(http_policies) if http_policies else ({}, False)
    except CspInvalidError:
        header_only = {}
    try:
        meta_only, _ = parse_policies(meta_policies) if meta_policies else ({}, False)
    except CspInvalidError:
        meta_only = {}
    for ignored in ("frame-ancestors", "report-uri", "sandbox"):
        meta_only.pop(ignored, None)
    if not header_only and not meta_only:
        if auto.first("content-security-policy-report-only"):
            return "csp-not-implemented-but-reporting-enabled"
        return "csp-not-implemented"
    return csp, duplicates


def _csp_result(csp: dict[str, set[str]], session_https: bool) -> str:
    """The Observatory's CSP verdict, worst first; nonces, hashes and 'strict-dynamic' relax sources in place."""
    star = {"*"}
    script = csp.get("script-src") or csp.get("default-src") or star
    style = csp.get("style-src") or csp.get("default-src") or star
    obj = csp.get("object-src") or csp.get("default-src") or star
    for sources in (script, style):
        if any(source.startswith(NONCE_HASH) for source in sources):
            sources.discard("'unsafe-inline'")
    if any(source.startswith(NONCE_HASH) for source in script) and "'strict-dynamic'" in script:
        for source in list(script):
            if source.startswith(tuple(DANGEROUSLY_BROAD)) or source in ("'self'", "'unsafe-inline'"):
                script.discard(source)
    elif "'strict-dynamic'" in script:
        return "csp-header-invalid"
    if script & BROAD_OR_INLINE or obj & DANGEROUSLY_BROAD:
        return "csp-implemented-with-unsafe-inline"
    if session_https:
        active = {source for name, sources in csp.items() if name not in ("img-src", "media-src", "script-src")
                  for source in sources} | script
        if any(source.startswith(("http:", "ftp:")) for source in active):
            return "csp-implemented-with-insecure-scheme"
    if "'unsafe-eval'" in script | style:
        return "csp-implemented-with-unsafe-eval"
    if session_https:
        passive = {source for name in PASSIVE_DIRECTIVES
                   for source in (csp.get(name) or csp.get("default-src") or set())}
        if any(source.startswith(("http:", "ftp:")) for source in passive):
            return "csp-implemented-with-insecure-scheme-in-passive-content-only"
    if style & BROAD_OR_INLINE:
        return "csp-implemented-with-unsafe-inline-in-style-src-only"
    if csp.get("default-src") == {"'none'"}:
        return "csp-implemented-with-no-unsafe-default-src-none"
    return "csp-implemented-with-no-unsafe"


# ----- cookies ---------------------------------------------------------------------------------------------------

_COOKIE_ORDER = ("cookies-without-secure-flag-but-protected-by-hsts", "cookies-without-secure-flag",
                 "cookies-session-without-secure-flag-but-protected-by-hsts", "cookies-samesite-flag-invalid",
                 "cookies-anticsrf-without-samesite-flag", "cookies-session-without-httponly-flag",
                 "cookies-session-without-secure-flag")


def _worse(current: str | None, candidate: str) -> str:
    if current is None or _COOKIE_ORDER.index(candidate) > _COOKIE_ORDER.index(current):
        return candidate
    return current


def _cookie_flags(raw: str) -> tuple[str, dict[str, str | None]]:
    pair, *parts = raw.split(";")
    flags: dict[str, str | None] = {}
    for part in parts:
        key, _, value = part.partition("=")
        flags[key.strip().lower()] = value.split("=")[0].strip() if "=" in part else None
    return pair.partition("=")[0].strip(), flags


def _cookies(site: SiteResponses, hsts: bool) -> str:
    result: str | None = None
    if site.auto is not None:
        for raw in site.auto.all("set-cookie"):
            _, flags = _cookie_flags(raw)
            if "samesite" in flags and (flags["samesite"] or "").lower() not in ("lax", "strict", "none"):
                result = _worse(result, "cookies-samesite-flag-invalid")
    cookies = [c for c in (_cookie_flags(raw) for raw in site.cookies) if c[0] != "heroku-session-affinity"]
    if not cookies:
        return "cookies-not-found"
    missing_samesite = False
    for name, flags in cookies:
        key = name.lower()
        secure, http_only = "secure" in flags, "httponly" in flags
        same_site = (flags.get("samesite") or "").lower()
        session, anticsrf = ("login" in key or "sess" in key), "csrf" in key
        if not secure and same_site == "none":
            result = _worse(result, "cookies-samesite-flag-invalid")
        if not secure:
            result = _worse(result, "cookies-without-secure-flag-but-protected-by-hsts" if hsts
                            else "cookies-without-secure-flag")
        if anticsrf and same_site not in ("lax", "strict", "none"):
            result = _worse(result, "cookies-anticsrf-without-samesite-flag")
        if session and not secure:
            result = _worse(result, "cookies-session-without-secure-flag-but-protected-by-hsts" if hsts
                            else "cookies-session-without-secure-flag")
        if session and not http_only:
            result = _worse(result, "cookies-session-without-httponly-flag")
        missing_samesite |= same_site not in ("lax", "strict", "none")
    if result is not None:
        return result
    return ("cookies-secure-with-httponly-sessions" if missing_samesite
            else "cookies-secure-with-httponly-sessions-and-samesite")


# ----- cross-origin policies, CORS, referrer, XCTO, XFO ---------------------------------------------------------

_TOKEN = re.compile(r"^[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*$")


def _structured_token(value: str) -> str | None:
    """RFC 8941 Item whose bare item is a Token (parameters ignored); None for anything else."""
    item, *parameters = value.split(";")
    token = item.strip()
    for parameter in parameters:
        key, _, parameter_value = parameter.strip().partition("=")
        if not re.fullmatch(r"[a-z*][a-z0-9_\-.*]*", key) or (parameter_value and " " in parameter_value.strip()):
            return None
    return token if _TOKEN.match(token) else None


def _isolation(site: SiteResponses, header: str, prefix: str, accepted: tuple[str, ...]) -> str:
    auto = site.auto
    values = auto.all(header) if auto else []
    if len(values) > 1:
        return f"{prefix}-header-invalid"
    if not values:
        return f"{prefix}-not-implemented"
    token = _structured_token(values[0][:1024].strip())
    if token in accepted:
        return f"{prefix}-implemented-with-{token}"
    return f"{prefix}-header-invalid"


def _coop(site: SiteResponses) -> str:
    return _isolation(site, "cross-origin-opener-policy", "coop",
                      ("same-origin", "same-origin-allow-popups", "noopener-allow-popups", "unsafe-none"))


def _coep(site: SiteResponses) -> str:
    return _isolation(site, "cross-origin-embedder-policy", "coep", ("require-corp", "credentialless", "unsafe-none"))


def _corp(site: SiteResponses) -> str:
    value = site.auto.first("cross-origin-resource-policy") if site.auto else None
    if value is None:
        return "corp-not-implemented"
    token = value[:256].strip().lower()
    return {"same-site": "corp-implemented-with-same-site", "same-origin": "corp-implemented-with-same-origin",
            "cross-origin": "corp-implemented-with-cross-origin"}.get(token, "corp-header-invalid")


def _cors(site: SiteResponses) -> str:
    cors = site.cors
    allow = cors.first("access-control-allow-origin") if cors else None
    if cors is None or allow is None:
        return "cross-origin-resource-sharing-not-implemented"
    if allow[:256].strip().lower() == "*":
        return "cross-origin-resource-sharing-implemented-with-public-access"
    credentials = (cors.first("access-control-allow-credentials") or "").lower().strip() == "true"
    if site.cors_origin and site.cors_origin == allow and credentials:
        return "cross-origin-resource-sharing-implemented-with-universal-access"
    return "cross-origin-resource-sharing-implemented-with-restricted-access"


_GOOD_REFERRER = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}
_BAD_REFERRER = {"origin", "origin-when-cross-origin", "unsafe-url", "no-referrer-when-downgrade"}


def _referrer(site: SiteResponses) -> str:
    values = site.auto.all("referrer-policy") if site.auto else []
    if site.meta_referrer is not None:
        values = [*values, site.meta_referrer]
    if not values:
        return "referrer-policy-not-implemented"
    known = _GOOD_REFERRER | _BAD_REFERRER
    tokens = [token for token in (t.strip().lower() for t in ", ".join(values).split(",")) if token in known]
    if not tokens:
        return "referrer-policy-header-invalid"
    return "referrer-policy-private" if tokens[-1] in _GOOD_REFERRER else "referrer-policy-unsafe"


def _xcto(site: SiteResponses) -> str:
    value = site.auto.first("x-content-type-options") if site.auto else None
    if value is None:
        return "x-content-type-options-not-implemented"
    return ("x-content-type-options-nosniff" if value[:256].strip().lower() == "nosniff"
            else "x-content-type-options-header-invalid")


def _xfo(site: SiteResponses, csp: CspVerdict) -> str:
    value = site.auto.first("x-frame-options") if site.auto else None
    if value is None:
        result = "x-frame-options-not-implemented"
    else:
        token = value[:1024].strip().lower()
        result = ("x-frame-options-sameorigin-or-deny" if token in ("deny", "sameorigin")
                  else "x-frame-options-allow-from-origin" if token.startswith("allow-from")
                  else "x-frame-options-header-invalid")
    if csp.directives is not None and "frame-ancestors" in csp.directives:
        result = "x-frame-options-implemented-via-csp"
    return result


# ----- transport: redirection and HSTS -------------------------------------------------------------------------

def _redirection(site: SiteResponses) -> str:
    if site.http is None:
        return "redirection-not-needed-no-http"
    if not site.http.verified:
        return "redirection-invalid-cert"
    route = [urlsplit(url) for url in site.http_redirects]
    if route and all(site.preloaded(hop.hostname or "") for hop in route):
        return "redirection-all-redirects-preloaded"
    if len(route) <= 1:
        return "redirection-missing"
    if route[-1].scheme != "https":
        return "redirection-not-to-https"
    if route[1].scheme == "http":
        return "redirection-not-to-https-on-initial-redirection"
    if route[0].scheme == "http" and route[1].scheme == "https" and route[0].hostname != route[1].hostname:
        return "redirection-off-host-from-http"
    return "redirection-to-https"


def _hsts(site: SiteResponses) -> tuple[str, bool]:
    """The HSTS result, and whether it passes (the cookie test asks)."""
    https = site.https
    if https is None:
        result = "hsts-not-implemented-no-https"
    elif not https.verified:
        result = "hsts-invalid-cert"
    else:
        header = https.first("strict-transport-security")
        result = "hsts-not-implemented" if header is None else _hsts_header(header[:1024])
    if https is not None and site.preloaded(site.host):
        result = "hsts-preloaded"
    return result, result in ("hsts-implemented-max-age-at-least-six-months", "hsts-preloaded")


def _hsts_header(header: str) -> str:
    if "," in header:
        return "hsts-header-invalid"
    max_age: int | None = None
    found = False
    for part in header.split(";"):
        part = part.strip().lower()  # noqa: PLW2901 - as the Observatory normalises each part
        if part.startswith("max-age="):
            found = True
            digits = re.match(r"\s*[+-]?\d+", part[8:128])
            max_age = int(digits.group(0)) if digits else None
    if not found:
        return "hsts-header-invalid"
    if max_age is not None and max_age < SIX_MONTHS:
        return "hsts-implemented-max-age-less-than-six-months"
    return "hsts-implemented-max-age-at-least-six-months"  # max-age="123" parses to NaN there, which passes


# ----- subresource integrity ----------------------------------------------------------------------------------

_SRI_ORDER = ("sri-implemented-and-all-scripts-loaded-securely", "sri-implemented-and-external-scripts-loaded-securely",
              "sri-implemented-but-external-scripts-not-loaded-securely",
              "sri-not-implemented-but-external-scripts-loaded-securely",
              "sri-not-implemented-and-external-scripts-not-loaded-securely", "sri-not-implemented-response-not-html")


def _sri(site: SiteResponses) -> str:
    auto = site.auto
    if auto is None:
        return "sri-not-implemented-but-no-scripts-loaded"
    mime = (auto.first("content-type") or "").split(";")[0]
    if mime and mime not in ("text/html", "application/xhtml+xml"):
        return "sri-not-implemented-response-not-html"
    try:
        scripts = LexborHTMLParser(within_depth(auto.body.decode("utf-8", "replace"))).css("script")
    except Exception:
        return "html-not-parseable"
    result: str | None = None
    foreign_seen = False
    site_domain = organisational_domain(site.host)

    def worse(candidate: str) -> None:
        nonlocal result
        if result is None or _SRI_ORDER.index(candidate) > _SRI_ORDER.index(result):
            result = candidate

    for script in scripts:
        src = script.attributes.get("src")
        if src is None:
            continue
        integrity = "integrity" in script.attributes
        relative_protocol = bool(re.match(r"^//[^/]", src))
        full = bool(re.match(r"^https?://", src, re.IGNORECASE))
        relative_origin = not relative_protocol and not full
        same_domain = relative_protocol or (full and organisational_domain(urlsplit(src).hostname or "") == site_domain)
        secure_origin = relative_origin or (same_domain and not relative_protocol)
        secure_scheme = (full and urlsplit(src).scheme.lower() == "https") or (relative_origin and site.session_https)
        if not secure_origin:
            foreign_seen = True
            if integrity and not secure_scheme:
                worse("sri-implemented-but-external-scripts-not-loaded-securely")
            elif not integrity and secure_scheme:
                worse("sri-not-implemented-but-external-scripts-loaded-securely")
            elif not integrity and not secure_scheme:
                worse("sri-not-implemented-and-external-scripts-not-loaded-securely")
        elif integrity and secure_scheme and result is None:
            result = "sri-implemented-and-all-scripts-loaded-securely"
    if not scripts:
        return "sri-not-implemented-but-no-scripts-loaded"
    if result is None:
        return ("sri-implemented-and-external-scripts-loaded-securely" if foreign_seen
                else "sri-not-implemented-but-all-scripts-loaded-from-secure-origin")
    return result
