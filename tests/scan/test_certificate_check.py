"""Certificate checks against real TLS servers with certificates made by the test PKI.

Every server except the one under test is hardened (TLS 1.2/1.3, AEAD suites, HSTS, 301 redirect), and the
scan runs every check of the foundation, so a test also proves the flaw yields its rule and nothing else.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from connector.core.model import Severity, Status
from support.pki import Authority, Pki, self_signed
from support.scanning import errors, failing, result, run_scan
from support.sites import site
from support.web import Reply, WebServer, tls_context


def test_hardened_host_yields_no_failing_finding(pki: Pki, catalog) -> None:
    with site("good.test", pki.intermediate.issue(["good.test"])) as hardened:
        findings = run_scan([hardened.asset], catalog, ca_bundle=pki.bundle)
    assert failing(findings) == set()
    assert errors(findings) == []
    evaluated = {finding.rule_id for finding in findings}
    assert {"cert.expired", "cert.untrusted", "tls.protocol.sslv3", "tls.cipher.cbc", "hsts.missing",
            "http.no_redirect", "hsts.preload_ineligible"} <= evaluated


def test_expired_certificate_yields_one_critical_finding_with_not_after(pki: Pki, catalog) -> None:
    issued = pki.intermediate.issue(["expired.test"], starts_in_days=-20, days_valid=-3)
    with site("expired.test", issued) as expired:
        findings = run_scan([expired.asset], catalog, ca_bundle=pki.bundle)
    assert failing(findings) == {"cert.expired"}
    finding = result(findings, "cert.expired")
    assert finding.severity is Severity.CRITICAL
    assert finding.observed["x509"]["not_after"] == issued.certificate.not_valid_after_utc.isoformat()
    assert finding.observed["certificate"]["days_left"] < 0
    # browsers drop HSTS from a host with an invalid certificate, so it is not judged rather than passed
    assert result(findings, "hsts.missing").status is Status.ERROR


def test_not_yet_valid_certificate(pki: Pki, catalog) -> None:
    issued = pki.intermediate.issue(["early.test"], starts_in_days=10, days_valid=300)
    with site("early.test", issued) as early:
        findings = run_scan([early.asset], catalog, ca_bundle=pki.bundle)
    assert failing(findings) == {"cert.not_yet_valid"}


def test_expiry_windows_escalate_from_medium_to_high(pki: Pki, catalog) -> None:
    with site("soon.test", pki.intermediate.issue(["soon.test"], days_valid=45)) as soon, \
            site("sooner.test", pki.intermediate.issue(["sooner.test"], days_valid=10)) as sooner:
        findings = run_scan([soon.asset, sooner.asset], catalog, ca_bundle=pki.bundle)
    by_host = {f.asset.host: f for f in findings if f.rule_id == "cert.expiring_soon"}
    assert by_host["soon.test"].status is Status.FAIL and by_host["soon.test"].severity is Severity.MEDIUM
    assert by_host["sooner.test"].status is Status.FAIL and by_host["sooner.test"].severity is Severity.HIGH
    assert failing(findings) == {"cert.expiring_soon"}


def test_expiry_windows_are_configurable(pki: Pki, catalog) -> None:
    with site("soon.test", pki.intermediate.issue(["soon.test"], days_valid=45)) as soon:
        findings = run_scan([soon.asset], catalog, ca_bundle=pki.bundle,
                            check_settings={"certificate": {"expiry_warning_days": 40, "expiry_critical_days": 20}})
    assert failing(findings) == set()


def test_chain_from_an_unknown_root_is_untrusted(pki: Pki, catalog) -> None:
    rogue_intermediate = Authority("Rogue Intermediate", pki.stranger)
    with site("rogue.test", rogue_intermediate.issue(["rogue.test"])) as rogue:
        findings = run_scan([rogue.asset], catalog, ca_bundle=pki.bundle)
    assert failing(findings) == {"cert.untrusted"}
    assert "Unknown Root" in result(findings, "cert.untrusted").message


def test_missing_intermediate_is_reported_once_and_completed_through_aia(pki: Pki, catalog) -> None:
    issuer = pki.intermediate.certificate.public_bytes(Encoding.DER)
    with WebServer({"/intermediate.der": Reply(200, [("Content-Type", "application/pkix-cert")], issuer)}) as aia:
        issued = pki.intermediate.issue(["partial.test"], send_chain=False,
                                        aia_url=f"http://127.0.0.1:{aia.port}/intermediate.der")
        with site("partial.test", issued) as partial:
            findings = run_scan([partial.asset], catalog, ca_bundle=pki.bundle,
                                check_settings={"certificate": {"aia_fetch": True}},
                                outbound={"allow": ["127.0.0.0/8"]})  # the test's AIA server is on loopback
        assert aia.hits == ["/intermediate.der"]
    assert failing(findings) == {"cert.chain_incomplete"}
    assert result(findings, "cert.untrusted").status is Status.PASS


def test_missing_intermediate_without_aia_leaves_trust_undecided(pki: Pki, catalog) -> None:
    with site("partial.test", pki.intermediate.issue(["partial.test"], send_chain=False)) as partial:
        findings = run_scan([partial.asset], catalog, ca_bundle=pki.bundle, checks=["certificate"])
    assert failing(findings) == {"cert.chain_incomplete"}
    undecided = result(findings, "cert.untrusted")
    assert undecided.status is Status.ERROR
    assert "not fetchable" in undecided.message


def test_hostname_mismatch(pki: Pki, catalog) -> None:
    with site("named.test", pki.intermediate.issue(["other.test", "*.other.test"])) as named:
        findings = run_scan([named.asset], catalog, ca_bundle=pki.bundle, checks=["certificate", "tls"])
    assert failing(findings) == {"cert.hostname_mismatch"}
    assert "other.test" in result(findings, "cert.hostname_mismatch").message


def test_wildcard_covers_one_label(pki: Pki, catalog) -> None:
    with site("www.wild.test", pki.intermediate.issue(["*.wild.test"])) as one, \
            site("a.b.wild.test", pki.intermediate.issue(["*.wild.test"])) as two:
        findings = run_scan([one.asset, two.asset], catalog, ca_bundle=pki.bundle, checks=["certificate"])
    verdicts = {f.asset.host: f.status for f in findings if f.rule_id == "cert.hostname_mismatch"}
    assert verdicts == {"www.wild.test": Status.PASS, "a.b.wild.test": Status.FAIL}


def test_self_signed_certificate_is_one_finding_not_also_untrusted(pki: Pki, catalog) -> None:
    with site("self.test", self_signed("self.test")) as own:
        findings = run_scan([own.asset], catalog, ca_bundle=pki.bundle)
    assert failing(findings) == {"cert.self_signed"}
    assert not [f for f in findings if f.rule_id in ("cert.untrusted", "cert.chain_incomplete")]


def test_weak_rsa_key(pki: Pki, catalog) -> None:
    issued = pki.intermediate.issue(["weak.test"], key=rsa.generate_private_key(65537, 1024))
    with site("weak.test", issued, context=tls_context(issued, legacy=True)) as weak:
        findings = run_scan([weak.asset], catalog, ca_bundle=pki.bundle, checks=["certificate", "tls"])
    assert failing(findings) == {"cert.weak_key"}
    evidence = result(findings, "cert.weak_key").evidence
    assert evidence["public_key_size"] == 1024 and evidence["minimum"] == 2048


def test_sha1_signature(pki: Pki, catalog) -> None:
    issued = pki.intermediate.issue(["sha1.test"], signature_hash="sha1")
    with site("sha1.test", issued, context=tls_context(issued, legacy=True)) as sha1:
        findings = run_scan([sha1.asset], catalog, ca_bundle=pki.bundle, checks=["certificate", "tls"])
    assert failing(findings) == {"cert.weak_signature"}
    assert "ECDSA-SHA1" in result(findings, "cert.weak_signature").message


def test_observed_values_describe_the_leaf(pki: Pki, catalog) -> None:
    issued = pki.intermediate.issue(["seen.test", "alt.seen.test"])
    with site("seen.test", issued) as seen:
        findings = run_scan([seen.asset], catalog, ca_bundle=pki.bundle, checks=["certificate"])
    x509 = result(findings, "cert.expired").observed["x509"]
    assert x509["alternative_names"] == ["seen.test", "alt.seen.test"]
    assert x509["issuer"]["common_name"] == ["Postern Test Intermediate"]
    assert x509["serial_number"] == f"{issued.certificate.serial_number:X}"
    assert x509["public_key_algorithm"] == "RSA" and x509["public_key_size"] == 2048
    assert x509["signature_algorithm"] == "ECDSA-SHA256"
    hashes = result(findings, "cert.expired").observed["tls_server"]["hash"]
    assert hashes["sha256"] == issued.certificate.fingerprint(__import__("cryptography.hazmat.primitives.hashes",
                                                                          fromlist=["SHA256"]).SHA256()).hex().upper()
