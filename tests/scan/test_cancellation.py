"""Timeouts cancel one check, never another: fetches shared between checks outlive any one check's deadline, and a
scan of many stalling targets ends with every asset's events, its failures as error findings."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from connector.core.model import Asset
from connector.probes.guard import OutboundGuard, Resolver
from connector.probes.http import HttpFetcher
from connector.probes.web import WebProbe
from support.cli import connector
from support.hostile import Behaviour, Exchange, HostileServer, RawServer, silence, slow_drip, stall
from support.pki import Pki
from support.scanning import web_checks
from support.sites import page
from support.web import Reply, tls_context

SLOW_TARGETS = 200


def late(seconds: float) -> Behaviour:
    """Answers after ``seconds``: longer than one check waits, shorter than the other."""

    def answer(exchange: Exchange) -> None:
        exchange.pause(seconds)
        exchange.reply(Reply(200, [], page("<p>late but here</p>")))

    return answer


def test_a_shared_fetch_survives_the_timeout_of_another_check(pki: Pki) -> None:
    issued = pki.intermediate.issue(["shared.test"])
    with HostileServer({"/": late(0.6)}, tls=tls_context(issued)) as server:
        asset = Asset(host="shared.test", address="127.0.0.1", ports=(server.port,), http_port=None)

        async def two_checks() -> int:
            http = HttpFetcher(timeout=5, ca_bundle=pki.bundle, user_agent="test",
                               guard=OutboundGuard(Resolver(None, 5)))
            web = WebProbe(asset, http)
            impatient = asyncio.ensure_future(asyncio.wait_for(web.page("/"), 0.1))
            patient = asyncio.ensure_future(web.page("/"))
            with pytest.raises(TimeoutError):
                await impatient
            try:
                return (await patient).status
            finally:
                await http.aclose()

        assert asyncio.run(two_checks()) == 200
    assert len(server.requests) == 1, "still one fetch, shared"


def test_two_hundred_stalling_targets_all_get_their_events(pki: Pki, tmp_path: Path) -> None:
    issued = pki.intermediate.issue(["slow.test"])
    checks = web_checks()
    with ExitStack() as stack:
        behaviours = [
            stack.enter_context(RawServer(stall)).port,  # accepts, never says a word (TLS hello unanswered)
            stack.enter_context(HostileServer({"/*": silence()}, tls=tls_context(issued))).port,
            stack.enter_context(HostileServer({"/*": slow_drip(0.2)}, tls=tls_context(issued))).port,
        ]
        http = stack.enter_context(HostileServer({"/*": slow_drip(0.2)})).port
        assets = [{"host": f"s{index}.slow.test", "address": "127.0.0.1", "ports": [behaviours[index % 3]],
                   "http_port": http, "scan_ports": [behaviours[index % 3]],
                   "routes": ["/", "/a", "/b", "/c"]} for index in range(SLOW_TARGETS)]
        # one site with as many routes: the headers check's job per route puts the later checks' deadlines behind
        # the content check's, whose timeout then cancelled the home page under them (a crash, 0 events)
        assets.append({"host": "routes.slow.test", "address": "127.0.0.1", "ports": [behaviours[1]],
                       "http_port": http, "scan_ports": [behaviours[1]],
                       "routes": ["/", *(f"/route/{index}" for index in range(SLOW_TARGETS))]})
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "assets": assets, "state_dir": str(tmp_path / "state"),
            "scan": {"ca_bundle": str(pki.bundle), "connect_timeout": 5, "check_timeout": 1, "concurrency": 64},
            "checks": {"ports": {"banner_timeout": 0.1}}}))
        out = tmp_path / "events.jsonl"
        done = connector("scan", "-c", str(config), "--checks", ",".join(checks), "-o", str(out), "-q",
                         timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    events = [event for event in map(json.loads, out.read_text().splitlines()) if event["event"]["kind"] == "state"]
    by_asset = {(event["resource"]["id"], event["event"]["provider"]) for event in events}
    assert by_asset == {(asset["host"], check) for asset in assets for check in checks}
    errors = [event for event in events if event["rule"]["id"] == "scan.error"]
    assert {event["event"]["outcome"] for event in errors} == {"unknown"}  # could not evaluate: not a pass
    kinds = Counter(event["error"]["type"] for event in errors)
    assert kinds["timeout"] >= 2 * SLOW_TARGETS, kinds  # check_timeout cancelled checks mid-fetch
    assert "internal" not in kinds, kinds
