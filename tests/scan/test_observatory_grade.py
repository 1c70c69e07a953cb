"""The page grade against the MDN HTTP Observatory's scoring (algorithm 6): every row of the scoring table, the
bonus rule and every grade boundary, with the Observatory's own test-suite examples as inputs."""

from __future__ import annotations

import pytest

from connector.scan.checks.observatory.grader import (
    ALGORITHM_VERSION,
    GRADES,
    SCORE_TABLE,
    Response,
    ScoredResult,
    SiteResponses,
    grade,
    grade_for,
    score,
)

HTML = {"content-type": ["text/html"]}


def site(headers: dict[str, list[str]] | None = None, *, body: bytes = b"<html></html>", https: bool = True,
         verified: bool = True, http_chain: tuple[str, ...] = ("http://example.com/", "https://example.com/"),
         http: bool = True, cookies: tuple[str, ...] = (), meta_csp: tuple[str, ...] = (),
         meta_referrer: str | None = None, cors: dict[str, list[str]] | None = None,
         preloaded: frozenset[str] = frozenset()) -> SiteResponses:
    auto = Response(200, {**HTML, **(headers or {})}, body, verified)
    origin = "https://cors-probe.postern.invalid"
    return SiteResponses(
        host="example.com", session_https=True, auto=auto, https=auto if https else None,
        http=Response(200, {}, b"", True) if http else None, http_redirects=http_chain,
        cors=Response(200, cors or {}) if cors is not None else None, cors_origin=origin, cookies=cookies,
        meta_csp=meta_csp, meta_referrer=meta_referrer, preloaded=lambda host: host in preloaded)


def result_of(responses: SiteResponses, test: str) -> str:
    return next(r.result for r in grade(responses).results if r.test == test)


CSP = "content-security-policy"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, "csp-not-implemented"),
        ("  ", "csp-header-invalid"),
        ("default-src 'none'; default-src 'none'", "csp-header-invalid"),
        ("default-src 'none'; script-src 'strict-dynamic'", "csp-header-invalid"),
        ("defa", "csp-header-invalid"),
        ("script-src 'unsafe-inline'", "csp-implemented-with-unsafe-inline"),
        ("default-src 'UNSAFE-INLINE'", "csp-implemented-with-unsafe-inline"),
        ("upgrade-insecure-requests", "csp-implemented-with-unsafe-inline"),
        ("script-src 'none'", "csp-implemented-with-unsafe-inline"),  # object-src falls back to *
        ("default-src 'none'; script-src https://*", "csp-implemented-with-unsafe-inline"),
        ("default-src 'none'; script-src http://mozilla.org", "csp-implemented-with-insecure-scheme"),
        ("default-src 'none'; img-src http://mozilla.org",
         "csp-implemented-with-insecure-scheme-in-passive-content-only"),
        ("default-src 'none'; script-src 'unsafe-eval'", "csp-implemented-with-unsafe-eval"),
        ("object-src 'none'; script-src 'none'; style-src 'unsafe-inline'",
         "csp-implemented-with-unsafe-inline-in-style-src-only"),
        ("default-src https://mozilla.org", "csp-implemented-with-no-unsafe"),
        ("object-src 'none'; script-src 'strict-dynamic' 'nonce-abc' 'unsafe-inline'; style-src 'none'",
         "csp-implemented-with-no-unsafe"),
        ("default-src", "csp-implemented-with-no-unsafe-default-src-none"),
        ("default-src 'none'; script-src 'strict-dynamic' 'sha256-abc123' https://*",
         "csp-implemented-with-no-unsafe-default-src-none"),
        ("default-src 'none'; report-uri /a; report-uri /b", "csp-implemented-but-duplicate-directives"),
    ],
)
def test_csp_results(policy: str | None, expected: str) -> None:
    headers = {} if policy is None else {"content-security-policy": [policy]}
    assert result_of(site(headers), CSP) == expected


def test_csp_report_only_and_meta_and_intersection() -> None:
    report_only = site({"content-security-policy-report-only": ["default-src 'none'"]})
    assert result_of(report_only, CSP) == "csp-not-implemented-but-reporting-enabled"
    intersected = site({"content-security-policy": ["default-src http:"]}, meta_csp=("default-src https:",))
    assert result_of(intersected, CSP) == "csp-implemented-with-no-unsafe-default-src-none"
    meta_frame_only = site(meta_csp=("frame-ancestors 'none'",))
    assert result_of(meta_frame_only, CSP) == "csp-not-implemented"
    two = site({"content-security-policy": ["default-src 'none'; script-src 'self', default-src 'none'; "
                                            "script-src 'self'"]})
    assert result_of(two, CSP) == "csp-implemented-with-no-unsafe-default-src-none"


