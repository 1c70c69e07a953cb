"""The SOAR half end to end, once for each SIEM's callback shape: a scan finds a flaw, the SIEM's alert calls back
signed (Splunk, through TA-postern's action) or with its secret header (Kibana's Webhook connector), the owner
gets an e-mail from a real SMTP server and the tracker one ticket; a resolved event closes the ticket only after
a real rescan confirms the fix, and every step is an audit event in the spool's sink."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from emulators.jira import JiraEmulator
from support.cli import connector, connector_process
from support.pki import Pki
from support.sites import Site, hardened_routes, site
from support.smtp import Mailbox
from support.waiting import wait_until
from support.web import closed_port

HOST = "shop.example.test"
OWNER = "web-team@example.test"
TA_KEY = "whsec_" + base64.b64encode(b"ta-postern signing key, 32 bytes").decode()
KIBANA_TOKEN = "kibana-bearer-token-0123456789"
ROOT = Path(__file__).parents[2]
OPENED_PLAYBOOK = """\
name: nosniff-notify-and-ticket
trigger:
  rules: [headers.nosniff_missing]
  lifecycle: [opened, reopened]
steps:
  - action: notify.email
    params:
      to: "{{ field('postern.asset.owner') }}"
      subject: "{{ field('rule.id') }} on {{ field('postern.asset.id') }}"
      body: "{{ field('message') }}"
  - action: ticket.jira
    params:
      summary: "{{ field('rule.id') }} on {{ field('postern.asset.id') }}"
      description: "{{ field('message') }}"
"""


@pytest.fixture
def jira() -> Iterator[JiraEmulator]:
    with JiraEmulator() as emulator:
        yield emulator


@pytest.fixture
def shop(pki: Pki) -> Iterator[Site]:
    with site(HOST, pki.intermediate.issue([HOST]), https_routes=hardened_routes(drop=("X-Content-Type-Options",)),
              plain_http=False) as running:
        yield running


def write_config(tmp_path: Path, pki: Pki, shop: Site, mailbox: Mailbox, jira: JiraEmulator, port: int) -> Path:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "opened.yaml").write_text(OPENED_PLAYBOOK)
    (playbooks / "resolved.yaml").write_text((ROOT / "playbooks" / "resolved-finding-close-ticket.yaml").read_text())
    loopback = {"allow": ["127.0.0.0/8"]}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "assets": [{**shop.asset.model_dump(mode="json", exclude_none=True), "owner": OWNER}],
        "scan": {"ca_bundle": str(pki.bundle)}, "state_dir": str(tmp_path / "state"),
        "sinks": [{"type": "file", "path": str(tmp_path / "events.jsonl")}],
        "respond": {
            "port": port, "playbooks": str(playbooks),
            "sources": [{"name": "splunk-ta", "kind": "splunk", "auth": "signature", "secret": TA_KEY},
                        {"name": "kibana", "kind": "elastic", "auth": "bearer", "secret": KIBANA_TOKEN}],
            "actions": {
                "notify.email": {"host": mailbox.host, "port": mailbox.port, "sender": "postern@example.test",
                                 "username": "postern", "password": "relay-password-123",
                                 "ca_bundle": str(pki.bundle), "outbound": loopback},
                "ticket.jira": {"url": jira.url, "email": jira.email, "api_token": jira.api_token, "project": "SEC",
                                "outbound": loopback}}},
    }))
    return config


def events(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def flattened(document: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """An event as a Splunk search result row: dotted field names, every value a string."""
    row: dict[str, str] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            row |= flattened(value, f"{prefix}{key}.")
        else:
            row[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return row


def call_back(shape: str, port: int, event: dict[str, Any], n: int) -> httpx.Response:
    """What each SIEM sends when its alert on ``event`` fires: TA-postern's signed action, or a Kibana rule's
    Webhook connector with the body the README documents."""
    if shape == "splunk":
        body = json.dumps({"sid": f"scheduler_postern_at_{n}", "search_name": "Postern - finding opened",
                           "app": "TA-postern", "owner": "nobody", "results_link": "https://splunk.test/@go",
                           "results": [flattened(event)]}).encode()
        now, message = datetime.now(UTC), f"msg_e2e_{n}"
        headers = {"content-type": "application/json", "webhook-id": message,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(TA_KEY).sign(message, now, body)}
        return httpx.post(f"http://127.0.0.1:{port}/v1/callbacks/splunk", content=body, headers=headers)
    body = json.dumps({"rule": {"id": "rule-postern-findings", "name": "Postern findings"},
                       "alert": {"id": f"alert-{n}", "uuid": f"uuid-{n}"}, "date": datetime.now(UTC).isoformat(),
                       "alerts": [event]}).encode()
    return httpx.post(f"http://127.0.0.1:{port}/v1/callbacks/elastic", content=body,
                      headers={"content-type": "application/json", "authorization": f"Bearer {KIBANA_TOKEN}"})


def resolved_version(opened: dict[str, Any]) -> dict[str, Any]:
    """The finding's resolved event as the SIEM would forward it; only a rescan decides whether it is true."""
    event = json.loads(json.dumps(opened))
    event["event"]["action"] = "finding-resolved"
    event["postern"]["lifecycle"]["change"] = "resolved"
    return event


