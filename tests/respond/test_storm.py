"""An alert storm, end to end: a Kibana rule firing for one finding over and over gives one ticket and one page."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from connector.respond.settings import RespondConfig
from connector.runtime.respond import Responder
from emulators.jira import JiraEmulator
from emulators.pagerduty import PagerDutyEmulator
from support.receiver import AuditTrail
from support.waiting import wait_until

STORM = int(os.environ.get("POSTERN_STORM_CALLBACKS", "600"))  # the bench-sized drill: 5000
TOKEN = "kibana-bearer-token-0123456789"
FINGERPRINT = "ab" * 16


def alert(n: int) -> bytes:
    return json.dumps({"rule": {"id": "rule-critical"}, "alert": {"uuid": "uuid-1"},
                       "date": f"2026-12-07T12:{n // 60 % 60:02d}:{n % 60:02d}.{n:06d}Z",  # a new firing each time
                       "alerts": [{"rule": {"id": "exposure.git_directory"}, "message": "/.git/ is readable",
                                   "postern": {"fingerprint": FINGERPRINT, "severity": "critical", "status": "fail",
                                               "asset": {"id": "shop.example.test"},
                                               "lifecycle": {"change": "opened"}}}]}).encode()


def test_a_storm_of_callbacks_for_one_finding_is_one_ticket_and_one_page(tmp_path: Path) -> None:
    with JiraEmulator() as jira, PagerDutyEmulator() as pagerduty:
        config = RespondConfig.model_validate({
            "host": "127.0.0.1", "port": 0,
            "sources": [{"name": "kibana", "kind": "elastic", "auth": "bearer", "secret": TOKEN, "rate_limit": 200}],
            "actions": {"ticket.jira": {"url": jira.url, "email": jira.email, "api_token": jira.api_token,
                                        "project": "SEC", "outbound": {"allow": ["127.0.0.0/8"]}},
                        "notify.pagerduty": {"routing_key": pagerduty.routing_key, "url": pagerduty.url,
                                             "outbound": {"allow": ["127.0.0.0/8"]}}}})
        audit = AuditTrail()
        responder = Responder(config, tmp_path / "state", audit)
        responder.start()
        try:
            wait_until(lambda: responder.server.started)
            port = responder.server.servers[0].sockets[0].getsockname()[1]
            url = f"http://127.0.0.1:{port}/v1/callbacks/elastic"
            headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
            with httpx.Client(timeout=30) as http, ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(lambda n: http.post(url, content=alert(n), headers=headers).status_code,
                                         range(STORM)))
            accepted = statuses.count(202)
            wait_until(lambda: sum(r.action.startswith("playbook-step") for r in audit) >= 3 * accepted, timeout=60)
            wait_until(lambda: pagerduty.alerts and jira.issues, timeout=30)
        finally:
            responder.stop()
    assert set(statuses) <= {202, 429} and accepted >= 100
    assert len(jira.issues) == 1 and len(pagerduty.alerts) == 1  # two playbooks matched; still one ticket
    skipped = [r for r in audit if r.action == "playbook-step-skipped"]
    assert len(skipped) >= 3 * (accepted - 1) and all(r.reason.startswith("cooldown") for r in skipped)