@pytest.mark.parametrize(
    ("cookies", "hsts", "expected"),
    [
        ((), None, "cookies-not-found"),
        (("SESSIONID=1; Secure; HttpOnly", "foo=bar; Secure", "heroku-session-affinity=x"), None,
         "cookies-secure-with-httponly-sessions"),
        (("SESSIONID=1; Secure; HttpOnly; SameSite=Strict", "foo=bar; Secure; SameSite=None"), None,
         "cookies-secure-with-httponly-sessions-and-samesite"),
        (("CSRFTOKEN=bar; Secure; HttpOnly",), None, "cookies-anticsrf-without-samesite-flag"),
        (("foo=bar; Secure; SameSite=True",), None, "cookies-samesite-flag-invalid"),
        (("foo=bar",), "max-age=15768000", "cookies-without-secure-flag-but-protected-by-hsts"),
        (("SESSIONID=bar; HttpOnly",), "max-age=15768000", "cookies-session-without-secure-flag-but-protected-by-hsts"),
        (("foo=bar",), None, "cookies-without-secure-flag"),
        (("SESSIONID=bar; Secure",), None, "cookies-session-without-httponly-flag"),
        (("SESSIONID=bar",), None, "cookies-session-without-secure-flag"),
    ],
)
def test_cookie_results(cookies: tuple[str, ...], hsts: str | None, expected: str) -> None:
    headers = {"set-cookie": list(cookies)}
    if hsts:
        headers["strict-transport-security"] = [hsts]
    assert result_of(site(headers, cookies=cookies), "cookies") == expected


@pytest.mark.parametrize(
    ("cors", "expected"),
    [
        (None, "cross-origin-resource-sharing-not-implemented"),
        ({"access-control-allow-origin": ["*"]}, "cross-origin-resource-sharing-implemented-with-public-access"),
        ({"access-control-allow-origin": ["https://mozilla.org"]},
         "cross-origin-resource-sharing-implemented-with-restricted-access"),
        ({"access-control-allow-origin": ["https://cors-probe.postern.invalid"],
          "access-control-allow-credentials": ["true"]},
         "cross-origin-resource-sharing-implemented-with-universal-access"),
    ],
)
def test_cors_results(cors: dict[str, list[str]] | None, expected: str) -> None:
    assert result_of(site(cors=cors), "cross-origin-resource-sharing") == expected


@pytest.mark.parametrize(
    ("chain", "http", "verified", "preloaded", "expected"),
    [
        ((), False, True, frozenset(), "redirection-not-needed-no-http"),
        (("http://example.com/",), True, True, frozenset(), "redirection-missing"),
        (("http://example.com/", "http://example.com/a"), True, True, frozenset(), "redirection-not-to-https"),
        (("http://example.com/", "https://example.com/"), True, True, frozenset(), "redirection-to-https"),
        (("http://example.com/", "https://example.com:8443/"), True, True, frozenset(), "redirection-to-https"),
        (("http://example.com/", "http://www.example.com/", "https://www.example.com/"), True, True, frozenset(),
         "redirection-not-to-https-on-initial-redirection"),
        (("http://example.com/", "https://www.example.com/"), True, True, frozenset(),
         "redirection-off-host-from-http"),
        (("http://example.com/", "https://example.com/"), True, False, frozenset(), "redirection-invalid-cert"),
        (("http://example.com/", "https://example.com/"), True, True, frozenset({"example.com"}),
         "redirection-all-redirects-preloaded"),
    ],
)
def test_redirection_results(chain: tuple[str, ...], http: bool, verified: bool, preloaded: frozenset[str],
                             expected: str) -> None:
    responses = site(http_chain=chain, http=http, preloaded=preloaded)
    if not verified:
        responses = SiteResponses(**{**responses.__dict__, "http": Response(200, {}, b"", False)})
    assert result_of(responses, "redirection") == expected


@pytest.mark.parametrize(
    ("values", "meta", "expected"),
    [
        ([], None, "referrer-policy-not-implemented"),
        (["STRICT-ORIGIN"], None, "referrer-policy-private"),
        (["unsafe-url"], "no-referrer, same-origin", "referrer-policy-private"),
        (["whimsy"], None, "referrer-policy-header-invalid"),
        (["origin-when-cross-origin, no-referrer, unsafe-url"], None, "referrer-policy-unsafe"),
        (["no-referrer, whimsy"], None, "referrer-policy-private"),
    ],
)
def test_referrer_results(values: list[str], meta: str | None, expected: str) -> None:
    headers = {"referrer-policy": values} if values else {}
    assert result_of(site(headers, meta_referrer=meta), "referrer-policy") == expected