def audit(tmp_path: Path, action: str) -> list[dict[str, Any]]:
    return [event for event in events(tmp_path)
            if event["event"].get("dataset") == "postern.audit" and event["event"]["action"] == action]


@pytest.mark.parametrize("shape", ["splunk", "kibana"])
def test_an_alert_runs_its_playbook_and_the_fix_closes_its_ticket(shape: str, tmp_path: Path, pki: Pki, shop: Site,
                                                                  mailbox: Mailbox, jira: JiraEmulator) -> None:
    port = closed_port()
    config = write_config(tmp_path, pki, shop, mailbox, jira, port)
    scanned = connector("scan", "-c", str(config), "--checks", "headers", "-q", "-o", "/dev/null")
    assert scanned.returncode in (0, 1), scanned.stderr  # 1 only for findings at --fail-on or above
    [opened] = [event for event in events(tmp_path) if event["event"].get("action") == "finding-opened"
                and event["rule"]["id"] == "headers.nosniff_missing"]
    with connector_process("respond", "-c", str(config), stderr=subprocess.PIPE):
        wait_until(lambda: _ready(port), timeout=30)
        assert call_back(shape, port, opened, 1).status_code == 202
        wait_until(lambda: len(jira.issues) == 1 and len(mailbox.messages) == 1, timeout=30)
        [issue] = jira.issues.values()
        assert issue.fields["summary"] == f"headers.nosniff_missing on {HOST}"
        assert mailbox.recipients == [[OWNER]]
        assert mailbox.messages[0]["Subject"] == f"headers.nosniff_missing on {HOST}"
        # the SIEM says resolved while the site still lacks the header: the rescan finds it failing
        assert call_back(shape, port, resolved_version(opened), 2).status_code == 202
        wait_until(lambda: any(e["postern"]["audit"].get("result", {}).get("closed", "") is None
                               for e in audit(tmp_path, "playbook-step-succeeded")
                               if e["postern"]["audit"].get("action") == "ticket.jira"), timeout=60)
        assert issue.status != "Done"
        shop.https.routes.update(hardened_routes())  # the fix
        assert call_back(shape, port, resolved_version(opened), 3).status_code == 202
        wait_until(lambda: issue.status == "Done", timeout=60)
    assert len(jira.issues) == 1 and len(mailbox.messages) == 1  # one ticket, one e-mail, whatever was re-sent
    assert len(audit(tmp_path, "callback-accepted")) == 3
    succeeded = [e["postern"]["audit"]["action"] for e in audit(tmp_path, "playbook-step-succeeded")]
    assert sorted(succeeded) == ["notify.email", "ticket.jira", "ticket.jira", "ticket.jira"]
    rescans = {e["postern"]["scan_id"] for e in events(tmp_path)
               if e["event"].get("dataset") == "postern.findings" and e["rule"]["id"] == "headers.nosniff_missing"}
    assert len(rescans) >= 3  # the scan and the two confirming rescans, each published like any scan


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
