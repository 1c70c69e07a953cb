"""The sidecar: schedules by criticality with stable jitter, writes events durably, stops cleanly on SIGTERM, and
runs alone on its state directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from connector.core.model import Asset, Criticality
from connector.runtime.scheduler import ScheduleConfig, next_slot, scan_id
from support.cli import connector, connector_process
from support.fake_tls import TLS12, LegacyServer
from support.pki import Pki
from support.sites import site
from support.waiting import wait_until
from support.web import closed_port

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_critical_assets_are_scanned_daily_and_others_weekly() -> None:
    schedule = ScheduleConfig(jitter=0.1)
    critical = Asset(host="pay.test", criticality=Criticality.CRITICAL)
    low = Asset(host="blog.test", criticality=Criticality.LOW)
    slot = START
    for asset, interval in ((critical, timedelta(days=1)), (low, timedelta(days=7))):
        following = next_slot(asset, schedule, (slot, True), START)
        assert interval * 0.9 <= following - slot <= interval * 1.1
        assert following == next_slot(asset, schedule, (slot, True), START), "jitter must survive restarts"


def test_slots_and_scan_ids_are_the_same_in_another_process() -> None:
    """Restarts must not move schedules or change event ids: nothing may depend on per-process hash seeds."""
    script = ("from datetime import datetime, UTC; from connector.runtime.scheduler import ScheduleConfig; "
              "from connector.core.model import Asset; from connector.runtime.scheduler import next_slot, scan_id; "
              "start = datetime(2026, 11, 25, 12, tzinfo=UTC); asset = Asset(host='pay.test'); "
              "slot = next_slot(asset, ScheduleConfig(), (start, True), start); print(slot.isoformat(), "
              "scan_id(asset, slot))")
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    asset = Asset(host="pay.test")
    slot = next_slot(asset, ScheduleConfig(), (START, True), START)
    assert outputs == {f"{slot.isoformat()} {scan_id(asset, slot)}\n"}


def test_jitter_spreads_assets_and_first_scans() -> None:
    schedule = ScheduleConfig()
    assets = [Asset(host=f"h{index}.test") for index in range(50)]
    slots = {next_slot(asset, schedule, (START, True), START) for asset in assets}
    first = [next_slot(asset, schedule, None, START) for asset in assets]
    assert len(slots) == 50
    assert all(START <= slot <= START + timedelta(minutes=5) for slot in first)
    assert max(first) - min(first) > timedelta(minutes=3)


def test_an_interrupted_slot_is_rerun_with_the_same_scan_id() -> None:
    asset = Asset(host="crash.test")
    assert next_slot(asset, ScheduleConfig(), (START, False), START + timedelta(hours=3)) == START
    assert scan_id(asset, START) == scan_id(asset, START)
    assert scan_id(asset, START) != scan_id(asset, START + timedelta(days=1))


def write_config(path: Path, pki: Pki, assets: list[Asset], events: Path, **extra: object) -> Path:
    document = {
        "assets": [asset.model_dump(mode="json", exclude_none=True) for asset in assets],
        "scan": {"ca_bundle": str(pki.bundle), "connect_timeout": 1, "check_timeout": 30},
        "schedule": {"startup_spread": "0s"},
        "sinks": [{"type": "file", "path": str(events)}],
        "state_dir": str(path.parent / "state"),
        **extra,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def read_events(path: Path) -> list[dict]:
    """The events the sink has written so far; a line it is still writing is left for the next read."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def findings_in(path: Path) -> list[dict]:
    """The findings' events (state and transitions), without the inventory's asset events."""
    return [event for event in read_events(path) if "rule" in event]