@pytest.mark.parametrize(
    ("header", "https", "verified", "preloaded", "expected"),
    [
        (None, True, True, False, "hsts-not-implemented"),
        ("includeSubDomains; preload", True, True, False, "hsts-header-invalid"),
        ("max-age=15768000, max-age=15768000", True, True, False, "hsts-header-invalid"),
        ("max-age=1", False, True, False, "hsts-not-implemented-no-https"),
        ("max-age=31536000", True, False, False, "hsts-invalid-cert"),
        ("max-age=86400", True, True, False, "hsts-implemented-max-age-less-than-six-months"),
        ("max-age=15552000", True, True, False, "hsts-implemented-max-age-at-least-six-months"),
        ("max-age=15551999", True, True, False, "hsts-implemented-max-age-less-than-six-months"),
        (None, True, False, True, "hsts-preloaded"),
    ],
)
def test_hsts_results(header: str | None, https: bool, verified: bool, preloaded: bool, expected: str) -> None:
    headers = {"strict-transport-security": [header]} if header else {}
    responses = site(headers, https=https, verified=verified,
                     preloaded=frozenset({"example.com"}) if preloaded else frozenset())
    assert result_of(responses, "strict-transport-security") == expected


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<p>no scripts</p>", "text/html", "sri-not-implemented-but-no-scripts-loaded"),
        (b"{}", "application/json", "sri-not-implemented-response-not-html"),
        (b'<script src="/a.js"></script>', "text/html",
         "sri-not-implemented-but-all-scripts-loaded-from-secure-origin"),
        (b'<script src="https://cdn.example.com/a.js"></script>', "text/html",
         "sri-not-implemented-but-all-scripts-loaded-from-secure-origin"),  # same registrable domain
        (b'<script src="https://cdn.other.org/a.js" integrity="sha384-x"></script>', "text/html",
         "sri-implemented-and-external-scripts-loaded-securely"),
        (b'<script src="/a.js" integrity="sha384-x"></script>', "text/html",
         "sri-implemented-and-all-scripts-loaded-securely"),
        (b'<script src="https://cdn.other.org/a.js"></script>', "text/html",
         "sri-not-implemented-but-external-scripts-loaded-securely"),
        (b'<script src="http://cdn.other.org/a.js" integrity="sha384-x"></script>', "text/html",
         "sri-implemented-but-external-scripts-not-loaded-securely"),
        (b'<script src="//example.com/a.js" integrity="sha384-x"></script>', "text/html",
         "sri-implemented-but-external-scripts-not-loaded-securely"),
        (b'<script src="http://cdn.other.org/a.js"></script>', "text/html",
         "sri-not-implemented-and-external-scripts-not-loaded-securely"),
    ],
)
def test_sri_results(body: bytes, content_type: str, expected: str) -> None:
    responses = site({"content-type": [content_type]}, body=body)
    assert result_of(responses, "subresource-integrity") == expected


