"""``connector respond`` as an operator runs it: a signed alert in, planned steps and an audit trail out."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from standardwebhooks.webhooks import Webhook

from support.cli import connector, connector_process
from support.waiting import wait_until

KEY = "whsec_" + base64.b64encode(b"ta-postern signing key, 32 bytes").decode()
FINGERPRINT = "c0" * 16


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "assets": [{"host": "shop.example.test"}],
        "sinks": [{"type": "file", "path": str(tmp_path / "events.jsonl")}],
        "state_dir": str(tmp_path / "state"),
        "respond": {"port": port, "sources": [{"name": "splunk-ta", "kind": "splunk", "auth": "signature",
                                               "secret": KEY}]},
    }))
    return config


def expiring_alert() -> bytes:
    row = {"rule.id": "cert.expiring_soon", "postern.severity": "medium", "postern.fingerprint": FINGERPRINT,
           "postern.asset.id": "shop.example.test", "postern.asset.owner": "web-team@example.test",
           "postern.certificate.days_left": "9", "message": "certificate expires in 9 days"}
    return json.dumps({"sid": "scheduler_postern_at_1", "search_name": "Postern - certificate expiring",
                       "app": "TA-postern", "owner": "nobody", "results_link": "https://splunk.test/@go?sid=1",
                       "results": [row]}).encode()


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_signed_alert_is_planned_and_audited_in_the_siem(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    body, now = expiring_alert(), datetime.now(UTC)
    headers = {"content-type": "application/json", "webhook-id": "msg_e2e",
               "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(KEY).sign("msg_e2e", now, body)}
    url = f"http://127.0.0.1:{port}/v1/callbacks/splunk"
    with connector_process("respond", "-c", str(config), stderr=subprocess.PIPE):
        wait_until(lambda: _answers(port), timeout=30)
        assert httpx.post(url, content=body, headers=headers).status_code == 202
        forged = {**headers, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
        assert httpx.post(url, content=body, headers=forged).status_code == 401
        sink = tmp_path / "events.jsonl"
        wait_until(lambda: sum(e["event"]["action"].startswith("playbook-step") for e in events(sink)) >= 2,
                   timeout=30)
    audit = events(tmp_path / "events.jsonl")
    actions = [event["event"]["action"] for event in audit]
    assert {"callback-accepted", "callback-rejected"} <= set(actions)
    steps = {event["postern"]["audit"]["playbook"]: event for event in audit
             if event["event"]["action"] == "playbook-step-queued"}
    # 9 days left: the owner's e-mail and a ticket (14 days or less); the medium finding waits for the owner's
    # daily digest event instead of a message of its own
    assert set(steps) == {"cert-expiring-notify-owner", "cert-expiring-ticket"}
    assert all(event["event"]["kind"] == "event" and event["event"]["dataset"] == "postern.audit" for event in audit)
    rejected = next(event for event in audit if event["event"]["action"] == "callback-rejected")
    assert rejected["event"]["outcome"] == "failure" and rejected["http"]["response"]["status_code"] == 401
    listed = connector("respond", "jobs", "list", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    pending = [line.split("\t") for line in listed.stdout.splitlines()]
    assert sorted(row[3] for row in pending if row[1] == "pending") == ["notify.email", "ticket.jira"]


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_playbooks_test_prints_the_plan_without_side_effects(tmp_path: Path) -> None:
    alert = {"rule": {"id": "r"}, "alert": {"uuid": "u"}, "date": "2026-12-07T12:00:00Z", "alerts": [
        {"rule": {"id": "exposure.git_directory"}, "message": "/.git/ is readable",
         "postern": {"fingerprint": FINGERPRINT, "severity": "critical", "asset": {"id": "shop.example.test"},
                     "lifecycle": {"change": "opened"}}}]}
    event = tmp_path / "alert.json"
    event.write_text(json.dumps(alert))
    playbook = Path(__file__).parents[2] / "playbooks" / "critical-exposure-page.yaml"
    done = connector("playbooks", "test", str(playbook), "--event", str(event))
    assert done.returncode == 0, done.stderr
    assert "step 0: notify.pagerduty (auto)" in done.stdout and f'"dedup_key": "{FINGERPRINT}"' in done.stdout
    assert "step 1: ticket.jira (auto)" in done.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: Broken Name\nsteps: []\n")
    invalid = connector("playbooks", "validate", str(tmp_path))
    assert invalid.returncode == 1 and f"{broken}:1: name" in invalid.stderr and f"{broken}:2: steps" in invalid.stderr


def test_the_sidecar_hosts_the_receiver_when_configured(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    document = yaml.safe_load(config.read_text())
    document["assets"] = [{"host": "127.0.0.1", "ports": [free_port()], "http_port": None}]  # nothing listens
    document["schedule"] = {"startup_spread": "0s"}
    config.write_text(yaml.safe_dump(document))
    with connector_process("run", "-c", str(config), stderr=subprocess.PIPE) as process:
        wait_until(lambda: _answers(port), timeout=30)
        second = connector("respond", "-c", str(config))  # one process per state directory
        process.terminate()
        assert process.wait(20) == 0
    assert second.returncode == 2 and "state" in second.stderr
