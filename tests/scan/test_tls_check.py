"""Protocol-version and cipher-suite checks against real OpenSSL servers, and against a hello-only server for
what the local OpenSSL 3 cannot serve (SSLv3, RC4, 3DES, EXPORT).

Some suite classes imply others (every TLS 1.0 suite is CBC or RC4; 3DES is CBC; EXPORT suites are RSA or DH
export with a weak cipher), so those scenarios expect the implied rules too, and nothing else.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from connector.core.model import Asset, Severity, Status
from support.fake_tls import SSL3, TLS10, TLS12, LegacyServer
from support.pki import Pki
from support.scanning import errors, failing, result, run_scan
from support.sites import site
from support.web import tls_context

MODERN = 0xC02F  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256


def scan_tls(asset: Asset, pki: Pki, catalog) -> list:
    return run_scan([asset], catalog, ca_bundle=pki.bundle, checks=["certificate", "tls"])


@pytest.mark.parametrize(
    ("name", "tls", "expected"),
    [
        ("tls10", dict(minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_3,
                       ciphers="ECDHE+AESGCM:ECDHE+AES128+SHA1", legacy=True, options=ssl.OP_NO_TLSv1_1),
         {"tls.protocol.tls10", "tls.cipher.cbc"}),
        ("tls11", dict(minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_3,
                       ciphers="ECDHE+AESGCM:ECDHE+AES128+SHA1", legacy=True),
         {"tls.protocol.tls11", "tls.cipher.cbc"}),
        ("no13", dict(maximum=ssl.TLSVersion.TLSv1_2), {"tls.protocol.no_tls13"}),
        ("null", dict(ciphers="ECDHE+AESGCM:ECDHE-RSA-NULL-SHA", legacy=True), {"tls.cipher.null"}),
        ("anon", dict(ciphers="ECDHE+AESGCM:ADH-AES128-GCM-SHA256", legacy=True, dh=True),
         {"tls.cipher.anonymous"}),
        ("static", dict(ciphers="ECDHE+AESGCM:AES128-GCM-SHA256"), {"tls.cipher.static_kx"}),
        ("cbc", dict(ciphers="ECDHE+AESGCM:ECDHE-RSA-AES128-SHA256"), {"tls.cipher.cbc"}),
    ],
)
def test_each_openssl_misconfiguration_yields_its_rules(name: str, tls: dict, expected: set[str], pki: Pki,
                                                         catalog) -> None:
    host = f"{name}.test"
    issued = pki.intermediate.issue([host])
    with site(host, issued, context=tls_context(issued, **tls)) as weak:
        findings = scan_tls(weak.asset, pki, catalog)
    assert failing(findings) == expected
    assert errors(findings) == []


def test_accepted_weak_suite_is_named_with_its_protocol(pki: Pki, catalog) -> None:
    issued = pki.intermediate.issue(["anon.test"])
    context = tls_context(issued, ciphers="ECDHE+AESGCM:ADH-AES128-GCM-SHA256", legacy=True, dh=True)
    with site("anon.test", issued, context=context) as anon:
        findings = scan_tls(anon.asset, pki, catalog)
    finding = result(findings, "tls.cipher.anonymous")
    assert finding.evidence["suite"] == "TLS_DH_anon_WITH_AES_128_GCM_SHA256"
    assert finding.evidence["protocol"] == "TLSv1.2"


def test_default_negotiated_suite_and_accepted_versions_are_observed(pki: Pki, catalog) -> None:
    with site("good.test", pki.intermediate.issue(["good.test"])) as good:
        findings = scan_tls(good.asset, pki, catalog)
    observed = result(findings, "tls.protocol.tls10").observed
    # OpenSSL servers prefer AES-256-GCM among the TLS 1.3 suites
    assert observed["tls"] == {"version_protocol": "tls", "version": "1.3", "cipher": "TLS_AES_256_GCM_SHA384"}
    assert observed["tls_scan"]["accepted_versions"] == ["TLSv1.2", "TLSv1.3"]


def test_hardened_host_is_decided_in_a_handful_of_connections(pki: Pki, catalog) -> None:
    """Five version hellos plus one hello for every weak class together: sslyze needs hundreds."""
    with site("lean.test", pki.intermediate.issue(["lean.test"])) as lean:
        findings = run_scan([lean.asset], catalog, ca_bundle=pki.bundle, checks=["certificate", "tls"])
    assert failing(findings) == set()
    assert result(findings, "tls.cipher.rc4").observed["tls_scan"]["connections"] <= 7


@pytest.mark.parametrize(
    ("name", "versions", "suites", "expected"),
    [
        ("sslv3", {SSL3, TLS12}, [MODERN, 0xC013], {"tls.protocol.sslv3", "tls.cipher.cbc"}),
        ("rc4", {TLS12}, [MODERN, 0xC011], {"tls.cipher.rc4"}),  # TLS_ECDHE_RSA_WITH_RC4_128_SHA
        ("3des", {TLS12}, [MODERN, 0xC012], {"tls.cipher.des", "tls.cipher.cbc"}),
        ("export", {TLS10, TLS12}, [MODERN, 0x0014],  # TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA
         {"tls.protocol.tls10", "tls.cipher.export", "tls.cipher.des", "tls.cipher.cbc"}),
        ("exportrc4", {TLS12}, [MODERN, 0x0003],  # TLS_RSA_EXPORT_WITH_RC4_40_MD5
         {"tls.cipher.export", "tls.cipher.rc4", "tls.cipher.static_kx"}),
    ],
)
def test_suites_the_local_openssl_cannot_serve(name: str, versions: set[int], suites: list[int],
                                               expected: set[str], pki: Pki, catalog) -> None:
    host = f"{name}.test"
    with LegacyServer(versions, suites, pki.intermediate.issue([host])) as legacy:
        asset = Asset(host=host, address="127.0.0.1", ports=(legacy.port,), http_port=None)
        findings = scan_tls(asset, pki, catalog)
    # a hello-only server never offers TLS 1.3, which is its own (low) finding
    assert failing(findings) == expected | {"tls.protocol.no_tls13"}


def test_weak_class_accepted_only_under_an_older_version_is_found(pki: Pki, catalog) -> None:
    """The server picks TLS 1.2 for a TLS 1.2 hello, and accepts RC4 only when the client asks for TLS 1.0."""

    class PerVersion(LegacyServer):
        def _reply(self, hello):  # type: ignore[no-untyped-def]
            self.suites = [MODERN] if hello.version >= TLS12 else [0x0005, 0xC013]
            return super()._reply(hello)

    with PerVersion({TLS10, TLS12}, [MODERN], pki.intermediate.issue(["split.test"])) as legacy:
        asset = Asset(host="split.test", address="127.0.0.1", ports=(legacy.port,), http_port=None)
        findings = scan_tls(asset, pki, catalog)
    rc4 = result(findings, "tls.cipher.rc4")
    assert rc4.status is Status.FAIL
    assert rc4.evidence == {"class": "rc4", "accepted": True, "suite": "TLS_RSA_WITH_RC4_128_SHA",
                            "protocol": "TLSv1.0"}


@pytest.fixture(scope="module")
def dh1024(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly generated (so not well-known) 1024-bit group, as `openssl dhparam 1024` gives an admin."""
    params = tmp_path_factory.mktemp("dh") / "dh1024.pem"
    subprocess.run(["openssl", "dhparam", "-out", str(params), "1024"], check=True, capture_output=True)
    return params


