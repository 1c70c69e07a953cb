"""The DNS harness itself, proved with dnspython queries only.

Nothing here uses the connector: if these pass, a failure in the connector's DNS checks is the connector's. The
tests also pin down what Knot answers (AA, rcodes, sections), which the module docstring of support.dns_server
promises to the connector's tests.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from support.dns_server import (
    DnsServer,
    SilentDnsServer,
    Zone,
    available,
    delegation_records,
    lame_nameserver,
    nameserver_records,
    query,
    txt_strings,
)

pytestmark = pytest.mark.needs_dns  # tests/run installs knot; without it these fail rather than hide

DKIM_KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 330 + "IDAQAB"  # > 255 bytes: needs splitting
GOOD = Zone("good.test.", [
    "@ 300 IN A 127.0.0.1",
    "@ IN AAAA ::1",
    '@ IN TXT "v=spf1 ip4:127.0.0.1 " "include:_spf.good.test -all"',
    '@ IN CAA 0 issue "letsencrypt.org"',
    '@ IN CAA 0 iodef "mailto:sec@good.test"',
    "@ IN MX 10 mail",
    "@ IN MX 20 mail2.other.test.",
    "mail IN A 127.0.0.7",
    '_dmarc IN TXT "v=DMARC1; p=reject; rua=mailto:d@good.test"',
    'sel._domainkey IN TXT ( "v=DKIM1; k=rsa; "\n  "p=MIIB" )',
    f"long._domainkey IN TXT {txt_strings('v=DKIM1; k=rsa; p=' + DKIM_KEY)}",
    "chain IN CNAME hop",
    "hop IN CNAME end",
    "end IN A 127.0.0.8",
    "www IN CNAME gone.test.",
    "*.wild IN A 127.0.0.9",
    "child IN NS ns.child",
    "ns.child IN A 127.0.0.2",
])
OTHER = Zone("other.test", ["@ IN A 127.0.0.5"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    """One server for the read-only tests (start-up is cheap, but sharing keeps the file well under its budget)."""
    assert available(), "Knot DNS is not installed: apt-get install knot"
    with DnsServer(tmp_path_factory.mktemp("dns"), [GOOD, OTHER], servfail=["broken.test", "sub.other.test"]) as dns_:
        yield dns_


def aa(response: dns.message.Message) -> bool:
    return bool(response.flags & dns.flags.AA)


def texts(response: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in response.answer for rdata in rrset)


# -- answers from served zones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rdtype", "expected"), [
    ("good.test", "A", ["127.0.0.1"]),
    ("good.test", "AAAA", ["::1"]),
    ("good.test", "MX", ["10 mail.good.test.", "20 mail2.other.test."]),
    ("good.test", "CAA", ['0 iodef "mailto:sec@good.test"', '0 issue "letsencrypt.org"']),
    ("good.test", "TXT", ['"v=spf1 ip4:127.0.0.1 " "include:_spf.good.test -all"']),
    ("_dmarc.good.test", "TXT", ['"v=DMARC1; p=reject; rua=mailto:d@good.test"']),
    ("sel._domainkey.good.test", "TXT", ['"v=DKIM1; k=rsa; " "p=MIIB"']),
    ("www.good.test", "CNAME", ["gone.test."]),
    ("good.test", "NS", ["ns1.good.test."]),
    ("ns1.good.test", "A", ["127.0.0.1"]),
], ids=lambda value: value if isinstance(value, str) else None)
def test_records_are_answered_authoritatively(server: DnsServer, name: str, rdtype: str, expected: list[str]) -> None:
    response = query(server.address, server.port, name, rdtype)
    assert response.rcode() == dns.rcode.NOERROR
    assert aa(response)
    assert texts(response) == expected
    answer = server.resolver().resolve(name, rdtype)
    assert sorted(rdata.to_text() for rdata in answer) == expected


def test_multi_string_txt_keeps_its_strings(server: DnsServer) -> None:
    """SPF and DKIM readers must join the strings without separators; the wire keeps them apart."""
    (spf,) = server.resolver().resolve("good.test", "TXT")
    assert spf.strings == (b"v=spf1 ip4:127.0.0.1 ", b"include:_spf.good.test -all")
    assert b"".join(spf.strings) == b"v=spf1 ip4:127.0.0.1 include:_spf.good.test -all"
    (dkim,) = server.resolver().resolve("long._domainkey.good.test", "TXT")
    assert len(dkim.strings) == 2
    assert all(len(part) <= 255 for part in dkim.strings)
    assert b"".join(dkim.strings).decode() == "v=DKIM1; k=rsa; p=" + DKIM_KEY


def test_automatic_soa_and_ns(server: DnsServer) -> None:
    (soa,) = server.resolver().resolve("good.test", "SOA")
    assert (soa.mname.to_text(), soa.rname.to_text(), soa.serial) == ("ns1.good.test.", "hostmaster.good.test.", 1)


def test_own_soa_and_ns_are_kept(tmp_path: Path) -> None:
    zone = Zone("own.test", ["@ IN SOA a.own.test. b.own.test. 42 1 1 1 1", "@ IN NS ns.elsewhere.test."])
    with DnsServer(tmp_path, [zone]) as server:
        resolver = server.resolver()
        assert resolver.resolve("own.test", "SOA")[0].serial == 42
        assert [r.to_text() for r in resolver.resolve("own.test", "NS")] == ["ns.elsewhere.test."]
        assert query(server.address, server.port, "ns1.own.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_cname_chain_inside_the_zone_is_followed(server: DnsServer) -> None:
    response = query(server.address, server.port, "chain.good.test", "A")
    assert aa(response)
    assert [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in response.answer] == [
        ("chain.good.test.", "CNAME"), ("hop.good.test.", "CNAME"), ("end.good.test.", "A")]
    answer = server.resolver().resolve("chain.good.test", "A")
    assert answer.canonical_name.to_text() == "end.good.test."
    assert [r.to_text() for r in answer] == ["127.0.0.8"]


def test_cname_out_of_the_zone_is_answered_alone(server: DnsServer) -> None:
    """A dangling CNAME: the server gives the CNAME and stops; the stub resolver calls that NoAnswer."""
    response = query(server.address, server.port, "www.good.test", "A")
    assert (response.rcode(), aa(response)) == (dns.rcode.NOERROR, True)
    assert texts(response) == ["gone.test."]
    with pytest.raises(dns.resolver.NoAnswer):
        server.resolver().resolve("www.good.test", "A")


def test_wildcard_is_synthesised(server: DnsServer) -> None:
    response = query(server.address, server.port, "anything.wild.good.test", "A")
    assert aa(response)
    assert response.answer[0].name.to_text() == "anything.wild.good.test."
    assert texts(response) == ["127.0.0.9"]


def test_missing_name_is_nxdomain_with_soa(server: DnsServer) -> None:
    response = query(server.address, server.port, "missing.good.test", "A")
    assert (response.rcode(), aa(response), response.answer) == (dns.rcode.NXDOMAIN, True, [])
    assert [dns.rdatatype.to_text(r.rdtype) for r in response.authority] == ["SOA"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        server.resolver().resolve("missing.good.test", "A")


def test_missing_type_is_nodata(server: DnsServer) -> None:
    response = query(server.address, server.port, "mail.good.test", "TXT")
    assert (response.rcode(), aa(response), response.answer) == (dns.rcode.NOERROR, True, [])
    with pytest.raises(dns.resolver.NoAnswer):
        server.resolver().resolve("mail.good.test", "TXT")


def test_delegation_inside_a_zone_is_a_referral(server: DnsServer) -> None:
    response = query(server.address, server.port, "host.child.good.test", "A")
    assert (response.rcode(), aa(response), response.answer) == (dns.rcode.NOERROR, False, [])
    assert [r.to_text() for r in response.authority] == ["child.good.test. 300 IN NS ns.child.good.test."]
    assert [r.to_text() for r in response.additional] == ["ns.child.good.test. 300 IN A 127.0.0.2"]
    with pytest.raises(dns.resolver.NoAnswer):
        server.resolver().resolve("host.child.good.test", "A")


# -- foreign names, SERVFAIL, TCP, silence -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["example.com", "test", "gone.test", "."])
def test_foreign_names_are_refused(server: DnsServer, name: str) -> None:
    response = query(server.address, server.port, name, "A")
    assert response.rcode() == dns.rcode.REFUSED
    assert not aa(response)
    assert (response.answer, response.authority, response.additional) == ([], [], [])
    with pytest.raises(dns.resolver.NoNameservers, match="REFUSED"):
        server.resolver().resolve(name, "A")


def test_chaos_queries_are_refused(server: DnsServer) -> None:
    message = dns.message.make_query("version.bind.", "TXT", "CH")
    assert dns.query.udp(message, server.address, port=server.port, timeout=2).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize(("name", "rdtype"), [("broken.test", "SOA"), ("www.broken.test", "A"),
                                              ("sub.other.test", "TXT"), ("deep.sub.other.test", "MX")])
def test_servfail_zone(server: DnsServer, name: str, rdtype: str) -> None:
    response = query(server.address, server.port, name, rdtype)
    assert response.rcode() == dns.rcode.SERVFAIL
    assert not aa(response)
    with pytest.raises(dns.resolver.NoNameservers, match="SERVFAIL"):
        server.resolver().resolve(name, rdtype)
    assert query(server.address, server.port, "other.test", "A").rcode() == dns.rcode.NOERROR  # the parent is fine


def test_tcp(server: DnsServer) -> None:
    message = dns.message.make_query("good.test", "TXT")
    response = dns.query.tcp(message, server.address, port=server.port, timeout=2)
    assert aa(response)
    assert texts(response) == ['"v=spf1 ip4:127.0.0.1 " "include:_spf.good.test -all"']
    resolver = server.resolver()
    assert sorted(r.value for r in resolver.resolve("good.test", "CAA", tcp=True)) == [
        b"letsencrypt.org", b"mailto:sec@good.test"]


def test_silent_server_times_out() -> None:
    with SilentDnsServer() as silent:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [silent.address]
        resolver.port = silent.port
        resolver.lifetime = resolver.timeout = 0.4
        started = time.monotonic()
        with pytest.raises(dns.resolver.LifetimeTimeout):
            resolver.resolve("good.test", "A")
        assert time.monotonic() - started < 1.0
        with pytest.raises(dns.exception.Timeout):  # TCP: the connection is accepted, the answer never comes
            dns.query.tcp(dns.message.make_query("good.test", "A"), silent.address, port=silent.port, timeout=0.3)


# -- lifecycle ---------------------------------------------------------------------------------------------------


def test_reload_changes_the_answer(tmp_path: Path) -> None:
    with DnsServer(tmp_path, [Zone("drift.test", ["@ IN A 127.0.0.1"]), OTHER], servfail=["gone.test"]) as server:
        resolver = server.resolver()
        assert [r.to_text() for r in resolver.resolve("drift.test", "A")] == ["127.0.0.1"]
        port = server.port
        server.reload([Zone("drift.test", ["@ IN A 127.0.0.2", '@ IN TXT "v=spf1 -all"']),
                       Zone("new.test", ["@ IN A 127.0.0.3"])])
        assert server.port == port
        assert [r.to_text() for r in resolver.resolve("drift.test", "A")] == ["127.0.0.2"]
        assert resolver.resolve("drift.test", "SOA")[0].serial == 2  # the automatic serial follows reloads
        assert [r.to_text() for r in resolver.resolve("new.test", "A")] == ["127.0.0.3"]
        assert server.query("other.test", "A").rcode() == dns.rcode.REFUSED  # dropped
        assert server.query("gone.test", "A").rcode() == dns.rcode.SERVFAIL  # servfail zones stay unless replaced
        server.reload([Zone("drift.test", ["@ IN A 127.0.0.4"])], servfail=[])
        assert [r.to_text() for r in resolver.resolve("drift.test", "A")] == ["127.0.0.4"]
        assert server.query("gone.test", "A").rcode() == dns.rcode.REFUSED


def test_reload_turns_zones_broken_and_back(tmp_path: Path) -> None:
    """Knot keeps old data when a reload fails, so becoming a SERVFAIL zone needs the harness's two-step reload."""
    with DnsServer(tmp_path, [Zone("flip.test", ["@ IN A 127.0.0.1"])]) as server:
        server.reload([], servfail=["flip.test"])
        assert server.query("flip.test", "A").rcode() == dns.rcode.SERVFAIL
        server.reload([Zone("flip.test", ["@ IN A 127.0.0.3"])], servfail=[])
        assert [r.to_text() for r in server.resolver().resolve("flip.test", "A")] == ["127.0.0.3"]


