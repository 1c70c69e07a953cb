"""The watch lane: a change to a critical asset reaches the SIEM in seconds, as one event, not at the next
scheduled scan (a day later for critical assets)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from connector.scan.sentinel import Sentinel
from support.cli import connector_process
from support.pki import Pki
from support.sites import hardened_routes, site
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
