"""The callback receiver as senders and attackers meet it: one job per alert, every bad request refused and audited."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook

from support.receiver import RunningReceiver, running_receiver

TA_KEY = "whsec_" + base64.b64encode(b"ta-postern signing key, 32 bytes").decode()
SOAR_KEY = "whsec_" + base64.b64encode(b"the SOAR platform's own key 1234").decode()
URL_TOKEN = "splunk-url-token-0123456789abcdef"
KIBANA_TOKEN = "kibana-bearer-token-0123456789"

SOURCES = [
    {"name": "splunk-ta", "kind": "splunk", "auth": "signature", "secret": TA_KEY},
    {"name": "splunk-webhook", "kind": "splunk", "auth": "url_token", "secret": URL_TOKEN, "allow_url_token": True},
    {"name": "kibana", "kind": "elastic", "auth": "bearer", "secret": KIBANA_TOKEN},
    {"name": "soar", "kind": "soar", "auth": "signature", "secret": SOAR_KEY, "rate_limit": 0.5},
    {"name": "office", "kind": "feedback", "auth": "signature", "secret": SOAR_KEY, "allow_cidrs": ["10.0.0.0/8"]},
]

# Splunk's documented example of the built-in Webhook alert action's body
SPLUNK_EXAMPLE = (b'{"result":{"sourcetype":"mongod","count":"8"},"sid":"scheduler_admin_search_W2_at_14232356_132",'
                  b'"results_link":"http://web.example.local:8000/app/search/@go?sid=scheduler_admin_search_W2_at_'
                  b'14232356_132","search_name":null,"owner":"admin","app":"search"}')

TA_BODY = json.dumps({"sid": "scheduler_postern_RMD5_at_1765000000_7", "search_name": "Postern - certificate expiring",
                      "app": "TA-postern", "owner": "nobody", "results_link": "https://splunk.test/@go?sid=7",
                      "results": [{"postern.fingerprint": "ab" * 16, "rule.id": "cert.expiring"},
                                  {"postern.fingerprint": "cd" * 16, "rule.id": "cert.expiring"}]}).encode()

KIBANA_BODY = json.dumps({"rule": {"id": "6f1c-rule", "name": "Postern critical finding"},
                          "alert": {"id": "a-1", "uuid": "3b8e-alert-uuid"}, "date": "2026-12-07T12:00:00.000Z",
                          "alerts": [{"postern": {"fingerprint": "ef" * 16}}]}).encode()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[RunningReceiver]:
    with running_receiver(tmp_path, sources=SOURCES, max_body="64KiB", read_timeout="1s") as running:
        yield running


def signed(key: str, body: bytes, message_id: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {"content-type": "application/json", "webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": Webhook(key).sign(message_id, at, body)}


def post(receiver: RunningReceiver, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(receiver.url + path, content=body,
                      headers=headers or {"content-type": "application/json"}, timeout=10)


def test_splunks_documented_webhook_body_is_queued_once(receiver: RunningReceiver) -> None:
    first = post(receiver, f"/v1/callbacks/splunk/{URL_TOKEN}", SPLUNK_EXAMPLE)
    again = post(receiver, f"/v1/callbacks/splunk/{URL_TOKEN}", SPLUNK_EXAMPLE)
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    [job] = receiver.queue.jobs()
    assert job.action == "playbooks.plan" and job.params["source"] == "splunk-webhook"
    assert job.params["payload"]["result"] == {"sourcetype": "mongod", "count": "8"}
    assert [record.action for record in receiver.audit] == ["callback-accepted", "callback-duplicate"]


def test_a_signed_ta_callback_is_accepted_and_its_replay_runs_nothing(receiver: RunningReceiver) -> None:
    headers = signed(TA_KEY, TA_BODY, "msg_2QxK9")
    assert post(receiver, "/v1/callbacks/splunk", TA_BODY, headers).status_code == 202
    assert post(receiver, "/v1/callbacks/splunk", TA_BODY, headers).status_code == 200  # the sender's retry
    [job] = receiver.queue.jobs()
    assert len(job.params["payload"]["results"]) == 2  # every row, not Splunk's first one only


def test_forged_stale_and_unsigned_callbacks_are_refused_and_audited(receiver: RunningReceiver) -> None:
    forged = signed("whsec_" + base64.b64encode(b"an attacker's guess of the key!!").decode(), TA_BODY, "msg_f")
    stale = signed(TA_KEY, TA_BODY, "msg_s", datetime.now(UTC) - timedelta(minutes=10))
    tampered = signed(TA_KEY, TA_BODY, "msg_t")
    answers = [post(receiver, "/v1/callbacks/splunk", TA_BODY, forged),
               post(receiver, "/v1/callbacks/splunk", TA_BODY, stale),
               post(receiver, "/v1/callbacks/splunk", TA_BODY.replace(b"expiring", b"revoked!"), tampered),
               post(receiver, "/v1/callbacks/splunk", TA_BODY),
               post(receiver, "/v1/callbacks/splunk/not-the-token", SPLUNK_EXAMPLE)]
    assert [answer.status_code for answer in answers] == [401] * 5
    assert receiver.queue.jobs() == []
    assert [(record.action, record.details['status']) for record in receiver.audit] == [("callback-rejected", 401)] * 5


def counted(source: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("connector_callbacks_total", {"source": source, "outcome": outcome}) or 0.0


def test_kibana_retries_are_one_callback_and_a_wrong_token_is_refused(receiver: RunningReceiver) -> None:
    before = counted("kibana", "duplicate"), counted("unknown", "rejected")
    bearer = {"content-type": "application/json", "authorization": f"Bearer {KIBANA_TOKEN}"}
    assert [post(receiver, "/v1/callbacks/elastic", KIBANA_BODY, bearer).status_code for _ in range(4)] == \
        [202, 200, 200, 200]  # Kibana retries up to three times on 429 and 5xx
    wrong = {"content-type": "application/json", "authorization": "Bearer " + "x" * len(KIBANA_TOKEN)}
    assert post(receiver, "/v1/callbacks/elastic", KIBANA_BODY, wrong).status_code == 401
    assert len(receiver.queue.jobs()) == 1
    assert (counted("kibana", "duplicate") - before[0], counted("unknown", "rejected") - before[1]) == (3, 1)


def test_bodies_are_bounded_typed_and_validated(receiver: RunningReceiver) -> None:
    bearer = {"content-type": "application/json", "authorization": f"Bearer {KIBANA_TOKEN}"}
    huge = b'{"pad": "' + b"x" * 70_000 + b'"}'
    streamed = httpx.post(receiver.url + "/v1/callbacks/elastic", headers=bearer, timeout=10,
                          content=iter([huge[:40_000], huge[40_000:]]))  # chunked: no Content-Length to trust
    assert post(receiver, "/v1/callbacks/elastic", huge, bearer).status_code == 413
    assert streamed.status_code == 413
    as_text = post(receiver, "/v1/callbacks/elastic", KIBANA_BODY, {**bearer, "content-type": "text/plain"})
    assert as_text.status_code == 415
    broken = post(receiver, "/v1/callbacks/elastic", b'{"rule": ', bearer)
    assert broken.status_code == 400 and "invalid body" in broken.json()["error"]
    wrong_source = post(receiver, "/v1/callbacks/elastic", SPLUNK_EXAMPLE, bearer)  # a Splunk body sent to Kibana's
    assert wrong_source.status_code == 400 and "rule: Field required" in wrong_source.json()["error"]
    assert receiver.queue.jobs() == []
    assert {record.details['status'] for record in receiver.audit} == {413, 415, 400}


def test_a_body_that_never_finishes_is_cut_at_the_read_timeout(receiver: RunningReceiver) -> None:
    host, port = receiver.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"POST /v1/callbacks/elastic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Authorization: Bearer " + KIBANA_TOKEN.encode() + b"\r\nContent-Length: 500\r\n\r\n{")
        started = time.monotonic()
        reply = connection.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5


def test_a_storm_from_one_source_is_cut_with_retry_after(receiver: RunningReceiver) -> None:
    body = json.dumps({"action": "rescan", "fingerprint": "ab" * 16}).encode()
    answers = [post(receiver, "/v1/actions", body, signed(SOAR_KEY, body, f"msg_{n}")) for n in range(8)]
    assert [a.status_code for a in answers] == [202] * 5 + [429] * 3  # a burst of ten seconds at 0.5/s
    assert answers[-1].headers["retry-after"] == "2"
    assert len(receiver.queue.jobs()) == 5


def test_a_source_limited_to_another_network_is_refused(receiver: RunningReceiver) -> None:
    body = json.dumps({"fingerprint": "ab" * 16, "verdict": "false_positive", "analyst": "kim"}).encode()
    answer = post(receiver, "/v1/feedback", body, signed(SOAR_KEY, body, "msg_fb"))
    assert answer.status_code == 403 and "office" in answer.json()["error"]
    assert receiver.audit[-1].details["source"] == "office"


def test_health_readiness_and_the_openapi_document(receiver: RunningReceiver) -> None:
    assert httpx.get(receiver.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(receiver.url + "/readyz").json() == {"status": "ready"}
    document = httpx.get(receiver.url + "/openapi.json").json()
    assert set(document["paths"]) >= {"/v1/callbacks/splunk", "/v1/callbacks/elastic", "/v1/actions", "/v1/feedback"}
    assert "KibanaWebhook" in document["components"]["schemas"]


def test_the_url_token_never_reaches_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    with running_receiver(tmp_path, sources=SOURCES) as receiver:
        post(receiver, f"/v1/callbacks/splunk/{URL_TOKEN}", SPLUNK_EXAMPLE)
        post(receiver, "/v1/callbacks/splunk/wrong-token", SPLUNK_EXAMPLE)
    server_lines = "\n".join(record.getMessage() for record in caplog.records
                             if record.name.startswith(("connector", "uvicorn")))
    assert "accepted" in server_lines and "rejected (401)" in server_lines
    assert URL_TOKEN not in server_lines and "wrong-token" not in server_lines
