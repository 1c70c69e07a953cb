"""DNS and e-mail authentication checks against a real DNS server (Knot) serving zones written here.

One domain is configured correctly and yields no failing finding; every other domain differs from it by one
planted problem and yields exactly that rule. MTA-STS policies come from a local HTTPS server; the takeover
fingerprint from a local HTTP server; lame and silent nameservers listen on other 127.0.0.x addresses.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from connector.core.catalog import Catalog
from connector.core.model import Asset, Finding, Severity, Status
from connector.normalise import Normaliser
from support.cef import parse_cef
from support.cli import connector
from support.dns_server import (
    DnsServer,
    GarbageDnsServer,
    SilentDnsServer,
    Zone,
    delegation_records,
    lame_nameserver,
    nameserver_records,
    txt_strings,
)
from support.ecs import assert_ecs_valid
from support.pki import Pki
from support.scanning import errors, failing, result, run_scan
from support.web import Reply, WebServer, tls_context

pytestmark = pytest.mark.needs_dns
MAIL_CHECKS = ("spf", "dmarc", "dkim", "mta_sts")
ALL_DNS_CHECKS = ("dns", *MAIL_CHECKS)


def rsa_key(bits: int) -> str:
    public = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def ed25519_key() -> str:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                          serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


KEY_2048, KEY_1024, KEY_ED25519 = rsa_key(2048), rsa_key(1024), ed25519_key()


def policy(domain: str, mode: str = "enforce", mx: str | None = None) -> str:
    return f"version: STSv1\nmode: {mode}\nmx: {mx or 'mail.' + domain}\nmax_age: 604800\n"


def mail_zone(origin: str, *, drop: tuple[str, ...] = (), replace: dict[str, list[str]] | None = None,
              extra: tuple[str, ...] = ()) -> Zone:
    """A domain doing everything right; ``drop`` and ``replace`` plant one problem by record purpose."""
    domain = origin.rstrip(".")
    records = {
        "address": ["@ IN A 127.0.0.1", "mail IN A 127.0.0.1", "mta-sts IN A 127.0.0.1"],
        "mx": ["@ IN MX 10 mail"],
        "caa": ['@ IN CAA 0 issue "letsencrypt.org"', '@ IN CAA 0 iodef "mailto:security@good.test"'],
        "spf": ['@ IN TXT "v=spf1 mx include:_spf.provider.test -all"'],
        "dmarc": [f'_dmarc IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc@{domain}"'],
        "dkim": [f"s2048._domainkey IN TXT {txt_strings('v=DKIM1; k=rsa; p=' + KEY_2048)}",
                 f'ed._domainkey IN TXT "v=DKIM1; k=ed25519; p={KEY_ED25519}"'],
        "mta_sts": ['_mta-sts IN TXT "v=STSv1; id=20261125T000000"'],
        "tlsrpt": [f'_smtp._tls IN TXT "v=TLSRPTv1; rua=mailto:tls-reports@{domain}"'],
    }
    for purpose in drop:
        records.pop(purpose)
    records |= replace or {}
    return Zone(origin, [line for lines in records.values() for line in lines] + list(extra))


@dataclass(frozen=True)
class Case:
    domain: str
    expected: set[str]
    zone: Zone | None = None  # None: the domain lives in a zone defined elsewhere
    selectors: tuple[str, ...] = ("s2048", "ed")
    policy: str | None = None  # the MTA-STS policy body; default: a correct enforce policy
    mail_domain: bool | None = None
    unknown: frozenset[str] = frozenset()  # rules that must come out as errors (could not be evaluated)


GOOD_EXTRA = ("old IN CNAME gone.azurewebsites.net.", "blog IN CNAME abandoned.github.io.",
              "docs IN CNAME ourdocs.github.io.", "delegated IN NS ns.delegated", "ns.delegated IN A 127.0.0.9",
              # a subdomain that sends mail, with its own SPF and DMARC
              "news IN A 127.0.0.1", 'news IN TXT "v=spf1 include:_spf.provider.test -all"',
              '_dmarc.news IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc@good.test"',
              # a web-only name that says it sends and receives no mail
              "static IN A 127.0.0.1", "static IN MX 0 .", 'static IN TXT "v=spf1 -all"')
MAIL_ONLY = mail_zone("mailonly.test.", replace={"address": ["mail IN A 127.0.0.1", "mta-sts IN A 127.0.0.1"]})
UNSUPPORTED_KEY = base64.b64encode(bytes.fromhex("300d300506032a0304030400010203")).decode()  # OID 1.2.3.4
CASES = [
    Case("good.test", set(), mail_zone("good.test.", extra=GOOD_EXTRA, replace={"dmarc": [
        '_dmarc IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc@good.test,mailto:agg@reports.test"']})),
    Case("nullmail.test", set(), mail_zone("nullmail.test.", drop=("dkim",), replace={
        "spf": ['@ IN TXT "v=spf1 -all"']}), selectors=()),
    Case("nomx.test", set(), mail_zone("nomx.test.", drop=("mx", "mta_sts", "tlsrpt"))),
    # DNS records
    Case("old.good.test", {"dns.dangling_cname"}),
    Case("blog.good.test", {"dns.dangling_cname"}),
    Case("docs.good.test", set()),
    Case("nothing.good.test", {"dns.no_address"}),
    Case("mailonly.test", {"dns.no_address"}, MAIL_ONLY),  # Lab.scan configures a web port: then it is a finding
    Case("nocaa.test", {"dns.caa_missing"}, mail_zone("nocaa.test.", drop=("caa",))),
    Case("lame.test", {"dns.nameserver_lame"}, mail_zone("lame.test.", extra=tuple(nameserver_records(
        {"ns1": "127.0.0.1", "ns2": "127.0.0.2"})))),
    Case("quiet.test", {"dns.nameserver_unreachable"}, mail_zone("quiet.test.", extra=tuple(nameserver_records(
        {"ns1": "127.0.0.1", "ns3": "127.0.0.3"})))),
    Case("strayns.test", {"dns.nameserver_unreachable"}, mail_zone("strayns.test.", extra=(
        "@ IN NS ns1", "ns1 IN A 127.0.0.1", "@ IN NS ns-gone.provider.test."))),
    Case("plame.test", {"dns.nameserver_lame"}, mail_zone("plame.test.")),  # the parent delegates to a lame one
    # SPF
    Case("spf-missing.test", {"spf.missing"}, mail_zone("spf-missing.test.", drop=("spf",))),
    Case("spf-multiple.test", {"spf.multiple"}, mail_zone("spf-multiple.test.", replace={"spf": [
        '@ IN TXT "v=spf1 mx -all"', '@ IN TXT "v=spf1 include:_spf.provider.test -all"']})),
    Case("spf-syntax.test", {"spf.syntax"}, mail_zone("spf-syntax.test.", replace={"spf": [
        '@ IN TXT "v=spf1 ip4:192.0.2.300 -all"']})),
    Case("spf-all.test", {"spf.all_pass"}, mail_zone("spf-all.test.", replace={"spf": ['@ IN TXT "v=spf1 mx +all"']})),
    Case("spf-neutral.test", {"spf.all_neutral"}, mail_zone("spf-neutral.test.", replace={"spf": [
        '@ IN TXT "v=spf1 mx ?all"']})),
    Case("spf-noall.test", {"spf.all_neutral"}, mail_zone("spf-noall.test.", replace={"spf": [
        '@ IN TXT "v=spf1 mx"']})),
    Case("spf-soft.test", {"spf.softfail"}, mail_zone("spf-soft.test.", replace={"spf": [
        '@ IN TXT "v=spf1 mx ~all"']})),
    Case("spf-redirect.test", set(), mail_zone("spf-redirect.test.", replace={"spf": [
        '@ IN TXT "v=spf1 redirect=_spf.provider.test"']})),
    Case("spf-lookups.test", {"spf.lookup_limit"}, mail_zone("spf-lookups.test.", replace={"spf": [
        '@ IN TXT "v=spf1 mx include:_spf.provider.test include:_big.provider.test -all"']})),
    Case("spf-void.test", {"spf.void_lookup_limit"}, mail_zone("spf-void.test.", replace={"spf": [
        '@ IN TXT "v=spf1 mx a:old1.spf-void.test a:old2.spf-void.test exists:old3.spf-void.test -all"']})),
    Case("spf-loop.test", {"spf.include_loop"}, mail_zone("spf-loop.test.", replace={"spf": [
        '@ IN TXT "v=spf1 mx include:_loop.provider.test -all"']})),
    Case("spf-redirect-broken.test", {"spf.include_broken"}, mail_zone("spf-redirect-broken.test.", replace={
        "spf": ['@ IN TXT "v=spf1 redirect=_spf.nowhere.provider.test"']}),  # its final all is unknown, not ?all
         unknown=frozenset({"spf.all_pass", "spf.all_neutral", "spf.softfail"})),
    Case("spf-include.test", {"spf.include_broken"}, mail_zone("spf-include.test.", replace={"spf": [
        '@ IN TXT "v=spf1 mx include:_spf.nowhere.provider.test -all"']})),
    Case("spf-ptr.test", {"spf.ptr"}, mail_zone("spf-ptr.test.", replace={"spf": ['@ IN TXT "v=spf1 mx ptr -all"']})),
    Case("spf-after.test", set(), mail_zone("spf-after.test.", replace={"spf": [  # never evaluated (5.1)
        '@ IN TXT "v=spf1 mx -all ' + " ".join(f"a:h{n}.provider.test" for n in range(9)) + ' ptr"']})),
    Case("spf-label.test", {"spf.syntax"}, mail_zone("spf-label.test.", replace={"spf": [
        f'@ IN TXT "v=spf1 include:{"a" * 64}.provider.test -all"']})),
    # DMARC
    Case("dmarc-missing.test", {"dmarc.missing"}, mail_zone("dmarc-missing.test.", drop=("dmarc",))),
    Case("dmarc-invalid.test", {"dmarc.invalid"}, mail_zone("dmarc-invalid.test.", replace={"dmarc": [
        '_dmarc IN TXT "v=DMARC1; p=block; adkim=s; aspf=s"']})),
    Case("dmarc-two.test", {"dmarc.invalid"}, mail_zone("dmarc-two.test.", replace={"dmarc": [
        '_dmarc IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:d@dmarc-two.test"',
        '_dmarc IN TXT "v=DMARC1; p=none; adkim=s; aspf=s; rua=mailto:d@dmarc-two.test"']})),
    Case("dmarc-none.test", {"dmarc.policy_none"}, mail_zone("dmarc-none.test.", replace={"dmarc": [
        '_dmarc IN TXT "v=DMARC1; p=none; adkim=s; aspf=s; rua=mailto:d@dmarc-none.test"']})),
    Case("dmarc-sp.test", {"dmarc.subdomain_policy_weaker"}, mail_zone("dmarc-sp.test.", replace={"dmarc": [
        '_dmarc IN TXT "v=DMARC1; p=reject; sp=none; adkim=s; aspf=s; rua=mailto:d@dmarc-sp.test"']})),
    Case("dmarc-pct.test", {"dmarc.pct_partial"}, mail_zone("dmarc-pct.test.", replace={"dmarc": [
        '_dmarc IN TXT "v=DMARC1; p=quarantine; pct=25; adkim=s; aspf=s; rua=mailto:d@dmarc-pct.test"']})),
    Case("dmarc-norua.test", {"dmarc.rua_missing"}, mail_zone("dmarc-norua.test.", replace={"dmarc": [
        '_dmarc IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"']})),
    Case("dmarc-external.test", {"dmarc.external_reports_unauthorized"}, mail_zone("dmarc-external.test.",
         replace={"dmarc": ['_dmarc IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:x@unauthorised.test"']})),
    Case("dmarc-badsp.test", {"dmarc.invalid", "dmarc.policy_none"}, mail_zone("dmarc-badsp.test.", replace={
        "dmarc": ['_dmarc IN TXT "v=DMARC1; p=reject; sp=rejct; adkim=s; aspf=s; rua=mailto:d@dmarc-badsp.test"']})),
    Case("dmarc-badrua.test", {"dmarc.invalid"}, mail_zone("dmarc-badrua.test.", replace={"dmarc": [
        '_dmarc IN TXT "v=DMARC1;; p=reject; adkim=s; aspf=s; rua=mailto:d@dmarc-badrua.test,mailto:x@b..test"']})),
    Case("dmarc-relaxed.test", {"dmarc.alignment_relaxed"}, mail_zone("dmarc-relaxed.test.", replace={"dmarc": [
        '_dmarc IN TXT "v=DMARC1; p=reject; aspf=s; rua=mailto:d@dmarc-relaxed.test"']})),
    # DKIM
    Case("dkim-missing.test", {"dkim.key_missing"}, mail_zone("dkim-missing.test.", drop=("dkim",), extra=(
        f'ed._domainkey IN TXT "v=DKIM1; k=ed25519; p={KEY_ED25519}"',))),
    Case("dkim-revoked.test", {"dkim.key_revoked"}, mail_zone("dkim-revoked.test.", replace={"dkim": [
        's2048._domainkey IN TXT "v=DKIM1; k=rsa; p="']}), selectors=("s2048",)),
    Case("dkim-weak.test", {"dkim.weak_key"}, mail_zone("dkim-weak.test.", replace={"dkim": [
        f's2048._domainkey IN TXT "v=DKIM1; k=rsa; p={KEY_1024}"']}), selectors=("s2048",)),
    Case("dkim-testing.test", {"dkim.testing"}, mail_zone("dkim-testing.test.", replace={"dkim": [
        f"s2048._domainkey IN TXT {txt_strings('v=DKIM1; k=rsa; t=y; p=' + KEY_2048)}"]}), selectors=("s2048",)),
    Case("dkim-invalid.test", {"dkim.invalid"}, mail_zone("dkim-invalid.test.", replace={"dkim": [
        's2048._domainkey IN TXT "v=DKIM1; k=rsa; p=not*base64"']}), selectors=("s2048",)),
    Case("dkim-algorithm.test", {"dkim.invalid"}, mail_zone("dkim-algorithm.test.", replace={"dkim": [
        f's2048._domainkey IN TXT "v=DKIM1; k=rsa; p={UNSUPPORTED_KEY}"']}), selectors=("s2048",)),
    Case("dkim-none.test", {"dkim.not_found"}, mail_zone("dkim-none.test.", drop=("dkim",)), selectors=()),
    Case("dkim-common.test", set(), mail_zone("dkim-common.test.", replace={"dkim": [
        f"selector1._domainkey IN TXT {txt_strings('v=DKIM1; k=rsa; p=' + KEY_2048)}"]}), selectors=()),
    # MTA-STS and TLS-RPT
    Case("sts-missing.test", {"mta_sts.missing"}, mail_zone("sts-missing.test.", drop=("mta_sts",))),
    Case("sts-testing.test", {"mta_sts.testing"}, mail_zone("sts-testing.test."),
         policy=policy("sts-testing.test", "testing")),
    Case("sts-none.test", {"mta_sts.disabled"}, mail_zone("sts-none.test."),
         policy="version: STSv1\nmode: none\nmax_age: 86400\n"),
    Case("sts-mismatch.test", {"mta_sts.mx_mismatch"}, mail_zone("sts-mismatch.test."),
         policy=policy("sts-mismatch.test", mx="mx.elsewhere.test")),
    Case("sts-wildcard.test", set(), mail_zone("sts-wildcard.test."), policy=policy("sts-wildcard.test",
                                                                                  mx="*.sts-wildcard.test")),
    Case("sts-redirect.test", {"mta_sts.invalid"}, mail_zone("sts-redirect.test.")),
    Case("sts-badcert.test", {"mta_sts.invalid"}, mail_zone("sts-badcert.test.")),
    Case("sts-syntax.test", {"mta_sts.invalid"}, mail_zone("sts-syntax.test."),
         policy="version: STSv1\nmode: enforcing\nmx: mail.sts-syntax.test\nmax_age: 604800\n"),
    Case("nullmx.test", set(), mail_zone("nullmx.test.", drop=("mta_sts", "tlsrpt"), replace={
        "mx": ["@ IN MX 0 ."]})),
    Case("sts-extension.test", set(), mail_zone("sts-extension.test.", replace={"mta_sts": [
        '_mta-sts IN TXT "v=STSv1; id=2026; x-vendor.ext=1"']}),
         policy=policy("sts-extension.test") + "x-vendor.note: kept for tooling\n"),
    Case("tlsrpt-missing.test", {"tlsrpt.missing"}, mail_zone("tlsrpt-missing.test.", drop=("tlsrpt",))),
    Case("tlsrpt-invalid.test", {"tlsrpt.invalid"}, mail_zone("tlsrpt-invalid.test.", replace={"tlsrpt": [
        '_smtp._tls IN TXT "v=TLSRPTv1; rua=ftp://reports.tlsrpt-invalid.test"']})),
]

SHARED_ZONES = [
    Zone("provider.test.", [
        '_spf IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"',
        '_big IN TXT "v=spf1 ' + " ".join(f"a:h{n}.provider.test" for n in range(9)) + ' -all"',
        *(f"h{n} IN A 192.0.2.{n + 1}" for n in range(9)),
        '_loop IN TXT "v=spf1 include:_loop2.provider.test -all"',
        '_loop2 IN TXT "v=spf1 include:_loop.provider.test -all"',
    ]),
    Zone("reports.test.", ['good.test._report._dmarc IN TXT "v=DMARC1"']),
    Zone("unauthorised.test.", ["@ IN MX 10 mail", "mail IN A 127.0.0.1"]),
    Zone("azurewebsites.net.", ["live IN A 127.0.0.1"]),
    Zone("github.io.", ["* IN A 127.0.0.1"]),
    Zone("test.", nameserver_records({"ns-parent": "127.0.0.6"})),
    Zone("bigtxt.test.", ['@ IN TXT "v=spf1 ip4:192.0.2.1 -all"',
                          *(f'@ IN TXT "filler-{n:02d}-{"x" * 90}"' for n in range(20))]),
]


@dataclass
class Lab:
    dns_port: int
    https_port: int
    http_port: int
    pki: Pki
    catalog: Catalog

    def scan(self, case: Case, checks: tuple[str, ...] = ALL_DNS_CHECKS, **resolver: object) -> list[Finding]:
        asset = Asset(host=case.domain, http_port=self.http_port, dkim_selectors=case.selectors,
                      mail_domain=case.mail_domain)
        return self.scan_asset(asset, checks, **resolver)

    def scan_asset(self, asset: Asset, checks: tuple[str, ...] = ALL_DNS_CHECKS, **resolver: object) -> list[Finding]:
        settings = {"nameservers": ["127.0.0.1"], "port": self.dns_port, "nameserver_port": self.dns_port,
                    "timeout": 0.5, "attempts": 1, **resolver}
        return run_scan([asset], self.catalog, checks=checks, ca_bundle=self.pki.bundle, dns=settings,
                        check_settings={"mta_sts": {"policy_port": self.https_port}})


def _policy_route(handler: BaseHTTPRequestHandler) -> Reply:
    host = (handler.headers.get("Host") or "").split(":")[0].removeprefix("mta-sts.")
    if host == "sts-redirect.test":
        return Reply(301, [("Location", "https://www.sts-redirect.test/mta-sts.txt")], b"")
    case = next((case for case in CASES if case.domain == host), None)
    body = (case.policy if case and case.policy else policy(host)).encode()
    return Reply(200, [("Content-Type", "text/plain; charset=utf-8")], body)


def _site_route(handler: BaseHTTPRequestHandler) -> Reply:
    host = (handler.headers.get("Host") or "").split(":")[0]
    if host == "blog.good.test":
        return Reply(404, body=b"<h1>404</h1><p><strong>There isn't a GitHub Pages site here.</strong></p>")
    return Reply(200, body=b"<!doctype html><title>docs</title><p>Our documentation</p>")


@pytest.fixture(scope="module")
def lab(pki: Pki, catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("dns-lab")
    zones = [zone for case in CASES if (zone := case.zone) is not None]
    names = [f"mta-sts.{case.domain}" for case in CASES if case.domain != "sts-badcert.test"]
    with DnsServer(work / "main", zones + SHARED_ZONES) as server, \
            lame_nameserver(work, "lame.test.", port=server.port, address="127.0.0.2", mode="refused"), \
            SilentDnsServer(address="127.0.0.3", port=server.port), \
            DnsServer(work / "parent", [Zone("test.", delegation_records(
                "plame.test.", {"ns1.plame.test.": "127.0.0.1", "ns-old.plame.test.": "127.0.0.2"}, "test."))],
                      address="127.0.0.6", port=server.port), \
            WebServer({"/.well-known/mta-sts.txt": _policy_route},
                      tls=tls_context(pki.intermediate.issue(names))) as https, \
            WebServer(default=_site_route) as http:
        yield Lab(server.port, https.port, http.port, pki, catalog)


@pytest.mark.parametrize("case", CASES, ids=[case.domain for case in CASES])
def test_each_domain_yields_exactly_its_planted_problem(lab: Lab, case: Case) -> None:
    findings = lab.scan(case)
    assert {finding.rule_id for finding in errors(findings)} == case.unknown
    assert failing(findings) == case.expected
    for rule in case.expected:  # each planted problem is reported once, with a message saying what and where
        matching = [f for f in findings if f.rule_id == rule and f.status is Status.FAIL]
        assert len(matching) == 1, [f.message for f in matching]


def test_the_correct_domain_records_what_it_observed_for_drift_detection(lab: Lab) -> None:
    findings = lab.scan(CASES[0], checks=("dns",))
    records = dict(findings[0].observed["dns_records"])
    assert sorted(records.pop("caa")) == ['0 iodef "mailto:security@good.test"', '0 issue "letsencrypt.org"']
    assert records == {"a": ["127.0.0.1"], "aaaa": [], "cname": [], "mx": ["10 mail.good.test"],
                       "ns": ["ns1.good.test"], "zone": "good.test"}
    ecs = findings[0].observed["dns"]
    assert ecs["question"] == {"name": "good.test", "type": "A", "class": "IN", "registered_domain": "good.test"}
    assert {(a["type"], a["data"]) for a in ecs["answers"]} >= {("A", "127.0.0.1"), ("MX", "10 mail.good.test"),
                                                                 ("NS", "ns1.good.test")}


def test_dangling_and_takeover_findings_name_the_chain_and_the_provider(lab: Lab) -> None:
    nx = result(lab.scan(Case("old.good.test", set()), checks=("dns",)), "dns.dangling_cname")
    assert "gone.azurewebsites.net" in nx.message and "NXDOMAIN" in nx.message
    taken = result(lab.scan(Case("blog.good.test", set()), checks=("dns",)), "dns.dangling_cname")
    assert taken.evidence["provider"] == "GitHub Pages" and taken.evidence["cname_chain"] == ["abandoned.github.io"]
    assert taken.severity.value == "high"


def test_a_lame_or_silent_nameserver_is_named_with_what_it_answered(lab: Lab) -> None:
    lame = result(lab.scan(Case("lame.test", set()), checks=("dns",)), "dns.nameserver_lame")
    assert lame.subject == "ns2.lame.test" and "REFUSED" in lame.message
    quiet = result(lab.scan(Case("quiet.test", set()), checks=("dns",)), "dns.nameserver_unreachable")
    assert quiet.subject == "ns3.quiet.test" and "timed out" in quiet.message


def test_a_subdomain_without_a_record_of_its_own_gets_the_organisational_policy(lab: Lab) -> None:
    findings = lab.scan(Case("docs.good.test", set(), mail_domain=True), checks=("dmarc",))
    assert failing(findings) == set()
    assert "_dmarc.good.test (the organisational domain's record)" in result(findings, "dmarc.missing").message


def test_tcp_fallback_reads_answers_too_large_for_udp(lab: Lab) -> None:
    big = Case("bigtxt.test", set())
    assert result(lab.scan(big, checks=("spf",)), "spf.missing").status is Status.PASS
    (error,) = errors(lab.scan(big, checks=("spf",), tcp_fallback=False))
    assert "truncated answer" in error.message and "tcp_fallback is off" in error.message


def test_servfail_is_an_error_finding_not_a_missing_record(pki: Pki, catalog: Catalog, tmp_path: Path) -> None:
    with DnsServer(tmp_path / "dns", [Zone("fine.test.")], servfail=["broken.test."]) as server:
        findings = Lab(server.port, 1, 1, pki, catalog).scan(Case("broken.test", set()))
    assert failing(findings) == set()
    assert {finding.check for finding in errors(findings)} == set(ALL_DNS_CHECKS)
    assert all("SERVFAIL" in finding.message for finding in errors(findings))


def test_a_resolver_that_never_answers_gives_timeout_errors(pki: Pki, catalog: Catalog) -> None:
    with SilentDnsServer() as silent:
        findings = Lab(silent.port, 1, 1, pki, catalog).scan(Case("good.test", set()), timeout=0.3)
    assert failing(findings) == set()
    assert {finding.check for finding in errors(findings)} == set(ALL_DNS_CHECKS)
    assert all("timed out" in finding.message for finding in errors(findings))


def test_events_carry_ecs_dns_fields_and_email_details_under_the_namespace(lab: Lab, catalog: Catalog) -> None:
    normaliser = Normaliser.load(catalog)
    findings = lab.scan(CASES[0]) + lab.scan(next(case for case in CASES if case.domain == "dkim-weak.test"))
    for finding in findings:
        assert_ecs_valid(normaliser.ecs(finding))
        header, _ = parse_cef(normaliser.cef(finding))
        assert header[4] == finding.rule_id
    dmarc = normaliser.ecs(next(f for f in findings if f.rule_id == "dmarc.policy_none"))
    assert dmarc["dns"]["question"] == {"name": "_dmarc.good.test", "type": "TXT", "class": "IN"}
    assert dmarc["event"]["category"] == ["configuration", "email"]
    assert dmarc["postern"]["email"]["dmarc"]["policy"] == "reject"
    assert dmarc["postern"]["email"]["dmarc"]["rua"] == ["mailto:dmarc@good.test", "mailto:agg@reports.test"]
    weak = normaliser.ecs(next(f for f in findings if f.rule_id == "dkim.weak_key" and f.status is Status.FAIL))
    assert weak["dns"]["question"]["name"] == "s2048._domainkey.dkim-weak.test"
    assert weak["postern"]["email"]["dkim"] == {"selector": "s2048", "key_type": "rsa", "key_bits": 1024,
                                                "revoked": False, "testing": False}
    spf = normaliser.ecs(next(f for f in findings if f.rule_id == "spf.lookup_limit"))
    assert spf["postern"]["email"]["spf"]["lookups"] == 2
    assert spf["postern"]["email"]["spf"]["includes"] == ["_spf.provider.test"]
    records = normaliser.ecs(next(f for f in findings if f.rule_id == "dns.caa_missing"))
    assert records["dns"]["resolved_ip"] == ["127.0.0.1"] and records["event"]["category"] == ["configuration",
                                                                                                "network"]


def test_cli_scan_asks_the_resolver_given_on_the_command_line(lab: Lab) -> None:
    done = connector("scan", "spf-soft.test", "--checks", "spf,dmarc", "--dns-server", f"127.0.0.1:{lab.dns_port}",
                     "--fail-on", "low", "--only-failed", timeout=60)
    assert done.returncode == 1, done.stderr
    assert [json.loads(line)["rule"]["id"] for line in done.stdout.splitlines()] == ["spf.softfail"]


def test_a_domain_that_does_not_exist_gets_one_error_per_mail_check_not_missing_record_noise(lab: Lab) -> None:
    findings = lab.scan(Case("nothing.good.test", set(), mail_domain=True))
    assert failing(findings) == {"dns.no_address"}
    assert {finding.check for finding in errors(findings)} == set(MAIL_CHECKS)
    assert all("does not exist (NXDOMAIN)" in finding.message for finding in errors(findings))


@pytest.mark.parametrize(("mode", "says"), [("short", "malformed answer"), ("junk", "malformed answer"),
                                            ("wrong-id", "malformed answer"), ("truncated", "closed the connection")])
def test_a_resolver_answering_garbage_gives_clear_error_findings(pki: Pki, catalog: Catalog, mode: str,
                                                                says: str) -> None:
    with GarbageDnsServer(mode) as garbage:  # type: ignore[arg-type]
        findings = Lab(garbage.port, 1, 1, pki, catalog).scan(Case("good.test", set()))
    assert failing(findings) == set()
    assert {finding.check for finding in errors(findings)} == set(ALL_DNS_CHECKS)
    assert all(says in finding.message for finding in errors(findings)), \
        [finding.message for finding in errors(findings)]


def test_a_referral_from_a_non_recursive_resolver_is_an_error_not_a_missing_record(lab: Lab) -> None:
    findings = lab.scan(Case("delegated.good.test", set(), mail_domain=True), checks=MAIL_CHECKS)
    assert failing(findings) == set()
    assert {finding.check for finding in errors(findings)} == set(MAIL_CHECKS)
    assert all("does not recurse" in finding.message for finding in errors(findings))


def not_applicable(findings: list[Finding]) -> dict[str, str]:
    return {f.check: f.evidence["reason"] for f in findings if f.status is Status.NOT_APPLICABLE}


def test_a_mail_only_domain_without_a_web_role_has_no_medium_or_worse_finding(lab: Lab) -> None:
    findings = lab.scan_asset(Asset(host="mailonly.test", dkim_selectors=("s2048",)))
    assert [f.rule_id for f in findings if f.status is Status.FAIL and f.severity.rank >= Severity.MEDIUM.rank] == []
    address = result(findings, "dns.no_address")
    assert address.status is Status.PASS and "mail-only domain" in address.message
    assert not errors(findings) and not not_applicable(findings)


def test_a_subdomain_with_its_own_spf_and_dmarc_gets_the_e_mail_checks_it_asks_for(lab: Lab) -> None:
    done = connector("scan", "news.good.test", "--checks", "spf,dmarc,dkim", "--dns-server",
                     f"127.0.0.1:{lab.dns_port}", timeout=60)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    by_check = {event["resource"]["sub_type"] for event in events if event["postern"]["status"] != "not_applicable"}
    assert by_check == {"spf", "dmarc", "dkim"}, done.stderr
    assert {"spf.missing", "spf.softfail", "dmarc.missing", "dmarc.policy_none"} <= {e["rule"]["id"] for e in events}
    dmarc = next(e for e in events if e["rule"]["id"] == "dmarc.missing")
    assert dmarc["result"]["evaluation"] == "passed" and "_dmarc.news.good.test" in dmarc["event"]["reason"]


def test_a_web_only_name_publishing_no_mail_policies_gets_them_checked(lab: Lab) -> None:
    findings = lab.scan_asset(Asset(host="static.good.test"), MAIL_CHECKS)
    assert not not_applicable(findings) and not errors(findings)
    assert failing(findings) == set()
    assert result(findings, "spf.all_pass").status is Status.PASS
    assert "sends no mail" in result(findings, "dkim.not_found").message


def test_a_check_that_does_not_apply_says_so_once_with_the_reason(lab: Lab, catalog: Catalog) -> None:
    auto = lab.scan_asset(Asset(host="docs.good.test"), MAIL_CHECKS)
    assert len(auto) == len(MAIL_CHECKS)
    assert set(not_applicable(auto)) == set(MAIL_CHECKS)
    assert all("no MX, SPF or DMARC record of its own" in reason for reason in not_applicable(auto).values())
    forced_off = lab.scan_asset(Asset(host="news.good.test", mail_domain=False), ("dns", *MAIL_CHECKS))
    assert not_applicable(forced_off) == {check: "the asset news.good.test sets mail_domain: false"
                                          for check in MAIL_CHECKS}
    normaliser = Normaliser.load(catalog)
    ecs = normaliser.ecs(auto[0])
    assert_ecs_valid(ecs)
    assert ecs["postern"]["status"] == "not_applicable" and ecs["rule"]["id"] == "scan.not_applicable"
    assert ecs["event"]["outcome"] == "unknown" and ecs["result"]["evaluation"] == "unknown"
    header, extension = parse_cef(normaliser.cef(auto[0]))
    assert header[4] == "scan.not_applicable" and extension["PosternPostureStatus"] == "not_applicable"
