"""SPF lookup counting on the examples of RFC 7208 Appendix A, served by a real DNS server.

Each example record is published for example.com (with the appendix's example.com and example.org zone data) and
the spf check's count of DNS-querying terms (4.6.4) and void lookups is compared with a count done by hand from
the RFC: include, a, mx, ptr, exists and redirect cost one lookup each, through every included record;
ip4, ip6 and all cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.core.catalog import Catalog
from connector.core.model import Asset, Finding, Status
from support.dns_server import DnsServer, Zone
from support.scanning import result, run_scan

pytestmark = pytest.mark.needs_dns

# RFC 7208 Appendix A: the example.com and example.org data every example uses
EXAMPLE_COM = ["@ IN MX 10 mail-a", "@ IN MX 20 mail-b", "@ IN A 192.0.2.10", "@ IN A 192.0.2.11",
               "amy IN A 192.0.2.65", "bob IN A 192.0.2.66", "mail-a IN A 192.0.2.129", "mail-b IN A 192.0.2.130",
               "www IN CNAME example.com."]
EXAMPLE_ORG = ["@ IN MX 10 mail-c", "mail-c IN A 192.0.2.140"]


def txt(owner: str, value: str) -> str:
    return f'{owner} IN TXT "{value}"'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    with DnsServer(tmp_path_factory.mktemp("rfc7208"), [Zone("example.com.", EXAMPLE_COM),
                                                         Zone("example.org.", EXAMPLE_ORG)]) as dns:
        yield dns


def spf(server: DnsServer, catalog: Catalog, host: str, com: list[str], org: tuple[str, ...] = (),
        net: tuple[str, ...] = ()) -> list[Finding]:
    """Publish the example's records, then run the spf check on ``host`` as a mail domain."""
    server.reload([Zone("example.com.", EXAMPLE_COM + com), Zone("example.org.", EXAMPLE_ORG + list(org)),
                   Zone("example.net.", list(net))])
    return run_scan([Asset(host=host, mail_domain=True)], catalog, checks=("spf",),
                    dns={"nameservers": ["127.0.0.1"], "port": server.port, "timeout": 1, "attempts": 1})


def counted(findings: list[Finding]) -> tuple[int, int]:
    lookups = result(findings, "spf.lookup_limit").evidence["lookups"]
    voids = result(findings, "spf.void_lookup_limit").evidence["void_lookups"]
    return lookups, voids


@pytest.mark.parametrize(("record", "lookups", "voids"), [
    ("v=spf1 +all", 0, 0),
    ("v=spf1 a -all", 1, 0),
    ("v=spf1 a:example.org -all", 1, 1),  # example.org has MX but no address records
    ("v=spf1 mx -all", 1, 0),
    ("v=spf1 mx:example.org -all", 1, 0),
    ("v=spf1 mx mx:example.org -all", 2, 0),
    ("v=spf1 mx/30 mx:example.org/30 -all", 2, 0),
    ("v=spf1 ptr -all", 1, 0),
    ("v=spf1 ip4:192.0.2.128/28 -all", 0, 0),
])
def test_simple_examples_a1(server: DnsServer, catalog: Catalog, record: str, lookups: int, voids: int) -> None:
    findings = spf(server, catalog, "example.com", [txt("@", record)])
    assert counted(findings) == (lookups, voids)
    assert (result(findings, "spf.all_pass").status is Status.FAIL) == (record == "v=spf1 +all")
    assert (result(findings, "spf.ptr").status is Status.FAIL) == ("ptr" in record)


def test_multiple_domain_example_a2(server: DnsServer, catalog: Catalog) -> None:
    com = [txt("@", "v=spf1 mx -all")]
    org = (txt("@", "v=spf1 include:example.com include:example.net -all"),
           txt("la", "v=spf1 redirect=example.org"))
    net = (txt("@", "v=spf1 ip4:192.0.2.128/28 -all"),)
    direct = spf(server, catalog, "example.org", com, org, net)
    assert counted(direct) == (3, 0)  # include + mx inside example.com + include
    redirected = spf(server, catalog, "la.example.org", com, org, net)
    assert counted(redirected) == (4, 0)  # the redirect itself, then example.org's three
    assert result(redirected, "spf.all_neutral").status is Status.PASS  # -all reached through the redirect
    assert result(redirected, "spf.include_broken").status is Status.PASS


def test_dnsbl_style_example_a3_counts_macro_terms_without_following_them(server: DnsServer,
                                                                           catalog: Catalog) -> None:
    com = [txt("@", "v=spf1 mx include:mobile-users._spf.%{d} include:remote-users._spf.%{d} -all"),
           txt("mobile-users._spf", "v=spf1 exists:%{l1r+}.%{d}"),
           txt("remote-users._spf", "v=spf1 exists:%{ir}.%{l1r+}.%{d}")]
    findings = spf(server, catalog, "example.com", com)
    assert counted(findings) == (5, 0)  # mx, two includes (%{d} expanded), one exists in each
    assert result(findings, "spf.lookup_limit").evidence["includes"] == ["mobile-users._spf.example.com",
                                                                         "remote-users._spf.example.com"]


def test_multiple_requirements_example_a4(server: DnsServer, catalog: Catalog) -> None:
    com = [txt("@", "v=spf1 -include:ip4._spf.%{d} -include:ptr._spf.%{d} +all"),
           txt("ip4._spf", "v=spf1 -ip4:192.0.2.0/24 +all"),
           txt("ptr._spf", "v=spf1 -ptr +all")]
    findings = spf(server, catalog, "example.com", com)
    assert counted(findings) == (3, 0)
    assert result(findings, "spf.all_pass").status is Status.FAIL  # the example's own +all, reported as such
    assert "-ptr (in ptr._spf.example.com)" in result(findings, "spf.ptr").message


def test_eleven_lookups_exceed_the_limit_and_ten_do_not(server: DnsServer, catalog: Catalog) -> None:
    ten = [txt("@", "v=spf1 " + " ".join(["a"] * 5 + ["mx"] * 5) + " -all")]
    assert result(spf(server, catalog, "example.com", ten), "spf.lookup_limit").status is Status.PASS
    eleven = [txt("@", "v=spf1 " + " ".join(["a"] * 6 + ["mx"] * 5) + " -all")]
    over = result(spf(server, catalog, "example.com", eleven), "spf.lookup_limit")
    assert over.status is Status.FAIL and over.evidence["lookups"] == 11
