"""Observation drift as the SIEM receives it: `connector scan -c CONFIG` against real servers that the test
reconfigures between scans. Each change is one drift event saying what changed and between which observations;
an unchanged rescan, an outage or a disabled kind is none."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes

from connector.runtime.state import StateStore
from emulators.elasticsearch import ElasticsearchEmulator
from support.cef import parse_cef
from support.cli import connector
from support.dns_server import DnsServer, Zone
from support.ecs import assert_ecs_valid
from support.pki import Pki
from support.sites import HARDENED_HEADERS, Site, hardened_routes, site
from support.web import MODERN_CIPHERS, Reply, tls_context

HOST = "shop.drift.test"


@contextmanager
def watched_site(pki: Pki, tmp_path: Path, **config: Any) -> Iterator[tuple[Site, Path]]:
    """A hardened site with a redirecting key route, configured with a state directory; ``config`` adds keys."""
    routes = hardened_routes()
    routes["/account"] = Reply(301, [*HARDENED_HEADERS, ("Location", "/login")], b"")
    with site(HOST, pki.intermediate.issue([HOST])) as hosted:
        hosted.https.routes.update(routes)
        asset = hosted.asset.model_dump(mode="json", exclude_none=True) | {"routes": ["/", "/account"]}
        write_config(tmp_path, {"assets": [asset], **config}, pki)
        yield hosted, tmp_path / "config.yaml"


def write_config(tmp_path: Path, document: dict[str, Any], pki: Pki) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "scan": {"ca_bundle": str(pki.bundle)}, "state_dir": str(tmp_path / "state"), **document}))


def scan(config: Path, checks: str, output_format: str = "ecs") -> tuple[list[Any], list[Any]]:
    """(state events, drift events) of one scan; CEF lines come as their extension pairs."""
    out = config.parent / "events.out"
    done = connector("scan", "-c", str(config), "--checks", checks, "--format", output_format, "-o", str(out))
    assert done.returncode in (0, 1), done.stderr
    lines = out.read_text().splitlines()
    if output_format == "cef":
        pairs = [parse_cef(line)[1] for line in lines]
        return ([p for p in pairs if not p.get("act", "").startswith("drift-")],
                [p for p in pairs if p.get("act", "").startswith("drift-")])
    documents = [json.loads(line) for line in lines]
    return ([doc for doc in documents if doc["event"]["kind"] == "state"],
            [doc for doc in documents if doc["event"].get("dataset") == "postern.drift"])


def parsed(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_replaced_certificate_is_one_event_bounded_by_the_last_scan_that_saw_the_old_one(
        pki: Pki, tmp_path: Path) -> None:
    with watched_site(pki, tmp_path) as (hosted, config):
        _, first = scan(config, "certificate")
        confirming, unchanged = scan(config, "certificate")
        replacement = pki.intermediate.issue([HOST], days_valid=90)
        hosted.https.serve_tls(tls_context(replacement))
        detecting, drifts = scan(config, "certificate")
    assert first == [] and unchanged == []  # a baseline, then the same certificate: nothing changed
    (drift,) = drifts
    assert_ecs_valid(drift)
    assert drift["event"] | {"id": ""} == {
        "kind": "event", "module": "postern", "dataset": "postern.drift", "id": "", "category": ["configuration"],
        "type": ["change"], "action": "drift-certificate"}
    port = hosted.asset.ports[0]
    details = drift["postern"]["drift"]
    assert details["after"]["sha256"] == replacement.certificate.fingerprint(hashes.SHA256()).hex().upper()
    assert details["before"]["sha256"] != details["after"]["sha256"]
    assert drift["message"] == (f"certificate of {HOST}:{port} replaced (issuer {details['after']['issuer']}, "
                                f"notAfter {replacement.certificate.not_valid_after_utc:%Y-%m-%d})")
    assert drift["server"] == {"address": HOST, "port": port}
    assert drift["tls"]["server"]["hash"]["sha256"] == details["after"]["sha256"]
    # the change happened between the last scan that saw the old certificate and the first that saw the new one
    last_good, detected = parsed(details["last_good_at"]), parsed(details["detected_at"])
    assert last_good == parsed(confirming[0]["@timestamp"]) and detected == parsed(detecting[0]["@timestamp"])
    assert last_good < detected
    assert details["bound_seconds"] == pytest.approx((detected - last_good).total_seconds(), abs=0.002)


def test_a_confirmation_without_a_scan_narrows_the_bound(pki: Pki, tmp_path: Path) -> None:
    with watched_site(pki, tmp_path) as (hosted, config):
        scan(config, "certificate")
        confirmed_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        store = StateStore(tmp_path / "state" / "state.sqlite")
        try:
            assert store.baselines.confirm(hosted.asset.id, ["certificate", "dns"], confirmed_at) == 1
        finally:
            store.close()
        hosted.https.serve_tls(tls_context(pki.intermediate.issue([HOST])))
        _, (drift,) = scan(config, "certificate")
    assert parsed(drift["postern"]["drift"]["last_good_at"]) == confirmed_at


def test_a_header_removed_from_the_set_is_one_headers_event(pki: Pki, tmp_path: Path) -> None:
    with watched_site(pki, tmp_path) as (hosted, config):
        scan(config, "headers")
        hosted.https.routes["/"] = hardened_routes(drop=("X-Frame-Options",))["/"]
        _, drifts = scan(config, "headers")
    (drift,) = drifts
    assert_ecs_valid(drift)
    home = f"https://{HOST}:{hosted.asset.ports[0]}/"
    assert drift["event"]["action"] == "drift-headers" and drift["url"]["full"] == home
    assert drift["message"] == f"security headers of {home} changed: removed x-frame-options"
    before, after = drift["postern"]["drift"]["before"]["headers"], drift["postern"]["drift"]["after"]["headers"]
    assert set(before) - set(after) == {"x-frame-options"} and "strict-transport-security" in after


def test_a_redirect_to_another_target_is_one_redirects_event(pki: Pki, tmp_path: Path) -> None:
    with watched_site(pki, tmp_path) as (hosted, config):
        scan(config, "headers")
        hosted.https.routes["/account"] = Reply(301, [*HARDENED_HEADERS,
                                                      ("Location", "https://sso.elsewhere.test/login")], b"")
        _, drifts = scan(config, "headers")
    (drift,) = drifts
    assert_ecs_valid(drift)
    account = f"https://{HOST}:{hosted.asset.ports[0]}/account"
    assert drift["event"]["action"] == "drift-redirects" and drift["postern"]["drift"]["subject"] == account
    assert drift["postern"]["drift"]["before"] == {"hops": [f"301 {account} -> {account.removesuffix('account')}login"]}
    assert drift["postern"]["drift"]["after"] == {"hops": [f"301 {account} -> https://sso.elsewhere.test/login"]}
    assert drift["message"].startswith(f"redirect chain of {account} changed from 301 ")


def test_accepting_weaker_suites_is_one_tls_event(pki: Pki, tmp_path: Path) -> None:
    with watched_site(pki, tmp_path) as (hosted, config):
        scan(config, "tls")
        hosted.https.serve_tls(tls_context(pki.intermediate.issue([HOST]), ciphers=MODERN_CIPHERS + ":ECDHE+AES+SHA1"))
        _, drifts = scan(config, "tls")
    (drift,) = drifts
    assert_ecs_valid(drift)
    assert drift["event"]["action"] == "drift-tls"
    assert drift["postern"]["drift"]["before"]["weak_classes"] == []
    assert drift["postern"]["drift"]["after"]["weak_classes"] == ["cbc"]
    assert drift["message"] == f"accepted TLS of {HOST}:{hosted.asset.ports[0]} changed: now accepts cbc suites"


def test_a_port_that_closes_is_one_ports_event(pki: Pki, tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    extra = listener.getsockname()[1]
    with site(HOST, pki.intermediate.issue([HOST])) as hosted:
        asset = hosted.asset.model_dump(mode="json", exclude_none=True) | {"scan_ports": [hosted.asset.ports[0], extra]}
        write_config(tmp_path, {"assets": [asset], "checks": {"ports": {"banner_timeout": 0.2}}}, pki)
        config = tmp_path / "config.yaml"
        with listener:
            scan(config, "ports")
        _, drifts = scan(config, "ports")
    (drift,) = drifts
    assert_ecs_valid(drift)
    assert drift["postern"]["drift"]["before"] == {"open": sorted([hosted.asset.ports[0], extra])}
    assert drift["postern"]["drift"]["after"] == {"open": [hosted.asset.ports[0]]}
    assert drift["message"] == f"open ports of {HOST} changed: closed {extra}"


def test_an_unchanged_rescan_has_no_drift(pki: Pki, tmp_path: Path) -> None:
    with site(HOST, pki.intermediate.issue([HOST]), https_routes=hardened_routes()) as hosted:
        asset = hosted.asset.model_dump(mode="json", exclude_none=True) | {
            "scan_ports": [hosted.asset.ports[0], hosted.asset.http_port]}
        write_config(tmp_path, {"assets": [asset], "checks": {"ports": {"banner_timeout": 0.2}}}, pki)
        config = tmp_path / "config.yaml"
        checks = "certificate,tls,headers,https,ports"
        states, first = scan(config, checks)
        _, again = scan(config, checks)
    assert {doc["postern"]["status"] for doc in states} <= {"pass", "fail"}  # every kind was observed
    assert first == [] and again == []


def test_a_scan_that_cannot_reach_the_server_is_no_drift(pki: Pki, tmp_path: Path) -> None:
    with watched_site(pki, tmp_path) as (_, config):
        scan(config, "certificate,tls,headers,https")
    states, drifts = scan(config, "certificate,tls,headers,https")  # the server is gone
    assert {doc["postern"]["status"] for doc in states if doc["event"]["provider"] != "https"} == {"error"}
    assert drifts == []


def test_a_partial_run_compares_only_what_it_ran(pki: Pki, tmp_path: Path) -> None:
    with watched_site(pki, tmp_path) as (hosted, config):
        scan(config, "certificate,headers")
        hosted.https.serve_tls(tls_context(pki.intermediate.issue([HOST])))
        _, headers_only = scan(config, "headers")
        _, certificate_again = scan(config, "certificate")
    assert headers_only == []
    assert [doc["event"]["action"] for doc in certificate_again] == ["drift-certificate"]


def test_a_disabled_kind_records_and_emits_nothing(pki: Pki, tmp_path: Path) -> None:
    with watched_site(pki, tmp_path, drift={"kinds": {"certificate": False}}) as (hosted, config):
        scan(config, "certificate,headers")
        hosted.https.serve_tls(tls_context(pki.intermediate.issue([HOST])))
        hosted.https.routes["/"] = hardened_routes(drop=("X-Frame-Options",))["/"]
        _, drifts = scan(config, "certificate,headers")
    assert [doc["event"]["action"] for doc in drifts] == ["drift-headers"]
    store = StateStore(tmp_path / "state" / "state.sqlite")
    try:
        assert {kind for kind, _ in store.baselines.baselines(hosted.asset.id)} == {"headers", "redirects"}
    finally:
        store.close()


def test_a_misspelt_kind_is_refused(pki: Pki, tmp_path: Path) -> None:
    write_config(tmp_path, {"assets": [{"host": HOST}], "drift": {"kinds": {"certificates": False}}}, pki)
    done = connector("validate", "-c", str(tmp_path / "config.yaml"))
    assert done.returncode == 1 and "drift.kinds.certificates" in done.stderr


def test_drift_in_cef_carries_its_action_and_bound(pki: Pki, tmp_path: Path) -> None:
    with watched_site(pki, tmp_path) as (hosted, config):
        scan(config, "certificate", "cef")
        hosted.https.serve_tls(tls_context(pki.intermediate.issue([HOST])))
        _, (drift,) = scan(config, "certificate", "cef")
    assert drift["act"] == "drift-certificate" and drift["dpt"] == str(hosted.asset.ports[0])
    assert int(drift["start"]) < int(drift["end"]) == int(drift["rt"])
    assert drift["cn1Label"] == "boundSeconds" and float(drift["cn1"]) > 0
    assert json.loads(drift["cs6"])["sha256"] != json.loads(drift["cs5"])["sha256"]


def test_drift_events_are_stored_by_elasticsearch_under_the_rendered_mappings(pki: Pki, tmp_path: Path) -> None:
    with ElasticsearchEmulator() as cluster, watched_site(pki, tmp_path, sinks=[
            {"type": "elasticsearch", "hosts": [cluster.url], "api_key": "test-api-key"}]) as (hosted, config):
        setup = connector("elastic", "setup", "-c", str(config))
        assert setup.returncode == 0, setup.stderr
        scan(config, "certificate")
        hosted.https.serve_tls(tls_context(pki.intermediate.issue([HOST])))
        _, (drift,) = scan(config, "certificate")
        stored = {doc["event"]["id"]: doc for doc in cluster.documents("logs-postern.findings-default")}
    assert stored[drift["event"]["id"]]["postern"]["drift"] == drift["postern"]["drift"]


@pytest.mark.needs_dns
def test_a_changed_a_record_is_one_dns_event_and_ttl_or_order_none(pki: Pki, tmp_path: Path) -> None:
    def zone(*records: str) -> Zone:
        return Zone("drift.test.", list(records))

    with DnsServer(tmp_path / "dns", [zone("shop 300 IN A 192.0.2.1", "shop 300 IN A 192.0.2.2",
                                           "shop IN MX 10 Mail.drift.test.")]) as server:
        write_config(tmp_path, {"assets": [{"host": HOST}], "scan": {
            "ca_bundle": str(pki.bundle), "dns": {"nameservers": ["127.0.0.1"], "port": server.port,
                                                  "nameserver_port": server.port, "timeout": 0.5, "attempts": 1}}},
                     pki)
        config = tmp_path / "config.yaml"
        scan(config, "dns")
        server.reload([zone("shop 60 IN A 192.0.2.2", "shop 60 IN A 192.0.2.1", "shop IN MX 10 mail.DRIFT.test.")])
        _, reordered = scan(config, "dns")
        server.reload([zone("shop IN A 192.0.2.7", "shop IN A 192.0.2.2", "shop IN MX 10 mail.drift.test.")])
        _, changed = scan(config, "dns")
    assert reordered == []
    (drift,) = changed
    assert_ecs_valid(drift)
    assert drift["event"]["action"] == "drift-dns" and drift["dns"]["question"] == {"name": HOST, "type": "A"}
    assert drift["postern"]["drift"]["before"] == {"records": ["192.0.2.1", "192.0.2.2"]}
    assert drift["postern"]["drift"]["after"] == {"records": ["192.0.2.2", "192.0.2.7"]}
    assert drift["message"] == f"A record of {HOST} changed from 192.0.2.1, 192.0.2.2 to 192.0.2.2, 192.0.2.7"
