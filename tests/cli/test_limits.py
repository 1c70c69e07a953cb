"""Limits of our own never pass for answers from the target: a low descriptor limit still reports every open port,
and a password given in a target is never repeated back."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest
import yaml

from support.cli import COMMAND, connector
from support.web import closed_port, listening

DESCRIPTOR_LIMIT = 64
ASSETS = 4
OPEN_PORTS = 40  # 4 x 40 = 160 connections wanted at once, far beyond 64 descriptors


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))  # hard too: it cannot be raised


def test_every_open_port_is_reported_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with listening(OPEN_PORTS) as ports:
        refused = closed_port()
        assets = [{"host": f"limit{index}.test", "address": "127.0.0.1", "http_port": None, "expected_ports": [],
                   "scan_ports": [*ports, refused]} for index in range(ASSETS)]
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "assets": assets, "checks": {"ports": {"banner_timeout": 0.1}}, "scan": {"connect_timeout": 2},
            "state_dir": str(tmp_path / "state")}))
        done = subprocess.run([*COMMAND, "scan", "-c", str(config), "--checks", "ports", "-o", str(events), "-q"],
                              capture_output=True, text=True, timeout=120, check=False,
                              preexec_fn=_low_descriptor_limit)
    assert done.returncode == 0, done.stderr
    written = [event for event in map(json.loads, events.read_text().splitlines()) if event["event"]["kind"] == "state"]
    reported = {(event["resource"]["id"], int(event["postern"]["subject"])) for event in written
                if event["rule"]["id"] == "ports.unexpected_open" and event["event"]["outcome"] == "failure"}
    assert reported == {(asset["host"], port) for asset in assets for port in ports}
    assert not [event for event in written if event["event"]["outcome"] == "success"], "no asset may pass"


@pytest.mark.parametrize("target", [
    "admin:hunter2@creds.invalid",
    "admin:hunter2@creds.invalid:8443",
    "https://admin:hunter2@creds.invalid/",
    "ftp://admin:hunter2@creds.invalid",
    "admin:hun/ter@2@creds.invalid",
])
def test_a_password_in_a_target_is_never_echoed(target: str) -> None:
    done = connector("scan", target, "--checks", "ports", "-q")
    assert done.returncode == 2
    assert "hunter2" not in done.stderr + done.stdout and "hun/ter" not in done.stderr + done.stdout
    assert "admin:***@" in done.stderr and "Traceback" not in done.stderr


def test_a_password_in_a_configured_url_is_never_echoed(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"assets": [{"url": "https://admin:hunter2@creds.invalid/"}],
                                      "state_dir": str(tmp_path / "state")}))
    done = connector("validate", "-c", str(config))
    assert done.returncode == 1  # validate's "invalid configuration"
    assert "hunter2" not in done.stderr + done.stdout and "credentials" in done.stderr