def test_run_once_writes_events_keeps_first_seen_and_opens_a_finding_once(pki: Pki, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with site("side.test", pki.intermediate.issue(["side.test"], days_valid=20)) as soon:
        config = write_config(tmp_path / "config.yaml", pki, [soon.asset], events)
        for _ in range(2):
            done = connector("run", "-c", str(config), "--once", timeout=60)
            assert done.returncode == 0, done.stderr
    written = findings_in(events)
    expiring = [e for e in written if e["rule"]["id"] == "cert.expiring_soon" and e["event"]["kind"] == "state"]
    opened = [e for e in written if e["rule"]["id"] == "cert.expiring_soon" and e["event"]["kind"] == "event"]
    assert len(expiring) == 2
    assert [e["event"]["action"] for e in opened] == ["finding-opened"]  # the second run restates, opens nothing
    assert expiring[0]["postern"]["first_seen"] == expiring[1]["postern"]["first_seen"]
    assert expiring[0]["postern"]["last_seen"] < expiring[1]["postern"]["last_seen"]
    assert expiring[0]["event"]["id"] != expiring[1]["event"]["id"]  # two scans, two state events


def test_sigterm_stops_the_sidecar_cleanly(pki: Pki, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with site("term.test", pki.intermediate.issue(["term.test"])) as good:
        config = write_config(tmp_path / "config.yaml", pki, [good.asset], events)
        with connector_process("--log-level", "info", "run", "-c", str(config), stderr=subprocess.PIPE) as process:
            wait_until(lambda: len(findings_in(events)) > 0, timeout=20)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "sidecar stopped" in stderr and "Traceback" not in stderr
    assert len(read_events(events)) == len({e["event"]["id"] for e in read_events(events)})


def test_sigterm_during_a_hung_scan_leaves_the_slot_to_rerun_with_the_same_ids(pki: Pki, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with LegacyServer({TLS12}, [0xC02F], behaviour="silent") as hung, \
            site("ok.test", pki.intermediate.issue(["ok.test"])) as good:
        stuck = Asset(host="hung.test", address="127.0.0.1", ports=(hung.port,), http_port=None)
        config = write_config(tmp_path / "config.yaml", pki, [good.asset, stuck], events, shutdown_grace="1s")
        document = yaml.safe_load(config.read_text())
        document["scan"]["connect_timeout"] = 30
        config.write_text(yaml.safe_dump(document))
        with connector_process("--log-json", "run", "-c", str(config), stderr=subprocess.PIPE) as process:
            wait_until(lambda: len(findings_in(events)) > 0, timeout=20)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0 and time.monotonic() - started < 10
        assert {e["resource"]["id"] for e in findings_in(events)} == {"ok.test"}
        logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
        assert [(entry["message"], entry["asset"]) for entry in logged if entry["message"].startswith("asset not")] \
            == [("asset not scanned to the end; its slot runs again", "hung.test")]
        state = subprocess.run(
            [sys.executable, "-c", "import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); "
             "print(dict(db.execute('select asset_id, completed from schedule')))",
             str(tmp_path / "state" / "state.sqlite")], capture_output=True, text=True, check=True)
    assert state.stdout.strip() == "{'ok.test': 1, 'hung.test': 0}"


def test_metrics_endpoint_counts_what_the_sidecar_did(pki: Pki, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    port = closed_port()
    with site("metrics.test", pki.intermediate.issue(["metrics.test"])) as good:
        config = write_config(tmp_path / "config.yaml", pki, [good.asset], events, metrics_port=port)
        with connector_process("run", "-c", str(config), stderr=subprocess.DEVNULL):
            wait_until(lambda: len(findings_in(events)) > 0, timeout=20)

            def delivered() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    return response.read().decode()

            wait_until(lambda: 'connector_events_delivered_total{sink="file"}' in delivered(), timeout=20)
            text = delivered()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    spooled = float(samples["connector_events_spooled_total"])
    assert spooled == len(read_events(events))
    assert 'connector_findings_total{status="pass"}' in text
    assert float(samples['connector_changes_total{action="asset-created"}']) == 1
    assert float(samples["connector_assets_unfinished_total"]) == 0

def test_a_second_process_on_the_same_state_directory_refuses_to_start(pki: Pki, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with site("lock.test", pki.intermediate.issue(["lock.test"])) as hosted:
        config = write_config(tmp_path / "config.yaml", pki, [hosted.asset], events)
        with connector_process("run", "-c", str(config), stderr=subprocess.DEVNULL) as first:
            wait_until(lambda: len(findings_in(events)) > 0, timeout=30)
            second_run = connector("run", "-c", str(config), "--once", timeout=60)
            second_scan = connector("scan", "-c", str(config), "-q", "-o", str(tmp_path / "out.jsonl"), timeout=60)
            assert first.poll() is None, "the first process keeps running"
    state_dir = tmp_path / "state"
    for second in (second_run, second_scan):
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith("error: ") and second.stderr.count("error") == 1  # one message (wrapped)
        assert "Traceback" not in second.stderr
        assert f"state directory {state_dir} is in use by another connector process (pid {first.pid})" \
            in " ".join(second.stderr.split())
    written = [event for event in findings_in(events) if event["event"]["kind"] == "state"]
    per_rule = Counter((event["rule"]["id"], event["postern"].get("subject")) for event in written)
    assert written and max(per_rule.values()) == 1, "each finding of the one scan is written once"
    assert not (tmp_path / "out.jsonl").exists() or not (tmp_path / "out.jsonl").read_text()


def test_the_lock_goes_with_the_process(pki: Pki, tmp_path: Path) -> None:
    """A killed connector leaves a lock file behind, but no lock: the next start must not be refused."""
    events = tmp_path / "events.jsonl"
    with site("relock.test", pki.intermediate.issue(["relock.test"])) as hosted:
        config = write_config(tmp_path / "config.yaml", pki, [hosted.asset], events)
        with connector_process("run", "-c", str(config), stderr=subprocess.DEVNULL) as first:
            wait_until(lambda: len(findings_in(events)) > 0, timeout=30)
            first.kill()
            first.wait(10)
        done = connector("run", "-c", str(config), "--once", timeout=60)
    assert done.returncode == 0, done.stderr