DHE_AND_ECDHE = "ECDHE+AESGCM:DHE-RSA-AES128-GCM-SHA256"


def test_dhe_with_a_1024_bit_group_is_a_high_finding(dh1024: Path, pki: Pki, catalog) -> None:
    issued = pki.intermediate.issue(["dh1024.test"])
    context = tls_context(issued, ciphers=DHE_AND_ECDHE, legacy=True, dh_params=dh1024)
    with site("dh1024.test", issued, context=context) as weak:
        findings = scan_tls(weak.asset, pki, catalog)
    dh = result(findings, "tls.dh_weak")
    assert dh.status is Status.FAIL
    assert dh.severity is Severity.HIGH
    assert dh.evidence["bits"] == 1024
    assert dh.evidence["suite"] == "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"
    assert dh.evidence["well_known_group"] is None
    assert failing(findings) == {"tls.dh_weak"}
    # ECDHE wins the version probes, so one DHE-only hello is the only extra connection
    assert dh.observed["tls_scan"]["connections"] <= 7


def test_dhe_already_chosen_by_a_version_probe_costs_no_extra_connection(dh1024: Path, pki: Pki,
                                                                         catalog) -> None:
    issued = pki.intermediate.issue(["dheonly.test"])
    context = tls_context(issued, ciphers="DHE-RSA-AES128-GCM-SHA256", legacy=True, dh_params=dh1024,
                          maximum=ssl.TLSVersion.TLSv1_2)
    with site("dheonly.test", issued, context=context) as weak:
        findings = scan_tls(weak.asset, pki, catalog)
    dh = result(findings, "tls.dh_weak")
    assert (dh.status, dh.evidence["bits"], dh.evidence["protocol"]) == (Status.FAIL, 1024, "TLSv1.2")
    assert dh.observed["tls_scan"]["connections"] == 6  # five version hellos and the weak-class hello


def test_dhe_with_a_2048_bit_group_passes_and_names_the_published_group(pki: Pki, catalog) -> None:
    issued = pki.intermediate.issue(["dh2048.test"])
    context = tls_context(issued, ciphers=DHE_AND_ECDHE, dh=True)
    with site("dh2048.test", issued, context=context) as strong:
        findings = scan_tls(strong.asset, pki, catalog)
    dh = result(findings, "tls.dh_weak")
    assert dh.status is Status.PASS
    assert dh.evidence["bits"] == 2048
    assert dh.evidence["well_known_group"] == "RFC 7919 ffdhe2048"
    assert failing(findings) == set()


def test_ecdhe_only_server_has_no_dh_finding(pki: Pki, catalog) -> None:
    with site("ecdhe.test", pki.intermediate.issue(["ecdhe.test"])) as ecdhe:
        findings = scan_tls(ecdhe.asset, pki, catalog)
    dh = result(findings, "tls.dh_weak")
    assert dh.status is Status.PASS
    assert dh.evidence["accepted"] is False
    assert dh.message.startswith("not applicable: no DHE suite accepted")


def test_dhe_suite_without_a_server_key_exchange_is_an_error_not_a_pass(pki: Pki, catalog) -> None:
    """The hello-only server chooses TLS_DHE_RSA_WITH_AES_128_GCM_SHA256 but never sends its DH group."""
    with LegacyServer({TLS12}, [0x009E], pki.intermediate.issue(["noske.test"])) as broken:
        asset = Asset(host="noske.test", address="127.0.0.1", ports=(broken.port,), http_port=None)
        findings = scan_tls(asset, pki, catalog)
    dh = result(findings, "tls.dh_weak")
    assert dh.status is Status.ERROR
    assert "sent no ServerKeyExchange" in dh.message