def test_reload_with_an_unchanged_own_serial_still_serves_new_data(tmp_path: Path) -> None:
    soa = "@ IN SOA ns1 hostmaster 7 1 1 1 1"
    with DnsServer(tmp_path, [Zone("fixed.test", [soa, "@ IN A 127.0.0.1"])]) as server:
        server.reload([Zone("fixed.test", [soa, "@ IN A 127.0.0.9"])])
        assert [r.to_text() for r in server.resolver().resolve("fixed.test", "A")] == ["127.0.0.9"]


def test_start_is_fast_and_stop_frees_the_port(tmp_path: Path) -> None:
    started = time.monotonic()
    with DnsServer(tmp_path, [GOOD]) as server:
        assert time.monotonic() - started < 2.0
        assert (tmp_path / "knot.conf").is_file()
        assert (tmp_path / "zones" / "good.test.zone").is_file()
        assert (tmp_path / "knot.sock").exists()
    assert not server.running
    with pytest.raises(dns.exception.Timeout):
        query(server.address, server.port, "good.test", timeout=0.2)
    with socket.socket() as probe:
        probe.bind((server.address, server.port))


def test_broken_zone_fails_with_knots_explanation(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"zone-check failed(?s:.*)bad\.test"), \
            DnsServer(tmp_path, [Zone("bad.test", ["@ IN A not-an-address"])]):
        pass


