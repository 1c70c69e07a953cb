"""Discovery as its users see it, through `connector scan -c CONFIG`: names a scan reveals become assets when they
are in scope, third-party dependencies (once) when they are not, and rogue assets when they resolve into an owned
network; an out-of-scope host is never connected to, which a listener that must stay silent proves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cli import connector
from support.dns_server import DnsServer, Zone
from support.ecs import assert_ecs_valid
from support.hostile import Observer
from support.pki import Pki
from support.sites import hardened_routes, page, site


@pytest.fixture
def observer() -> Iterator[Observer]:
    with Observer() as watching:
        yield watching


def zones() -> list[Zone]:
    return [
        Zone("disc.test.", ["shop CNAME edge", "edge A 127.0.0.1", "api A 127.0.0.1", "static.cdn A 127.0.0.1"]),
        Zone("partner.test.", ["cdn A 127.0.0.1", "widgets A 127.0.0.1"]),
        Zone("auto.test.", ["api A 127.0.0.1"]),
        Zone("rogue.test.", []),
        Zone("elsewhere.test.", ["intranet A 127.0.0.9", "printer A 127.0.0.1", "public A 93.184.215.14"]),
    ]


@pytest.fixture
def nameserver(tmp_path: Path) -> Iterator[DnsServer]:
    with DnsServer(tmp_path / "dns", zones()) as server:
        yield server


def write_config(tmp_path: Path, pki: Pki, nameserver: DnsServer, assets: list[dict[str, Any]],
                 inventory: dict[str, Any], **extra: Any) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(extra | {
        "assets": assets,
        "scan": {"ca_bundle": str(pki.bundle),
                 "dns": {"nameservers": ["127.0.0.1"], "port": nameserver.port,
                         "nameserver_port": nameserver.port}},
        "inventory": inventory,
        "state_dir": str(tmp_path / "state"),
    }))
    return config


def scan(config: Path, out: Path, checks: str) -> list[dict[str, Any]]:
    done = connector("scan", "-c", str(config), "--checks", checks, "-q", "-o", str(out))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def listed(config: Path) -> dict[str, dict[str, Any]]:
    done = connector("assets", "list", "-c", str(config), "--format", "json")
    assert done.returncode == 0, done.stderr
    return {row["id"]: row for row in map(json.loads, done.stdout.splitlines())}


def by_action(documents: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["event"].get("action") == action]


def test_in_scope_names_become_assets_and_out_of_scope_ones_are_reported_once_and_never_touched(
        pki: Pki, tmp_path: Path, observer: Observer, nameserver: DnsServer) -> None:
    foreign = f"https://cdn.partner.test:{observer.port}"
    home = page(f'<a href="{foreign}/offers">Offers</a> <script src="{foreign}/lib.js"></script>'
                f'<a href="https://static.cdn.disc.test:{observer.port}/img">Images</a>')
    routes = hardened_routes(home=home, extra_headers=[
        ("Content-Security-Policy", f"script-src 'self' https://widgets.partner.test:{observer.port} *.disc.test")])
    names = ["shop.disc.test", "api.disc.test", "*.disc.test", "static.cdn.disc.test"]
    with site("shop.disc.test", pki.intermediate.issue(names), https_routes=routes) as shop:
        config = write_config(tmp_path, pki, nameserver, [shop.asset.model_dump(mode="json", exclude_none=True)],
                              {"scope": {"suffixes": ["disc.test"], "exclude": ["*.cdn.disc.test"]}})
        first = scan(config, tmp_path / "first.jsonl", "certificate,dns,https,headers,content")
        second = scan(config, tmp_path / "second.jsonl", "certificate,dns,https,headers,content")
        inventory = listed(config)
        dependency_rows = connector("assets", "dependencies", "-c", str(config), "--format", "json")
        dependency_table = connector("assets", "dependencies", "-c", str(config))
    observer.assert_untouched()

    created = {doc["entity"]["id"]: doc for doc in by_action(first, "asset-created")}
    assert {"api.disc.test", "edge.disc.test", "ns1.disc.test"} <= set(created) - {"shop.disc.test"}
    assert not {name for name in created if "*" in name or "cdn" in name or "partner" in name}
    assert created["api.disc.test"]["postern"]["asset"]["seen_from"] == f"SAN of shop.disc.test:{shop.asset.ports[0]}"
    assert created["edge.disc.test"]["postern"]["asset"]["seen_from"] == "CNAME of shop.disc.test"
    assert by_action(second, "asset-created") == []  # known now: no second event

    dependencies = {doc["postern"]["dependency"]["name"]: doc for doc in by_action(first, "third-party-dependency")}
    assert set(dependencies) == {"cdn.partner.test", "widgets.partner.test", "static.cdn.disc.test"}
    assert dependencies["cdn.partner.test"]["postern"]["dependency"]["seen_from"].endswith(
        f"on https://shop.disc.test:{shop.asset.ports[0]}/")
    assert dependencies["widgets.partner.test"]["postern"]["dependency"]["seen_from"].startswith("CSP script-src of")
    assert by_action(second, "third-party-dependency") == []  # reported once, across scans
    for doc in [*created.values(), *dependencies.values()]:
        assert_ecs_valid(doc)
    assert dependencies["cdn.partner.test"]["event"] | {"id": None} == {
        "kind": "event", "module": "postern", "dataset": "postern.assets", "id": None,
        "category": ["configuration"], "type": ["info"], "action": "third-party-dependency"}

    assert dependency_rows.returncode == 0, dependency_rows.stderr
    rows = {row["name"]: row for row in map(json.loads, dependency_rows.stdout.splitlines())}
    assert set(rows) == set(dependencies) and rows["cdn.partner.test"]["asset"] == "shop.disc.test"
    assert rows["widgets.partner.test"]["seen_from"].startswith("CSP script-src of")
    assert "3 third-party dependenc(ies)" in dependency_table.stdout and "widgets.partner.test" in \
        dependency_table.stdout

    api = inventory["api.disc.test"]
    assert api["source"] == "discovered" and api["tags"] == ["discovered"] and api["criticality"] == "low"
    assert api["seen_from"].startswith("SAN of shop.disc.test")
    assert api["last_scanned"] is None  # auto_scan is off: inventoried, not scanned
    assert "static.cdn.disc.test" not in inventory and "cdn.partner.test" not in inventory


def test_with_auto_scan_a_discovered_asset_is_scanned_on_the_next_run(pki: Pki, tmp_path: Path,
                                                                      nameserver: DnsServer) -> None:
    with site("api.auto.test", pki.intermediate.issue(["api.auto.test"]), https_routes=hardened_routes()) as api:
        link = f"https://api.auto.test:{api.asset.ports[0]}/docs"
        routes = hardened_routes(home=page(f'<a href="{link}">API</a>'))
        with site("shop.auto.test", pki.intermediate.issue(["shop.auto.test"]), https_routes=routes) as shop:
            shop_asset = shop.asset.model_dump(mode="json", exclude_none=True)
            off = write_config(tmp_path, pki, nameserver, [shop_asset], {"scope": {"suffixes": ["auto.test"]}})
            scan(off, tmp_path / "off.jsonl", "certificate,content")
            scan(off, tmp_path / "off.jsonl", "certificate,content")
            assert api.https.hits == [], "auto_scan is off: a discovered asset is never requested"
            on = write_config(tmp_path, pki, nameserver, [shop_asset],
                              {"scope": {"suffixes": ["auto.test"]}, "auto_scan": True})
            scanned = scan(on, tmp_path / "on.jsonl", "certificate,content")
            inventory = listed(on)
    ours = [doc for doc in scanned if doc["event"]["kind"] == "state" and doc["resource"]["id"] == "api.auto.test"]
    assert ours and {doc["postern"]["status"] for doc in ours} <= {"pass"}, [doc["message"] for doc in ours]
    assert api.https.hits, "the discovered asset was scanned"
    assert inventory["api.auto.test"]["last_scanned"] is not None
    assert inventory["api.auto.test"]["seen_from"] == f"link on https://shop.auto.test:{shop.asset.ports[0]}/"


def test_a_name_resolving_into_an_owned_network_outside_the_inventory_is_a_rogue_asset(
        pki: Pki, tmp_path: Path, observer: Observer, nameserver: DnsServer) -> None:
    home = page(f'<a href="https://printer.elsewhere.test:{observer.port}/">Print</a>'
                '<a href="https://public.elsewhere.test/">Partner</a>')
    names = ["shop.rogue.test", "intranet.elsewhere.test"]
    with site("shop.rogue.test", pki.intermediate.issue(names), https_routes=hardened_routes(home=home)) as shop:
        config = write_config(tmp_path, pki, nameserver, [shop.asset.model_dump(mode="json", exclude_none=True)],
                              {"scope": {"suffixes": ["rogue.test"], "cidrs": ["127.0.0.0/8"]}},
                              rules={"inventory.rogue_asset": {"severity": "high"}})
        first = scan(config, tmp_path / "first.jsonl", "certificate,content")
        second = scan(config, tmp_path / "second.jsonl", "certificate,content")
    observer.assert_untouched()
    rogues = {doc["postern"]["subject"]: doc for doc in first
              if doc["event"]["kind"] == "state" and doc["rule"]["id"] == "inventory.rogue_asset"}
    assert set(rogues) == {"intranet.elsewhere.test", "printer.elsewhere.test"}
    intranet = rogues["intranet.elsewhere.test"]
    assert intranet["postern"]["status"] == "fail" and "127.0.0.9 (in 127.0.0.0/8)" in intranet["message"]
    assert intranet["resource"]["id"] == "shop.rogue.test" and intranet["event"]["provider"] == "certificate"
    assert intranet["event"]["severity"] == 8  # the configuration's override: high
    assert_ecs_valid(intranet)
    opened = [doc for doc in by_action(first, "finding-opened") if doc["rule"]["id"] == "inventory.rogue_asset"]
    assert len(opened) == 2
    assert [doc for doc in by_action(second, "finding-opened") if doc["rule"]["id"] == "inventory.rogue_asset"] == []
    # a public partner is a dependency, not a rogue; a rogue is not reported as a dependency too
    assert {doc["postern"]["dependency"]["name"] for doc in by_action(first, "third-party-dependency")} == {
        "public.elsewhere.test"}


def test_a_rogue_whose_lookup_fails_stays_open_and_resolves_once_the_name_is_gone(
        pki: Pki, tmp_path: Path, nameserver: DnsServer) -> None:
    names = ["shop.rogue.test", "intranet.elsewhere.test"]
    with site("shop.rogue.test", pki.intermediate.issue(names), https_routes=hardened_routes()) as shop:
        config = write_config(tmp_path, pki, nameserver, [shop.asset.model_dump(mode="json", exclude_none=True)],
                              {"scope": {"suffixes": ["rogue.test"], "cidrs": ["127.0.0.0/8"]}})
        opened = scan(config, tmp_path / "opened.jsonl", "certificate")
        others = [zone for zone in zones() if zone.origin != "elsewhere.test."]
        nameserver.reload(others, servfail=["elsewhere.test."])  # the resolver cannot answer for the name
        blind = scan(config, tmp_path / "blind.jsonl", "certificate")
        nameserver.reload([*others, Zone("elsewhere.test.", [])], servfail=[])  # the name is gone
        gone = scan(config, tmp_path / "gone.jsonl", "certificate")

    def rogue(documents: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
        return [doc for doc in by_action(documents, action) if doc["rule"]["id"] == "inventory.rogue_asset"]

    assert [doc["postern"]["subject"] for doc in rogue(opened, "finding-opened")] == ["intranet.elsewhere.test"]
    assert rogue(blind, "finding-resolved") == [], "a lookup that failed must not resolve the rogue finding"
    [unjudged] = [doc for doc in blind if doc["event"]["kind"] == "state"
                  and doc["rule"]["id"] == "inventory.rogue_asset"]
    assert unjudged["postern"]["status"] == "error" and "could not tell whether intranet.elsewhere.test" in \
        unjudged["message"]
    assert [doc["postern"]["subject"] for doc in rogue(gone, "finding-resolved")] == ["intranet.elsewhere.test"]


def test_a_seed_list_adds_its_names_in_scope_and_reports_the_others_once(pki: Pki, tmp_path: Path,
                                                                         nameserver: DnsServer) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# names from the CMDB\nAPI.disc.test.\nstatic.cdn.disc.test  # the vendor's\n"
                     "cdn.partner.test\n*.disc.test\n")
    with site("shop.disc.test", pki.intermediate.issue(["shop.disc.test"])) as shop:
        config = write_config(tmp_path, pki, nameserver, [shop.asset.model_dump(mode="json", exclude_none=True)],
                              {"scope": {"suffixes": ["disc.test"], "exclude": ["*.cdn.disc.test"]},
                               "seeds_file": "seeds.txt"})
        first = scan(config, tmp_path / "first.jsonl", "certificate")
        second = scan(config, tmp_path / "second.jsonl", "certificate")
        inventory = listed(config)
    assert inventory["api.disc.test"]["seen_from"] == f"seed list {seeds}"
    assert {doc["entity"]["id"] for doc in by_action(first, "asset-created")} == {"shop.disc.test", "api.disc.test"}
    dependencies = by_action(first, "third-party-dependency")
    assert {doc["postern"]["dependency"]["name"] for doc in dependencies} == {"static.cdn.disc.test",
                                                                              "cdn.partner.test"}
    for doc in dependencies:
        assert_ecs_valid(doc)
        assert "host" not in doc and doc["postern"]["dependency"]["seen_from"] == f"seed list {seeds}"
    assert by_action(second, "asset-created") == [] and by_action(second, "third-party-dependency") == []


def test_the_sidecar_scans_what_it_discovered_on_its_next_run(pki: Pki, tmp_path: Path,
                                                              nameserver: DnsServer) -> None:
    events = tmp_path / "events.jsonl"
    only = {name: {"enabled": False} for name in ("dkim", "dmarc", "dns", "exposure", "headers", "https", "mta_sts",
                                                  "observatory", "ports", "spf", "tls")}
    with site("api.auto.test", pki.intermediate.issue(["api.auto.test"]), https_routes=hardened_routes()) as api:
        routes = hardened_routes(home=page(f'<a href="https://api.auto.test:{api.asset.ports[0]}/">API</a>'))
        with site("shop.auto.test", pki.intermediate.issue(["shop.auto.test"]), https_routes=routes) as shop:
            config = write_config(tmp_path, pki, nameserver, [shop.asset.model_dump(mode="json", exclude_none=True)],
                                  {"scope": {"suffixes": ["auto.test"]}, "auto_scan": True}, checks=only,
                                  sinks=[{"type": "file", "path": str(events), "format": "ecs"}])
            runs = []
            for _ in range(2):
                done = connector("run", "-c", str(config), "--once", timeout=60)
                assert done.returncode == 0, done.stderr
                runs.append([json.loads(line) for line in events.read_text().splitlines()])
    scanned = [[doc["resource"]["id"] for doc in documents if doc["event"]["kind"] == "state"] for documents in runs]
    assert "api.auto.test" not in scanned[0]  # discovered by the first run...
    assert "api.auto.test" in scanned[1]  # ...scanned by the next
