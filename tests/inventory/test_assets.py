"""The asset inventory as its users see it: asset events when the configuration changes, and `connector assets`
listing, showing and exporting what was configured, discovered and scanned."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from connector.core.lifecycle import AssetAction
from connector.core.model import Asset
from connector.inventory.assets import AssetRegister
from support.cli import connector
from support.ecs import assert_ecs_valid
from support.pki import Pki
from support.sites import hardened_routes, site

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def write_config(path: Path, pki: Pki, assets: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"assets": assets, "scan": {"ca_bundle": str(pki.bundle)},
                                    "state_dir": str(path.parent / "state")}))
    return path


def asset_events(config: Path, out: Path) -> list[dict[str, Any]]:
    done = connector("scan", "-c", str(config), "--checks", "headers", "-q", "-o", str(out))
    assert done.returncode == 0, done.stderr
    return [doc for doc in map(json.loads, out.read_text().splitlines()) if doc["event"]["kind"] == "asset"]


def test_configuration_changes_are_asset_events_and_the_inventory_lists_them(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    with site("shop.inv.test", pki.intermediate.issue(["shop.inv.test"]),
              https_routes=hardened_routes(drop=("Content-Security-Policy",))) as shop, \
            site("blog.inv.test", pki.intermediate.issue(["blog.inv.test"]), https_routes=hardened_routes()) as blog:
        shop_asset = shop.asset.model_dump(mode="json", exclude_none=True) | {
            "criticality": "critical", "data_sensitivity": "restricted", "business_impact": "high",
            "owner": "payments@example.test", "tags": ["pci"]}
        blog_asset = blog.asset.model_dump(mode="json", exclude_none=True) | {"owner": "marketing@example.test"}
        config = write_config(tmp_path / "config.yaml", pki, [shop_asset, blog_asset])
        created = asset_events(config, out)
        unchanged = asset_events(config, out)
        listed = [json.loads(line) for line in connector("assets", "list", "-c", str(config), "--format",
                                                         "json").stdout.splitlines()]
        write_config(config, pki, [shop_asset | {"owner": "checkout@example.test"}])
        changed = asset_events(config, out)
        shown = json.loads(connector("assets", "show", "-c", str(config), "shop.inv.test").stdout)
        exported = connector("assets", "export", "-c", str(config), "--format", "csv").stdout
        current = connector("assets", "list", "-c", str(config), "--format", "json").stdout.splitlines()

    assert sorted((doc["event"]["action"], doc["entity"]["id"]) for doc in created) == [
        ("asset-created", "blog.inv.test"), ("asset-created", "shop.inv.test")]
    for doc in created + changed:
        assert_ecs_valid(doc)
        assert doc["event"]["category"] == ["configuration"]
    shop_created = next(doc for doc in created if doc["entity"]["id"] == "shop.inv.test")
    assert shop_created["postern"]["asset"] | {"first_seen": None} == {
        "id": "shop.inv.test", "criticality": "critical", "data_sensitivity": "restricted", "business_impact": "high",
        "owner": "payments@example.test", "tags": ["pci"], "source": "config", "first_seen": None}
    assert unchanged == []  # a rescan of the same configuration says nothing about assets

    by_id = {row["id"]: row for row in listed}
    assert set(by_id) == {"shop.inv.test", "blog.inv.test"}
    assert by_id["shop.inv.test"]["last_scanned"] is not None and by_id["shop.inv.test"]["open_findings"] > 0
    assert by_id["blog.inv.test"]["open_findings"] == 0  # the hardened blog has nothing failing

    assert sorted((doc["event"]["action"], doc["entity"]["id"]) for doc in changed) == [
        ("asset-changed", "shop.inv.test"), ("asset-removed", "blog.inv.test")]
    shop_changed = next(doc for doc in changed if doc["event"]["action"] == "asset-changed")
    assert shop_changed["postern"]["asset_before"]["owner"] == "payments@example.test"
    assert shop_changed["postern"]["asset"]["owner"] == "checkout@example.test"

    assert shown["owner"] == "checkout@example.test" and shown["open"]
    assert {item["rule"] for item in shown["open"]} >= {"csp.missing"}
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {row["id"]: bool(row["removed_at"]) for row in rows} == {"shop.inv.test": False, "blog.inv.test": True}
    assert [json.loads(line)["id"] for line in current] == ["shop.inv.test"]


def test_assets_reports_a_missing_inventory_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"assets": [{"host": "a.test"}], "state_dir": str(tmp_path / "nothing")}))
    done = connector("assets", "list", "-c", str(config))
    assert done.returncode == 2 and "no inventory yet" in done.stderr and "Traceback" not in done.stderr


def test_a_discovered_asset_is_added_once_and_survives_configuration_syncs(tmp_path: Path) -> None:
    register = AssetRegister(sqlite3.connect(tmp_path / "state.db", isolation_level=None))
    published: list[AssetAction] = []
    register.sync([Asset(host="www.example.test")], MONDAY, lambda changes: published.extend(c.action for c in changes))
    found = register.discovered([(Asset(host="api.example.test", tags=("discovered",)), "a SAN of www.example.test"),
                                 (Asset(host="www.example.test"), "a link on /")], MONDAY + timedelta(hours=1))
    register.record_discovered(found, [], MONDAY + timedelta(hours=1))
    again = register.discovered([(Asset(host="api.example.test"), "a link on /")], MONDAY + timedelta(hours=2))
    register.record_discovered(again, ["api.example.test"], MONDAY + timedelta(hours=2))
    register.sync([Asset(host="www.example.test")], MONDAY + timedelta(hours=3), lambda changes: published.extend(
        c.action for c in changes))
    assert [change.action for change in found] == [AssetAction.CREATED] and again == []  # www is configured
    assert published == [AssetAction.CREATED]  # the second sync: unchanged, and the discovered one is not "removed"
    api = register.record("api.example.test")
    assert api is not None and api.source == "discovered" and api.seen_from == "a SAN of www.example.test"
    assert api.last_seen == MONDAY + timedelta(hours=2)


def test_a_sync_whose_events_could_not_be_published_is_not_recorded(tmp_path: Path) -> None:
    register = AssetRegister(sqlite3.connect(tmp_path / "state.db", isolation_level=None))

    def spool_full(changes: object) -> None:
        raise OSError("spool full")

    with contextlib.suppress(OSError):
        register.sync([Asset(host="www.example.test")], MONDAY, spool_full)
    published: list[AssetAction] = []
    register.sync([Asset(host="www.example.test")], MONDAY, lambda changes: published.extend(c.action for c in changes))
    assert published == [AssetAction.CREATED]  # reported on the next sync, not lost