def test_long_workdir_moves_only_the_control_socket(tmp_path: Path) -> None:
    workdir = tmp_path / ("deep" * 30)
    with DnsServer(workdir, [OTHER]) as server:
        assert not server.control_socket.is_relative_to(workdir)
        server.reload([Zone("other.test", ["@ IN A 127.0.0.6"])])
        assert [r.to_text() for r in server.resolver().resolve("other.test", "A")] == ["127.0.0.6"]
        socket_dir = server.control_socket.parent
    assert not socket_dir.exists()


def test_taken_port(tmp_path: Path) -> None:
    """A port given by the test must be free; a port the harness chose is replaced when someone took it meanwhile."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with pytest.raises(RuntimeError, match="in use"), DnsServer(tmp_path / "a", [OTHER], port=taken):
            pass
        server = DnsServer(tmp_path / "b", [OTHER])
        server.port = taken  # as if the port had been taken between probing and knotd binding it
        with server:
            assert server.port != taken
            assert server.query("other.test", "A").rcode() == dns.rcode.NOERROR


def test_only_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        DnsServer(tmp_path, [OTHER], address="0.0.0.0")


# -- lame and unreachable nameservers ----------------------------------------------------------------------------


def probe(address: str, port: int, name: str) -> str:
    """What a lameness checker sees when it asks one nameserver address directly for the domain's SOA."""
    try:
        response = query(address, port, name, "SOA", timeout=0.3)
    except dns.exception.Timeout:
        return "timeout"
    rcode = dns.rcode.to_text(response.rcode())
    if response.rcode() == dns.rcode.NOERROR and aa(response) and response.answer:
        return "authoritative"
    return f"{rcode} aa={int(aa(response))} authority={[r.to_text() for r in response.authority]}"


