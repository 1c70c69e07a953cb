"""File and stdout sinks: JSON lines or CEF lines, durably appended, rotated by size."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from support.cli import connector
from support.delivery import make_pipeline, ship
from support.scanning import web_checks, without_dns_checks


def test_file_sink_writes_one_json_event_per_line_and_rotates_by_size(tmp_path: Path, catalog, scanned) -> None:
    path = tmp_path / "out" / "events.jsonl"
    sink = {"type": "file", "path": str(path), "rotate_bytes": 20_000, "keep": 3, "batch_events": 5}
    assert ship(make_pipeline(tmp_path, catalog, [sink]), scanned) == {"file": 0}
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files] == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    assert all(f.stat().st_size <= 20_000 for f in files)
    kept = [json.loads(line)["event"]["id"] for f in files for line in f.read_text().splitlines()]
    assert len(kept) == len(set(kept)) and set(kept) <= {f.event_id for f in scanned}
    newest = [json.loads(line)["event"]["id"] for line in path.read_text().splitlines()]
    assert newest == [f.event_id for f in scanned][-len(newest):]  # order kept, newest file last


def test_file_sink_in_cef(tmp_path: Path, catalog, scanned) -> None:
    path = tmp_path / "events.cef"
    assert ship(make_pipeline(tmp_path, catalog, [{"type": "file", "path": str(path), "format": "cef"}]),
                scanned) == {"file": 0}
    lines = path.read_text().splitlines()
    assert len(lines) == len(scanned) and all(line.startswith("CEF:0|Postern|") for line in lines)


def test_stdout_sink_prints_events_for_container_log_collectors(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"assets": [{"host": "no-such-host.invalid", "http_port": None}],
                                      "checks": without_dns_checks(), "state_dir": str(tmp_path / "state"),
                                      "sinks": [{"type": "stdout"}]}))
    done = connector("scan", "-c", str(config), "-q", "-o", "/dev/null", timeout=60)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    rules = [event["rule"]["id"] for event in events if event["event"]["kind"] == "state"]
    assert rules == ["scan.error"] * len(web_checks())
    assert [event["event"]["action"] for event in events if event["event"]["kind"] == "asset"] == ["asset-created"]
