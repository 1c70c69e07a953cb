"""HTTPS transport checks against real HTTP and HTTPS servers: redirects hop by hop, and HSTS as browsers read it."""

from __future__ import annotations

import pytest

from connector.core.model import Asset, Status
from connector.parsers.hsts import HstsError, parse_hsts
from support.pki import Pki, self_signed
from support.scanning import errors, failing, result, run_scan
from support.sites import HARDENED_HSTS, redirect_to, site
from support.web import Reply, WebServer, closed_port


def scan_https(asset: Asset, pki: Pki, catalog) -> list:
    return run_scan([asset], catalog, ca_bundle=pki.bundle, checks=["https"])


@pytest.mark.parametrize(
    ("name", "http_routes", "https_routes", "expected"),
    [
        # the HTTPS side asks for preloading, which a missing same-host redirect makes impossible
        ("plain", {"/": Reply(200)}, None, {"http.no_redirect", "hsts.preload_ineligible"}),
        ("temporary", {"/": redirect_to("{https}/", 302)}, None, {"http.redirect_temporary"}),
        ("temporary307", {"/": redirect_to("{https}/", 307)}, None, {"http.redirect_temporary"}),
        ("hops", {"/": redirect_to("/next"), "/next": redirect_to("{https}/")}, None,
         {"http.redirect_chain", "hsts.preload_ineligible"}),
        ("nohsts", None, {"/": Reply(200)}, {"hsts.missing"}),
        ("short", None, {"/": Reply(200, [("Strict-Transport-Security",
                                           "max-age=86400; includeSubDomains; preload")])},
         {"hsts.max_age_short", "hsts.preload_ineligible"}),
        ("nosub", None, {"/": Reply(200, [("Strict-Transport-Security", "max-age=63072000")])},
         {"hsts.no_include_subdomains"}),
        ("nopreload", None, {"/": Reply(200, [("Strict-Transport-Security", "max-age=63072000; includeSubDomains")])},
         set()),
        ("zero", None, {"/": Reply(200, [("Strict-Transport-Security", "max-age=0")])}, {"hsts.missing"}),
        ("invalid", None, {"/": Reply(200, [("Strict-Transport-Security", "max-age=abc; includeSubDomains")])},
         {"hsts.missing"}),
    ],
)
def test_each_transport_misconfiguration_yields_its_rules(name: str, http_routes, https_routes, expected: set[str],
                                                           pki: Pki, catalog) -> None:
    host = f"{name}.test"
    with site(host, pki.intermediate.issue([host]), http_routes=http_routes, https_routes=https_routes) as weak:
        findings = scan_https(weak.asset, pki, catalog)
    assert failing(findings) == expected
    assert errors(findings) == []


def test_redirect_to_another_host_first(pki: Pki, catalog) -> None:
    with site("apex.test", pki.intermediate.issue(["apex.test"]),
              http_routes={"/": redirect_to("https://www.apex.test/")}) as apex:
        findings = scan_https(apex.asset, pki, catalog)
    assert failing(findings) == {"http.redirect_offhost", "hsts.preload_ineligible"}
    assert result(findings, "http.redirect_offhost").evidence["first_redirect_host"] == "www.apex.test"


def test_hsts_sent_only_over_plain_http_is_ignored(pki: Pki, catalog) -> None:
    with site("leaky.test", pki.intermediate.issue(["leaky.test"]),
              http_routes={"/": Reply(301, [("Location", "{https}/"), HARDENED_HSTS], b"")},
              https_routes={"/": Reply(200)}) as leaky:
        findings = scan_https(leaky.asset, pki, catalog)
    assert failing(findings) == {"hsts.missing"}
    missing = result(findings, "hsts.missing")
    assert missing.evidence["sent_over_plain_http"] is True
    assert "plain HTTP is ignored" in missing.message


def test_only_the_first_hsts_header_counts(pki: Pki, catalog) -> None:
    headers = [("Strict-Transport-Security", "max-age=60"), HARDENED_HSTS]
    with site("twice.test", pki.intermediate.issue(["twice.test"]), https_routes={"/": Reply(200, headers)}) as twice:
        findings = scan_https(twice.asset, pki, catalog)
    assert "hsts.max_age_short" in failing(findings)


def test_no_plain_http_listener_is_not_a_missing_redirect(pki: Pki, catalog) -> None:
    with site("tlsonly.test", pki.intermediate.issue(["tlsonly.test"]), plain_http=False) as only:
        asset = only.asset.model_copy(update={"http_port": closed_port()})
        findings = scan_https(asset, pki, catalog)
    assert failing(findings) == set()
    assert result(findings, "http.no_redirect").message == "no plain-HTTP listener"


def test_https_missing_altogether(pki: Pki, catalog) -> None:
    with WebServer({"/": Reply(200)}) as plain:
        asset = Asset(host="cleartext.test", address="127.0.0.1", ports=(closed_port(),), http_port=plain.port)
        findings = scan_https(asset, pki, catalog)
    assert failing(findings) == {"https.missing", "http.no_redirect"}
    assert not [f for f in findings if f.rule_id.startswith("hsts.")]


def test_redirect_loop_is_reported_not_followed_forever(pki: Pki, catalog) -> None:
    with site("loop.test", pki.intermediate.issue(["loop.test"]),
              http_routes={"/": redirect_to("/a"), "/a": redirect_to("/")}) as loop:
        findings = scan_https(loop.asset, pki, catalog)
    assert failing(findings) == {"http.no_redirect", "hsts.preload_ineligible"}
    assert "never to HTTPS" in result(findings, "http.no_redirect").message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("max-age=31536000; includeSubDomains; preload", (31536000, True, True)),
        ('MAX-AGE="600"', (600, False, False)),
        ("includeSubDomains; max-age=5;", (5, True, False)),
    ],
)
def test_hsts_grammar(header: str, expected: tuple[int, bool, bool]) -> None:
    parsed = parse_hsts([header])
    assert (parsed.max_age, parsed.include_subdomains, parsed.preload) == expected


@pytest.mark.parametrize("header", ["includeSubDomains", "max-age=1; max-age=2", "max-age=-1", "max-age"])
def test_hsts_that_browsers_ignore(header: str) -> None:
    with pytest.raises(HstsError):
        parse_hsts([header])


def test_status_of_https_findings_when_certificate_is_bad(pki: Pki, catalog) -> None:
    with site("selfhsts.test", self_signed("selfhsts.test")) as bad:
        findings = scan_https(bad.asset, pki, catalog)
    assert result(findings, "https.missing").status is Status.PASS
    assert result(findings, "hsts.missing").status is Status.ERROR
