"""The watch lane: a change to a critical asset reaches the SIEM in seconds, as one event, not at the next
scheduled scan (a day later for critical assets)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from connector.core.model import Asset, Criticality
from connector.runtime.state import StateStore
from connector.runtime.watch import WatchLane, WatchSettings
from connector.scan.context import ScanSettings
from connector.scan.sentinel import Sentinel
from support.cli import connector_process
from support.pki import Pki
from support.sites import Site, hardened_routes, site
from support.waiting import wait_until

QUICK_CHECKS = {name: {"enabled": False} for name in (
    "tls", "exposure", "ports", "observatory", "content", "dns", "spf", "dmarc", "dkim", "mta_sts")}


def events_in(path: Path) -> list[dict[str, Any]]:
    """The events the sink has written so far; a line it is still writing is left for the next read."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def actions(path: Path, action: str) -> list[dict[str, Any]]:
    return [event for event in events_in(path) if event["event"].get("action") == action]


def test_a_header_removed_from_a_critical_site_is_one_opened_event_within_seconds(pki: Pki, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with site("pay.watch.test", pki.intermediate.issue(["pay.watch.test"]), https_routes=hardened_routes()) as pay:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "assets": [pay.asset.model_dump(mode="json", exclude_none=True) | {"criticality": "critical"}],
            "scan": {"ca_bundle": str(pki.bundle), "connect_timeout": 2},
            "schedule": {"startup_spread": "0s"},
            "checks": QUICK_CHECKS,
            "watch": {"interval": "1s"},
            "sinks": [{"type": "file", "path": str(events)}],
            "state_dir": str(tmp_path / "state"),
        }))
        with connector_process("run", "-c", str(config), stderr=subprocess.PIPE) as sidecar:
            wait_until(lambda: any(e["event"]["kind"] == "state" for e in events_in(events)), timeout=30)
            time.sleep(2.5)  # the lane has a sentinel of the healthy site
            pay.https.routes["/"] = hardened_routes(drop=("Content-Security-Policy",))["/"]
            broken_at = time.monotonic()
            wait_until(lambda: actions(events, "finding-opened"), timeout=30)
            detected_in = time.monotonic() - broken_at
            time.sleep(3)  # more sentinels of the broken site: they must not open it again
            pay.https.routes["/"] = hardened_routes()["/"]
            wait_until(lambda: actions(events, "finding-resolved"), timeout=30)
            sidecar.terminate()
            _, stderr = sidecar.communicate(timeout=30)
    opened = actions(events, "finding-opened")
    assert {event["rule"]["id"] for event in opened} == {"csp.missing"}
    assert len(opened) == 1, "one change, one event: later sentinels and scans restate it silently"
    assert detected_in < 10, f"{detected_in:.1f} s from the change to its event"
    resolved = actions(events, "finding-resolved")
    assert [event["postern"]["fingerprint"] for event in resolved] == [opened[0]["postern"]["fingerprint"]]
    assert "Traceback" not in stderr


def sentinel(**parts: Any) -> Sentinel:
    base: dict[str, Any] = {"certificate": "aa", "protocol": "TLSv1.3", "route": {"status": 200},
                            "dns": {"A": ["192.0.2.1"]}, "unobserved": {}}
    return Sentinel(**(base | parts))


def test_a_part_the_sentinel_could_not_see_is_not_a_change() -> None:
    healthy = sentinel()
    flaky = sentinel(certificate=None, protocol=None, unobserved={"tls": "timed out"})
    assert flaky.differences(healthy) == []
    assert sentinel(certificate="bb").differences(healthy) == ["certificate"]
    assert sentinel(dns={"A": ["192.0.2.7"]}).differences(flaky) == ["dns"]


def test_a_slow_rescan_of_one_asset_does_not_delay_the_sentinels_of_the_others(pki: Pki, tmp_path: Path) -> None:
    rescanned: dict[str, float] = {}

    async def rescan(asset: Asset, changed: list[str]) -> bool:
        rescanned.setdefault(asset.id, time.monotonic())
        await asyncio.sleep(20 if asset.host == "slow.watch.test" else 0)  # a full scan of a slow site
        return True

    async def drill(slow: Site, quick: Site) -> float:
        state = StateStore(tmp_path / "state.sqlite")
        watched = [site.asset.model_copy(update={"criticality": Criticality.CRITICAL}) for site in (slow, quick)]
        lane = WatchLane(WatchSettings(interval=timedelta(seconds=0.5)),
                         ScanSettings(ca_bundle=pki.bundle, connect_timeout=2), state, watched, rescan)
        stop = asyncio.Event()
        running = asyncio.create_task(lane.run(stop))
        await asyncio.sleep(1.5)  # every asset has a sentinel
        slow.https.routes["/"] = hardened_routes(drop=("Content-Security-Policy",))["/"]
        await asyncio.sleep(1.5)  # the slow asset's rescan has begun and takes its 20 s
        quick.https.routes["/"] = hardened_routes(drop=("Content-Security-Policy",))["/"]
        changed_at = time.monotonic()
        while quick.asset.id not in rescanned and time.monotonic() - changed_at < 15:
            await asyncio.sleep(0.05)
        stop.set()
        await running
        state.close()
        return rescanned.get(quick.asset.id, float("inf")) - changed_at

    with site("slow.watch.test", pki.intermediate.issue(["slow.watch.test"]), https_routes=hardened_routes()) as slow, \
            site("quick.watch.test", pki.intermediate.issue(["quick.watch.test"]),
                 https_routes=hardened_routes()) as quick:
        delay = asyncio.run(drill(slow, quick))
    assert "slow.watch.test" in rescanned
    assert delay < 3, f"the quick asset's change waited {delay:.1f} s behind the slow asset's rescan"
