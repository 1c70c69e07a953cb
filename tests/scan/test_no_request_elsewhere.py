"""No request where nobody asked: redirects off the assets, non-web redirect schemes and AIA URLs pointing inward are
reported and never fetched (an Observer that must see nothing proves it), the outbound guard judges resolved
addresses from a real nameserver, and the web and TLS checks resolve through the configured nameservers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from connector.core.model import Asset, Status
from connector.probes.dns import DnsClient, ResolverSettings
from connector.probes.guard import GuardSettings, OutboundDenied, OutboundGuard, Resolver
from support.dns_server import DnsServer, Zone
from support.hostile import HostileServer, Observer, aia_leaf, hostile_site, redirects
from support.pki import Pki
from support.scanning import errors, result, run_scan
from support.sites import HARDENED_HSTS, redirect_to, site
from support.web import Reply, tls_context

HOST = "hostile.test"
HTTPS_HOME = {"/": Reply(200, [("Strict-Transport-Security", HARDENED_HSTS)])}


@pytest.fixture
def observer() -> Iterator[Observer]:
    with Observer() as watching:
        yield watching


@pytest.mark.parametrize("path", ["/to-port", "/to-loopback", "/to-host", "/with-query"])
def test_a_redirect_off_the_asset_is_reported_and_never_fetched(pki: Pki, catalog, observer: Observer,
                                                                path: str) -> None:
    first = redirects(HOST, observer.port)[path]
    with hostile_site(HOST, pki.intermediate.issue([HOST]), HTTPS_HOME, http_routes={"/": first}) as hostile:
        findings = run_scan([hostile.asset], catalog, ca_bundle=pki.bundle, checks=["https", "observatory"])
    observer.assert_untouched()
    offhost = result(findings, "http.redirect_offhost")
    assert offhost.status is Status.FAIL
    assert f":{observer.port}/" in offhost.message and "not followed" in offhost.message
    assert result(findings, "http.no_redirect").status is Status.FAIL
    assert not errors(findings)


@pytest.mark.parametrize(("path", "scheme"), [("/to-file", "file"), ("/to-data", "data"),
                                              ("/to-javascript", "javascript")])
def test_a_redirect_to_a_non_web_scheme_is_its_own_finding(pki: Pki, catalog, path: str, scheme: str) -> None:
    first = redirects(HOST, 1)[path]
    with hostile_site(HOST, pki.intermediate.issue([HOST]), HTTPS_HOME, http_routes={"/": first}) as hostile:
        findings = run_scan([hostile.asset], catalog, ca_bundle=pki.bundle, checks=["https", "observatory"])
        assert [request.path for request in hostile.http.requests if request.path != "/"] == []
    assert result(findings, "http.redirect_scheme").status is Status.FAIL
    assert f"{scheme}: URL" in result(findings, "http.redirect_scheme").message
    no_redirect = result(findings, "http.no_redirect")
    assert no_redirect.status is Status.FAIL and "without a redirect" not in no_redirect.message
    assert f"a {scheme}: URL, never to HTTPS" in no_redirect.message
    assert not errors(findings)


def test_a_redirect_to_another_configured_asset_is_followed(pki: Pki, catalog) -> None:
    """The other asset is the loopback address itself, so its origin is exactly where the redirect points."""
    with HostileServer({"/*": redirect_to("https://127.0.0.1:1/", 301)}) as other_http:
        other = Asset(host="127.0.0.1", ports=(1,), http_port=other_http.port)
        hop = redirect_to(f"http://127.0.0.1:{other_http.port}/next", 301)
        with hostile_site(HOST, pki.intermediate.issue([HOST]), HTTPS_HOME, http_routes={"/": hop}) as hostile:
            findings = run_scan([hostile.asset, other], catalog, ca_bundle=pki.bundle, checks=["https"])
        assert sorted(other_http.targets) == ["/", "/next"]  # the redirect from hostile.test, then other's own check
    ours = [finding for finding in findings if finding.asset.host == HOST]
    assert result(ours, "http.no_redirect").status is Status.PASS
    assert result(ours, "http.redirect_offhost").status is Status.FAIL  # it leaves the host first: HSTS lost


@pytest.mark.parametrize("aia_fetch", [False, True])
def test_an_aia_url_pointing_at_loopback_is_never_fetched(pki: Pki, catalog, observer: Observer,
                                                          aia_fetch: bool) -> None:
    leaf = aia_leaf(pki.intermediate, HOST, f"http://127.0.0.1:{observer.port}/issuer.der?from=scan")
    with HostileServer(HTTPS_HOME, tls=tls_context(leaf)) as server:
        asset = Asset(host=HOST, address="127.0.0.1", ports=(server.port,), http_port=None)
        findings = run_scan([asset], catalog, ca_bundle=pki.bundle, checks=["certificate"],
                            check_settings={"certificate": {"aia_fetch": aia_fetch}})
    observer.assert_untouched()
    undecided = result(findings, "cert.untrusted")
    assert undecided.status is Status.ERROR
    assert ("127.0.0.1 is loopback" if aia_fetch else "AIA fetching is off") in undecided.message


# --- the guard on real answers, and the one resolver --------------------------------------------------------------

ZONE = Zone("guard.test.", [
    "metadata A 169.254.169.254",
    "metadata6 AAAA fd00:ec2::254",
    "office A 10.20.30.40",
    "loop A 127.0.0.9",
    "cgnat A 100.64.1.1",
    "public A 93.184.215.14",
    "mixed A 93.184.215.14",
    "mixed A 10.0.0.1",
    "site A 127.0.0.1",
])


@pytest.fixture(scope="module")
def nameserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    with DnsServer(tmp_path_factory.mktemp("guard-dns"), [ZONE]) as server:
        yield server


def guard_of(server: DnsServer, allow: tuple[str, ...] = ()) -> OutboundGuard:
    dns = DnsClient(ResolverSettings(nameservers=("127.0.0.1",), port=server.port, timeout=1.0))
    return OutboundGuard(Resolver(dns, 2.0), GuardSettings.model_validate({"allow": allow}))


def address(guard: OutboundGuard, host: str, **kwargs: object) -> str:
    async def ask() -> str:
        return await guard.address(host, 80, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(ask())


@pytest.mark.parametrize(("name", "reason"), [
    ("metadata.guard.test", "169.254.169.254 (cloud metadata)"),
    ("metadata6.guard.test", "fd00:ec2::254 (cloud metadata)"),
    ("office.guard.test", "10.20.30.40 (private)"),
    ("loop.guard.test", "127.0.0.9 (loopback)"),
    ("cgnat.guard.test", "100.64.1.1 (carrier-grade NAT)"),
    ("mixed.guard.test", "10.0.0.1 (private)"),  # one inward answer is enough: a client may pick it
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1 is loopback"),
    ("0.0.0.0", "0.0.0.0 is unspecified"),
])
def test_the_guard_refuses_inward_answers(nameserver: DnsServer, name: str, reason: str) -> None:
    with pytest.raises(OutboundDenied) as refused:
        address(guard_of(nameserver), name)
    assert reason in str(refused.value) and "scan.outbound.allow" in str(refused.value)


def test_the_guard_lets_through_public_own_and_allowlisted_addresses(nameserver: DnsServer) -> None:
    guard = guard_of(nameserver)
    assert address(guard, "public.guard.test") == "93.184.215.14"
    assert address(guard, "metadata.guard.test", lives_there=True) == "169.254.169.254"  # the asset's own name
    assert address(guard, "office.guard.test", own=["10.20.30.40"]) == "10.20.30.40"  # the asset's address
    assert address(guard_of(nameserver, ("10.0.0.0/8",)), "office.guard.test") == "10.20.30.40"
    with pytest.raises(OutboundDenied):
        address(guard_of(nameserver, ("10.0.0.0/8",)), "loop.guard.test")  # the allowlist covers its range only


def test_web_and_tls_checks_resolve_through_the_configured_nameservers(pki: Pki, catalog,
                                                                      nameserver: DnsServer) -> None:
    """site.guard.test exists only in the test zone: the system resolver cannot find it, the nameserver can."""
    name = "site.guard.test"
    with site(name, pki.intermediate.issue([name])) as web:
        unpinned = web.asset.model_copy(update={"address": None})
        via_nameserver = run_scan([unpinned], catalog, ca_bundle=pki.bundle, checks=["https", "certificate"],
                                  dns={"nameservers": ["127.0.0.1"], "port": nameserver.port})
        via_system = run_scan([unpinned], catalog, ca_bundle=pki.bundle, checks=["https"])
    assert not errors(via_nameserver)
    https = result(via_nameserver, "https.missing")
    assert https.status is Status.PASS and https.evidence["address"] == "127.0.0.1"
    certificate = result(via_nameserver, "cert.hostname_mismatch")
    assert certificate.status is Status.PASS
    assert certificate.observed["certificate"]["obtained_from"].endswith("with 127.0.0.1")
    assert errors(via_system) and all("cannot resolve" in finding.message for finding in errors(via_system))


def test_without_nameservers_the_system_resolver_answers_from_etc_hosts() -> None:
    async def ask() -> list[str]:
        return await Resolver(None, 2.0).addresses("localhost", 80)

    assert {"127.0.0.1", "::1"} & set(asyncio.run(ask()))
