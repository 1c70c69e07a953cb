"""SIGKILL drill: the responder is killed at random moments while callbacks arrive and tickets are filed.

Whatever the moment, every finding ends with exactly one ticket and no callback is lost. The default run is a
few rounds; POSTERN_KILL_ROUNDS=20 POSTERN_KILL_CALLBACKS=200 is the full drill. It runs with the action queue in
SQLite and in PostgreSQL (``respond.queue.url``).
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from emulators.jira import JiraEmulator
from support.waiting import wait_until

ROUNDS = int(os.environ.get("POSTERN_KILL_ROUNDS", "3"))
CALLBACKS = int(os.environ.get("POSTERN_KILL_CALLBACKS", "40"))
KEY = "whsec_" + base64.b64encode(b"drill signing key of 32 bytes!!!").decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def signed(n: int) -> tuple[bytes, dict[str, str]]:
    row = {"rule.id": "exposure.git_directory", "postern.severity": "critical", "postern.status": "fail",
           "postern.fingerprint": f"{n:032x}", "postern.asset.id": f"shop{n}.example.test", "message": "exposed"}
    body = json.dumps({"sid": f"sid-{n}", "search_name": "drill", "app": "TA-postern", "owner": "nobody",
                       "results_link": "https://splunk.test", "results": [row]}).encode()
    now, message_id = datetime.now(UTC), f"msg_drill_{n}"
    return body, {"content-type": "application/json", "webhook-id": message_id,
                  "webhook-timestamp": str(int(now.timestamp())),
                  "webhook-signature": Webhook(KEY).sign(message_id, now, body)}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.needs_postgres)])
def queue_url(request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("pg_url")) if request.param == "postgresql" else None


def test_killed_at_random_moments_the_responder_files_one_ticket_per_finding(tmp_path: Path,
                                                                             queue_url: str | None) -> None:
    rng = random.Random(7)
    with JiraEmulator() as jira:
        port = free_port()
        playbooks = tmp_path / "playbooks"
        playbooks.mkdir()
        (playbooks / "ticket.yaml").write_text(yaml.safe_dump({  # the shipped ones cap runs at 20-60 an hour
            "name": "drill-ticket", "trigger": {"rules": ["exposure.*"], "min_severity": "critical"},
            "steps": [{"action": "ticket.jira", "params": {"summary": "{{ field('rule.id') }} on "
                                                                      "{{ field('postern.asset.id') }}"}}],
            "guardrails": {"max_runs_per_hour": 100_000, "max_runs_per_asset_per_hour": 100}}))
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "assets": [{"host": "127.0.0.1", "ports": [free_port()], "http_port": None}],
            "state_dir": str(tmp_path / "state"),
            "respond": {"port": port, "playbooks": str(playbooks),
                        "sources": [{"name": "ta", "kind": "splunk", "auth": "signature", "secret": KEY,
                                     "rate_limit": 1000}],
                        "queue": {"backoff_base": "0.1s", "lease": "2s", "url": queue_url},
                        "actions": {"ticket.jira": {"url": jira.url, "email": jira.email,
                                                    "api_token": jira.api_token, "project": "SEC",
                                                    "outbound": {"allow": ["127.0.0.0/8"]}}}}}))
        pending = list(range(CALLBACKS))
        for _ in range(ROUNDS):
            process = subprocess.Popen([sys.executable, "-m", "connector", "respond", "-c", str(config)],
                                       stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: _ready(port), timeout=30)
                deadline = time.monotonic() + rng.uniform(0.2, 1.5)
                while pending and time.monotonic() < deadline:  # the sender retries until it gets a 2xx
                    body, headers = signed(pending[0])
                    try:
                        if httpx.post(f"http://127.0.0.1:{port}/v1/callbacks/splunk", content=body,
                                      headers=headers, timeout=5).status_code in {200, 202}:
                            pending.pop(0)
                    except httpx.HTTPError:
                        break
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
        final = subprocess.Popen([sys.executable, "-m", "connector", "respond", "-c", str(config)],
                                 stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _ready(port), timeout=30)
            for n in list(pending):
                body, headers = signed(n)
                assert httpx.post(f"http://127.0.0.1:{port}/v1/callbacks/splunk", content=body, headers=headers,
                                  timeout=10).status_code in {200, 202}
            try:
                wait_until(lambda: len(jira.issues) >= CALLBACKS, timeout=60 + CALLBACKS)
            except AssertionError:
                raise AssertionError(f"{len(jira.issues)} of {CALLBACKS} tickets filed; jobs: "
                                     f"{_jobs(config)}") from None
            time.sleep(3)  # leases of killed workers expire (2 s): any duplicate would be filed now
        finally:
            final.terminate()
            final.wait(20)
    labels = [label for issue in jira.issues.values() for label in issue.fields["labels"]
              if label.startswith("postern-")]
    assert len(labels) == len(set(labels)) == CALLBACKS  # one ticket per finding, none missing


def _jobs(config: Path) -> str:
    listed = subprocess.run([sys.executable, "-m", "connector", "respond", "jobs", "list", "-c", str(config)],
                            capture_output=True, text=True, check=False, timeout=60)
    states = [line.split("\t")[1] for line in listed.stdout.splitlines() if "\t" in line]
    return ", ".join(f"{state}: {states.count(state)}" for state in sorted(set(states))) or listed.stderr[-300:]


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