def test_lame_nameservers_on_other_loopback_addresses(tmp_path: Path) -> None:
    nameservers = {"ns1": "127.0.0.1", "ns2": "127.0.0.2", "ns3": "127.0.0.3", "ns4": "127.0.0.4",
                   "ns5": "127.0.0.5", "ns6": "127.0.0.6"}
    zone = Zone("lame.test.", ["@ IN A 127.0.0.1", *nameserver_records(nameservers)])
    with DnsServer(tmp_path / "main", [zone]) as main, \
            lame_nameserver(tmp_path, "lame.test.", port=main.port, address="127.0.0.2", mode="refused"), \
            lame_nameserver(tmp_path, "lame.test.", port=main.port, address="127.0.0.3", mode="silent"), \
            lame_nameserver(tmp_path, "lame.test.", port=main.port, address="127.0.0.4", mode="referral"), \
            lame_nameserver(tmp_path, "lame.test.", port=main.port, address="127.0.0.5", mode="servfail"):
        # What a checker does: NS names from the domain, their addresses, then each address asked directly.
        resolver = main.resolver()
        targets = sorted(r.target.to_text() for r in resolver.resolve("lame.test", "NS"))
        addresses = {t: resolver.resolve(t, "A")[0].address for t in targets}
        assert addresses == {f"{name}.lame.test.": address for name, address in nameservers.items()}
        seen = {t: probe(address, main.port, "lame.test.") for t, address in addresses.items()}
        assert seen == {
            "ns1.lame.test.": "authoritative",
            "ns2.lame.test.": "REFUSED aa=0 authority=[]",
            "ns3.lame.test.": "timeout",
            "ns4.lame.test.": "NOERROR aa=0 authority=['lame.test. 300 IN NS ns1.lame.test.']",
            "ns5.lame.test.": "SERVFAIL aa=0 authority=[]",
            "ns6.lame.test.": "timeout",  # nothing listens: UDP is silently dropped ...
        }
        with pytest.raises(ConnectionRefusedError):  # ... and TCP is refused at once
            query("127.0.0.6", main.port, "lame.test.", tcp=True, timeout=0.3)


