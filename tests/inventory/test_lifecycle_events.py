"""Finding transitions as the SIEM receives them: `connector scan -c CONFIG` against a real site that the test
breaks and fixes between scans. A change is one opened event, a fix one resolved event, an unchanged site none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from support.cef import parse_cef
from support.cli import connector
from support.ecs import assert_ecs_valid
from support.pki import Pki
from support.sites import Site, hardened_routes, site
from support.web import Reply


@contextmanager
def watched_site(pki: Pki, tmp_path: Path) -> Iterator[tuple[Site, Path]]:
    with site("shop.lifecycle.test", pki.intermediate.issue(["shop.lifecycle.test"]),
              https_routes=hardened_routes()) as hosted:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "assets": [hosted.asset.model_dump(mode="json", exclude_none=True)],
            "scan": {"ca_bundle": str(pki.bundle)},
            "state_dir": str(tmp_path / "state"),
        }))
        yield hosted, config


def break_home(hosted: Site) -> None:
    """Drop the CSP and X-Frame-Options of the home page."""
    broken = hardened_routes(drop=("Content-Security-Policy", "X-Frame-Options"))
    hosted.https.routes["/"] = broken["/"]


def fix_home(hosted: Site) -> None:
    hosted.https.routes["/"] = hardened_routes()["/"]


def scan(config: Path, out: Path, checks: str = "headers", *extra: str) -> tuple[list[dict[str, Any]],
                                                                                 list[dict[str, Any]], str]:
    """(state events, transition events, the summary) of one scan."""
    done = connector("scan", "-c", str(config), "--checks", checks, "-o", str(out), *extra)
    assert done.returncode == 0, done.stderr
    documents = [json.loads(line) for line in out.read_text().splitlines()]
    states = [doc for doc in documents if doc["event"]["kind"] == "state"]
    transitions = [doc for doc in documents if doc["event"].get("dataset") == "postern.lifecycle"]  # not drift
    return states, transitions, done.stderr


def actions(transitions: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(doc["event"]["action"], doc["rule"]["id"]) for doc in transitions}


def test_a_broken_header_is_one_opened_event_and_its_fix_one_resolved(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    with watched_site(pki, tmp_path) as (hosted, config):
        _, first, _ = scan(config, out)
        break_home(hosted)
        broken_states, opened, summary = scan(config, out)
        _, unchanged, _ = scan(config, out)
        fix_home(hosted)
        _, resolved, _ = scan(config, out)
    assert first == []  # the hardened site has nothing failing, so nothing opens
    failing = {(doc["rule"]["id"], doc["postern"]["fingerprint"]) for doc in broken_states
               if doc["postern"]["status"] == "fail"}
    assert failing, "dropping CSP and X-Frame-Options must fail some header rule"
    assert sorted((doc["rule"]["id"], doc["postern"]["fingerprint"]) for doc in opened) == sorted(failing)
    assert f"since the last scan: {len(failing)} opened, 0 reopened, 0 changed, 0 resolved" in summary
    assert unchanged == []  # still failing, restated as state events, but no new alert
    assert sorted(doc["postern"]["fingerprint"] for doc in resolved) == sorted(fp for _, fp in failing)
    for doc in opened + resolved:
        assert_ecs_valid(doc)
        assert doc["event"]["category"] == ["configuration"]
    assert {doc["event"]["type"][0] for doc in opened} == {"creation"}
    assert {doc["event"]["type"][0] for doc in resolved} == {"deletion"}
    for doc in resolved:
        lifecycle = doc["postern"]["lifecycle"]
        assert lifecycle["before"]["status"] == "fail" and lifecycle["after"]["status"] == "pass"
        assert lifecycle["open_seconds"] > 0
    assert len({doc["event"]["id"] for doc in opened + resolved}) == len(opened) + len(resolved)


def test_a_scan_that_cannot_reach_the_site_resolves_nothing(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    with watched_site(pki, tmp_path) as (hosted, config):
        break_home(hosted)
        _, opened, _ = scan(config, out)
    states, after_outage, _ = scan(config, out)  # the server is gone: every header rule errors
    assert opened
    assert {doc["postern"]["status"] for doc in states} == {"error"}
    assert after_outage == []


def test_a_run_of_other_checks_leaves_the_findings_of_checks_it_did_not_run_open(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    with watched_site(pki, tmp_path) as (hosted, config):
        break_home(hosted)
        _, opened, _ = scan(config, out)
        fix_home(hosted)
        _, other_checks, _ = scan(config, out, "certificate,https")
        _, headers_again, _ = scan(config, out)
    assert opened and other_checks == []
    assert actions(headers_again) == {("finding-resolved", rule) for _, rule in actions(opened)}


def test_transitions_in_cef_carry_their_action(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "events.cef"
    with watched_site(pki, tmp_path) as (hosted, config):
        hosted.https.routes["/"] = Reply(200, [], b"<!doctype html><title>bare</title>")
        done = connector("scan", "-c", str(config), "--checks", "headers", "--format", "cef", "-o", str(out))
    assert done.returncode == 0, done.stderr
    lines = [parse_cef(line)[1] for line in out.read_text().splitlines()]
    opened = [pairs for pairs in lines if pairs.get("act") == "finding-opened"]
    failing = [pairs for pairs in lines if pairs.get("PosternPostureStatus") == "fail" and "act" not in pairs]
    assert opened and len(opened) == len(failing)
    assert {pairs["cs4"] for pairs in opened} == {pairs["cs4"] for pairs in failing}
    assert not {pairs["externalId"] for pairs in opened} & {pairs["externalId"] for pairs in failing}


def test_a_renamed_asset_keeps_its_open_findings_instead_of_reopening_them(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    with watched_site(pki, tmp_path) as (hosted, config):
        break_home(hosted)
        _, opened, _ = scan(config, out)
        document = yaml.safe_load(config.read_text())
        document["assets"][0]["name"] = "storefront"
        config.write_text(yaml.safe_dump(document))
        _, after_rename, _ = scan(config, out)
        renamed = [doc for doc in map(json.loads, out.read_text().splitlines()) if doc["event"]["kind"] == "asset"]
        listed = connector("assets", "list", "-c", str(config), "--format", "json").stdout.splitlines()
        fix_home(hosted)
        _, resolved, _ = scan(config, out)
    assert opened and after_rename == []  # no resolved for the old name, no opened for the new one
    assert [(doc["event"]["action"], doc["entity"]["id"], doc["postern"]["asset_before"]["id"]) for doc in renamed] \
        == [("asset-changed", "storefront", "shop.lifecycle.test")]
    assert [json.loads(line)["id"] for line in listed] == ["storefront"]
    assert {doc["postern"]["asset"]["id"] for doc in resolved} == {"storefront"}
    assert len(resolved) == len(opened)
