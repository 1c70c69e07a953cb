"""ECS and CEF output: every field we emit is a real ECS 9.4 field of the right type, CEF survives hostile values,
and event ids are deterministic."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.hashes import SHA256

from connector.core.errors import ConfigError
from connector.core.model import Asset, Criticality, Finding, Severity, Status
from connector.core.resources import mappings_dir
from connector.normalise import Normaliser
from connector.normalise.cef import escape_extension, escape_header
from support.cef import parse_cef
from support.ecs import assert_ecs_valid
from support.pki import Pki, self_signed
from support.scanning import run_scan
from support.sites import site


@pytest.fixture(scope="module")
def normaliser(catalog) -> Normaliser:
    return Normaliser.load(catalog)


def test_every_field_of_real_scan_events_is_valid_ecs(pki: Pki, catalog, normaliser: Normaliser) -> None:
    with site("ecs.test", pki.intermediate.issue(["ecs.test"])) as good, \
            site("bad.test", self_signed("bad.test")) as bad:
        findings = run_scan([good.asset, bad.asset], catalog, ca_bundle=pki.bundle)
    findings += run_scan([Asset(host="gone.invalid", http_port=None)], catalog)
    assert {f.status for f in findings} == {Status.PASS, Status.FAIL, Status.ERROR}
    for finding in findings:
        document = normaliser.ecs(finding)
        assert_ecs_valid(document)
        assert document["ecs"]["version"] == "9.4.0"
        assert document["event"]["kind"] == "state"
        assert document["rule"]["id"] == finding.rule_id
        assert document["result"]["evaluation"] == {"pass": "passed", "fail": "failed", "error": "unknown"}[
            finding.status.value]


def test_tls_fields_of_a_certificate_event(pki: Pki, catalog, normaliser: Normaliser) -> None:
    issued = pki.intermediate.issue(["fields.test"])
    with site("fields.test", issued) as good:
        findings = run_scan([good.asset], catalog, ca_bundle=pki.bundle, checks=["certificate", "tls"])
    cert = normaliser.ecs(next(f for f in findings if f.rule_id == "cert.expired"))
    x509 = cert["tls"]["server"]["x509"]
    assert x509["not_after"] == issued.certificate.not_valid_after_utc.isoformat()
    assert x509["subject"]["common_name"] == ["fields.test"]
    assert cert["tls"]["server"]["hash"]["sha256"] == issued.certificate.fingerprint(SHA256()).hex().upper()
    assert cert["url"]["full"] == f"https://fields.test:{good.https.port}/"
    assert cert["server"]["ip"] == "127.0.0.1"
    protocol = normaliser.ecs(next(f for f in findings if f.rule_id == "tls.cipher.rc4"))
    assert protocol["tls"]["version"] == "1.3" and protocol["tls"]["version_protocol"] == "tls"


def hostile_finding(**changes: Any) -> Finding:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    asset = Asset(host="evil.test", owner="team=red|blue\\ops\nnext line", criticality=Criticality.CRITICAL)
    base = dict(rule_id="cert.expired", check="certificate", status=Status.FAIL, severity=Severity.CRITICAL,
                message="a|b\\c=d\ne\rf pipe | equals = backslash \\ done", asset=asset, port=443, scheme="https",
                scan_id="scan-1", observed_at=now, first_seen=now, last_seen=now,
                evidence={"weird": "x=y|z\n"})
    return Finding(**{**base, **changes})


def test_cef_escaping_round_trips_hostile_values(normaliser: Normaliser) -> None:
    finding = hostile_finding()
    line = normaliser.cef(finding)
    assert "\n" not in line and "\r" not in line
    header, extension = parse_cef(line)
    assert header[:3] == ["CEF:0", "Postern", "Posture Connector"]
    assert header[4] == "cert.expired" and header[6] == "10"
    assert extension["msg"] == finding.message
    assert extension["cs2Label"] == "assetOwner" and extension["cs2"] == finding.asset.owner
    assert extension["externalId"] == finding.event_id
    assert extension["rt"] == str(int(finding.observed_at.timestamp() * 1000))
    assert '"weird":"x=y|z\\n"' in extension["cs5"]


def test_cef_header_escapes_pipes_and_backslashes() -> None:
    assert escape_header("a|b\\c") == "a\\|b\\\\c"
    assert escape_header("line\nbreak") == "line break"
    assert escape_extension("a=b\\c|d\ne\rf") == "a\\=b\\\\c|d\\ne\\rf"


def test_event_id_is_deterministic_per_finding_and_scan() -> None:
    first = hostile_finding()
    again = hostile_finding(message="another message, same finding")
    later = hostile_finding(scan_id="scan-2")
    other_port = hostile_finding(port=8443)
    assert first.event_id == again.event_id
    assert first.fingerprint == later.fingerprint and first.event_id != later.event_id
    assert first.fingerprint != other_port.fingerprint
    assert len(first.event_id) == 32
    script = ("from connector.core.model import event_id, fingerprint; "
              f"print(event_id(fingerprint({first.rule_id!r}, {first.asset.id!r}, {first.target.key!r}, "
              f"{first.subject!r}), {first.scan_id!r}))")
    for seed in ("1", "2"):  # another process, another hash seed: the same id, so re-sent events dedupe
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONHASHSEED": seed})
        assert other.stdout.strip() == first.event_id


def test_risk_score_weighs_asset_criticality(normaliser: Normaliser) -> None:
    critical = normaliser.ecs(hostile_finding())["event"]
    low = normaliser.ecs(hostile_finding(asset=Asset(host="x.test", criticality=Criticality.LOW)))["event"]
    passed = normaliser.ecs(hostile_finding(status=Status.PASS, severity=Severity.INFO))["event"]
    assert critical["risk_score"] == 100.0 and low["risk_score"] == pytest.approx(79.2)
    assert passed["risk_score"] == 0.0 and passed["severity"] == 1


def test_mapping_typo_is_rejected_at_load(tmp_path: Path, catalog) -> None:
    target = tmp_path / "mappings"
    target.mkdir()
    for name in ("cef.yaml", "scoring.yaml"):
        (target / name).write_text((mappings_dir() / name).read_text())
    (target / "reference").symlink_to(mappings_dir() / "reference")
    (target / "ecs.yaml").write_text(
        (mappings_dir() / "ecs.yaml").read_text().replace("  rule.name: rule.name", "  rule.nmae: rule.name"))
    with pytest.raises(ConfigError, match=r"rule\.nmae is not an ECS 9\.4 field"):
        Normaliser.load(catalog, target)


def test_categorisation_must_be_ecs_valid(tmp_path: Path, catalog) -> None:
    target = tmp_path / "mappings"
    target.mkdir()
    for name in ("cef.yaml", "scoring.yaml"):
        (target / name).write_text((mappings_dir() / name).read_text())
    (target / "reference").symlink_to(mappings_dir() / "reference")
    (target / "ecs.yaml").write_text((mappings_dir() / "ecs.yaml").read_text().replace(
        "certificate: {category: [configuration], type: [info]}",
        "certificate: {category: [configuration], type: [denied]}"))
    with pytest.raises(ConfigError, match=r"not expected with event\.category configuration"):
        Normaliser.load(catalog, target)
