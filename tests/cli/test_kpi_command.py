"""`connector kpi` and `connector findings mark` as a SOC lead uses them, after real scans of real sites: the
figures follow what the sites serve, metric events reach the output as valid ECS, and a false positive counts."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from support.cli import connector
from support.ecs import assert_ecs_valid
from support.pki import Pki
from support.sites import hardened_routes, site


def scan(config: Path, out: Path) -> list[dict[str, Any]]:
    done = connector("scan", "-c", str(config), "--checks", "certificate,headers,https", "-q", "-o", str(out))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def kpi(config: Path, *extra: str) -> list[dict[str, Any]]:
    done = connector("kpi", "-c", str(config), "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_kpis_follow_the_estate_and_the_analysts_verdicts(pki: Pki, tmp_path: Path) -> None:
    broken = hardened_routes(drop=("Content-Security-Policy",))
    with site("shop.kpi.test", pki.intermediate.issue(["shop.kpi.test"], days_valid=21),
              https_routes=hardened_routes()) as shop, \
            site("blog.kpi.test", pki.intermediate.issue(["blog.kpi.test"]), https_routes=broken) as blog:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "assets": [shop.asset.model_dump(mode="json", exclude_none=True) | {"owner": "web", "criticality":
                                                                               "critical"},
                       blog.asset.model_dump(mode="json", exclude_none=True) | {"owner": "marketing"}],
            "scan": {"ca_bundle": str(pki.bundle)},
            "state_dir": str(tmp_path / "state"),
        }))
        documents = scan(config, tmp_path / "first.jsonl")
        overall, = kpi(config)
        by_owner = {row["scope"]["value"]: row for row in kpi(config, "--scope", "owner")}
        csv_rows = list(csv.DictReader(io.StringIO(connector("kpi", "-c", str(config), "--format", "csv",
                                                             "--scope", "owner", "--scope", "overall").stdout)))
        table = connector("kpi", "-c", str(config), "--scope", "owner")

        metrics = [doc for doc in documents if doc["event"]["kind"] == "metric"]
        assert {(doc["postern"]["kpi"]["scope"]["kind"], doc["postern"]["kpi"]["scope"]["value"])
                for doc in metrics} >= {("overall", "all"), ("owner", "web"), ("owner", "marketing")}
        for doc in metrics:
            assert_ecs_valid(doc)
            assert doc["event"]["dataset"] == "postern.kpi"

        assert overall["assets"] == 2
        assert overall["header_baseline"]["good"] == 1 and overall["header_baseline"]["percent"] == 50.0
        assert 18 <= overall["next_expiry_days"] <= 20  # the shop's certificate: issued for 20 days
        assert overall["valid_certificates"]["percent"] == 100.0
        assert overall["open_by_severity"]["medium"] + overall["open_by_severity"]["high"] >= 1  # the blog's CSP
        assert overall["compliance"]["pci_dss_4_0"]["evaluated"] > 0
        assert by_owner["web"]["header_baseline"]["percent"] == 100.0
        assert by_owner["marketing"]["header_baseline"]["percent"] == 0.0
        assert by_owner["marketing"]["risk_score"] > 0 == by_owner["web"]["open_by_severity"]["critical"]
        assert [row["scope"] for row in csv_rows] == ["owner:marketing", "owner:web", "overall"]
        assert csv_rows[0]["header_baseline_pct"] == "0.0"
        assert "owner:marketing" in table.stdout and "PCI DSS" in table.stdout

        csp = next(doc for doc in documents if doc["event"]["kind"] == "state"
                   and doc["rule"]["id"] == "csp.missing" and doc["postern"]["status"] == "fail")
        fingerprint = csp["postern"]["fingerprint"]
        refused = connector("findings", "mark", "-c", str(config), fingerprint, "--false-positive")
        assert refused.returncode == 2 and "--reason is required" in refused.stderr
        unknown = connector("findings", "mark", "-c", str(config), "0" * 32, "--false-positive", "--reason", "x")
        assert unknown.returncode == 2 and "no finding" in unknown.stderr
        marked = connector("findings", "mark", "-c", str(config), fingerprint, "--false-positive",
                           "--reason", "the CSP is set by the CDN", "--analyst", "ana", "--expires", "90d")
        assert marked.returncode == 0, marked.stderr
        assert "false positive until" in marked.stdout and "csp.missing on blog.kpi.test" in marked.stdout
        after, = kpi(config)
    opened = sum(1 for doc in documents if doc["event"].get("action") == "finding-opened")
    assert after["false_positive_rate"] == round(1 / opened, 4)
    assert after["detection_accuracy"] == 0.0  # the one reviewed finding was a false positive
    assert after["open_by_severity"] == overall["open_by_severity"]  # suppressed from alerts, still counted


def test_kpi_refuses_an_unknown_scope_and_a_state_dir_with_no_history(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"assets": [{"host": "a.kpi.test"}], "state_dir": str(tmp_path / "none")}))
    wrong = connector("kpi", "-c", str(config), "--scope", "region")
    assert wrong.returncode == 2 and "--scope must be one of overall, owner, criticality, tag" in wrong.stderr
    empty = connector("kpi", "-c", str(config))
    assert empty.returncode == 2 and "no history yet" in empty.stderr and "Traceback" not in empty.stderr


def test_digest_rolls_up_each_owners_day_as_events(pki: Pki, tmp_path: Path) -> None:
    broken = hardened_routes(drop=("Content-Security-Policy",))
    with site("blog.digest.test", pki.intermediate.issue(["blog.digest.test"]), https_routes=broken) as blog:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "assets": [blog.asset.model_dump(mode="json", exclude_none=True) | {"owner": "marketing"}],
            "scan": {"ca_bundle": str(pki.bundle)}, "state_dir": str(tmp_path / "state")}))
        scan(config, tmp_path / "scan.jsonl")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    done = connector("digest", "-c", str(config), "--period", "daily", "--end", tomorrow)
    assert done.returncode == 0, done.stderr
    [digest] = [json.loads(line) for line in done.stdout.splitlines()]
    assert_ecs_valid(digest)
    assert digest["postern"]["asset"]["owner"] == "marketing" and digest["event"]["action"] == "digest-daily"
    assert "csp.missing" in {entry["rule"] for entry in digest["postern"]["digest"]["opened"]}
    assert f"1 daily digest(s) for the period ending {tomorrow} 00:00 UTC" in done.stderr
    yesterday = connector("digest", "-c", str(config), "--end", "2026-01-01")
    assert yesterday.returncode == 0 and yesterday.stdout == ""  # nothing happened then: no digest
    wrong = connector("digest", "-c", str(config), "--end", "next tuesday")
    assert wrong.returncode == 2 and "--end must be a date" in wrong.stderr