def test_lame_delegation_from_the_parent(tmp_path: Path) -> None:
    """The parent (test.) delegates child.test. to a nameserver that does not host it."""
    parent = Zone("test.", delegation_records("child.test.", {"ns.child.test.": "127.0.0.2"}, "test."))
    with DnsServer(tmp_path / "main", [parent]) as main, \
            lame_nameserver(tmp_path, "child.test.", port=main.port, address="127.0.0.2", mode="refused"):
        referral = main.query("child.test.", "NS")
        assert (referral.rcode(), aa(referral), referral.answer) == (dns.rcode.NOERROR, False, [])
        (ns,) = referral.authority
        (glue,) = referral.additional
        assert [r.target.to_text() for r in ns] == ["ns.child.test."]
        assert [r.address for r in glue] == ["127.0.0.2"]
        assert probe("127.0.0.2", main.port, "child.test.") == "REFUSED aa=0 authority=[]"


def test_two_instances_share_a_port_on_different_addresses(tmp_path: Path) -> None:
    with DnsServer(tmp_path / "one", [Zone("one.test")]) as one, \
            DnsServer(tmp_path / "two", [Zone("two.test")], address="127.0.0.2", port=one.port) as two:
        assert (one.address, two.address, one.port) == ("127.0.0.1", "127.0.0.2", two.port)
        assert one.query("one.test").rcode() == dns.rcode.NOERROR
        assert one.query("two.test").rcode() == dns.rcode.REFUSED
        assert two.query("two.test").rcode() == dns.rcode.NOERROR
        assert two.query("one.test").rcode() == dns.rcode.REFUSED