@pytest.mark.parametrize(
    ("test", "header", "values", "expected"),
    [
        ("x-content-type-options", "x-content-type-options", [], "x-content-type-options-not-implemented"),
        ("x-content-type-options", "x-content-type-options", ["nosniff, nosniff"],
         "x-content-type-options-header-invalid"),
        ("x-content-type-options", "x-content-type-options", ["nosniff "], "x-content-type-options-nosniff"),
        ("x-frame-options", "x-frame-options", [], "x-frame-options-not-implemented"),
        ("x-frame-options", "x-frame-options", ["SAMEORIGIN, SAMEORIGIN"], "x-frame-options-header-invalid"),
        ("x-frame-options", "x-frame-options", ["ALLOW-FROM https://mozilla.org"],
         "x-frame-options-allow-from-origin"),
        ("x-frame-options", "x-frame-options", ["DENY "], "x-frame-options-sameorigin-or-deny"),
        ("cross-origin-resource-policy", "cross-origin-resource-policy", [], "corp-not-implemented"),
        ("cross-origin-resource-policy", "cross-origin-resource-policy", ["whimsy"], "corp-header-invalid"),
        ("cross-origin-resource-policy", "cross-origin-resource-policy", ["same-site"],
         "corp-implemented-with-same-site"),
        ("cross-origin-resource-policy", "cross-origin-resource-policy", ["same-origin"],
         "corp-implemented-with-same-origin"),
        ("cross-origin-resource-policy", "cross-origin-resource-policy", ["cross-origin"],
         "corp-implemented-with-cross-origin"),
        ("cross-origin-opener-policy", "cross-origin-opener-policy", [], "coop-not-implemented"),
        ("cross-origin-opener-policy", "cross-origin-opener-policy", ["same-origin"],
         "coop-implemented-with-same-origin"),
        ("cross-origin-opener-policy", "cross-origin-opener-policy", ["same-origin-allow-popups; report-to=\"e\""],
         "coop-implemented-with-same-origin-allow-popups"),
        ("cross-origin-opener-policy", "cross-origin-opener-policy", ["noopener-allow-popups"],
         "coop-implemented-with-noopener-allow-popups"),
        ("cross-origin-opener-policy", "cross-origin-opener-policy", ["unsafe-none"],
         "coop-implemented-with-unsafe-none"),
        ("cross-origin-opener-policy", "cross-origin-opener-policy", ["Same-Origin"], "coop-header-invalid"),
        ("cross-origin-opener-policy", "cross-origin-opener-policy", ['"same-origin"'], "coop-header-invalid"),
        ("cross-origin-opener-policy", "cross-origin-opener-policy", ["same-origin", "same-origin"],
         "coop-header-invalid"),
        ("cross-origin-embedder-policy", "cross-origin-embedder-policy", [], "coep-not-implemented"),
        ("cross-origin-embedder-policy", "cross-origin-embedder-policy", ["require-corp"],
         "coep-implemented-with-require-corp"),
        ("cross-origin-embedder-policy", "cross-origin-embedder-policy", ["credentialless"],
         "coep-implemented-with-credentialless"),
        ("cross-origin-embedder-policy", "cross-origin-embedder-policy", ["unsafe-none"],
         "coep-implemented-with-unsafe-none"),
        ("cross-origin-embedder-policy", "cross-origin-embedder-policy", ["require corp"], "coep-header-invalid"),
    ],
)
def test_header_tests(test: str, header: str, values: list[str], expected: str) -> None:
    assert result_of(site({header: values} if values else {}), test) == expected


def test_frame_ancestors_counts_for_x_frame_options() -> None:
    responses = site({"x-frame-options": ["DENY"], "content-security-policy": ["frame-ancestors https://mozilla.org"]})
    assert result_of(responses, "x-frame-options") == "x-frame-options-implemented-via-csp"


def test_every_row_of_the_scoring_table_is_reachable_by_a_test() -> None:
    reached = {name for function in (test_csp_results, test_cookie_results, test_cors_results,
                                     test_redirection_results, test_referrer_results, test_hsts_results,
                                     test_sri_results, test_header_tests)
               for mark in function.pytestmark for values in mark.args[1] for name in values
               if isinstance(name, str) and name in SCORE_TABLE}  # type: ignore[attr-defined]
    reached |= {"csp-not-implemented-but-reporting-enabled", "x-frame-options-implemented-via-csp"}
    assert set(SCORE_TABLE) - reached == {"html-not-parseable"}  # unreachable with an HTML5 parser, as there


def results(*modifiers: int) -> tuple[ScoredResult, ...]:
    return tuple(ScoredResult(f"t{i}", "x", modifier) for i, modifier in enumerate(modifiers))


def test_bonus_counts_only_when_penalties_leave_at_least_90() -> None:
    assert score(results(-10, 5, 10)).score == 105  # 100 - 10 = 90: bonuses count
    assert score(results(-15, 5, 10)).score == 85  # 100 - 15 = 85: bonuses dropped
    assert score(results(5, 10, 10, 10)).score == 135 and score(results(5, 10)).grade == "A+"
    assert score(results(-50, -50, -50)).score == 0  # clamped


@pytest.mark.parametrize(
    ("total", "expected"),
    [(135, "A+"), (100, "A+"), (99, "A"), (90, "A"), (89, "A-"), (85, "A-"), (84, "B+"), (80, "B+"), (79, "B"),
     (70, "B"), (69, "B-"), (65, "B-"), (64, "C+"), (60, "C+"), (59, "C"), (50, "C"), (49, "C-"), (45, "C-"),
     (44, "D+"), (40, "D+"), (39, "D"), (30, "D"), (29, "D-"), (25, "D-"), (24, "F"), (0, "F")],
)
def test_grade_boundaries(total: int, expected: str) -> None:
    assert grade_for(total) == expected


def test_version_and_grade_scale() -> None:
    assert ALGORITHM_VERSION == 6
    assert GRADES == ("A+", "A", "A-", "B+", "B", "B-", "C+", "C", "C-", "D+", "D", "D-", "F")
