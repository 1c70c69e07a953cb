"""TA-postern's ``postern_respond`` alert action, run as Splunk runs it, into the real receiver."""

from __future__ import annotations

import base64
import configparser
import csv
import gzip
import io
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.delivery.sinks.elasticsearch import assets as elastic
from support.pki import self_signed
from support.receiver import RunningReceiver, running_receiver
from support.waiting import wait_until

SCRIPT = Path(__file__).parents[2] / "mappings" / "splunk" / "TA-postern" / "bin" / "postern_respond.py"
SECRET = "whsec_" + base64.b64encode(b"ta-postern signing key, 32 bytes").decode()
SESSION_KEY = "splunkd-session-key-0123456789"


class StoragePasswords:
    """splunkd's storage/passwords endpoint (output_mode=json), authenticated by the alert's session key."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.url = ""

    async def passwords(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Splunk {SESSION_KEY}":
            return JSONResponse({"messages": [{"type": "WARN", "text": "call not properly authenticated"}]}, 401)
        return JSONResponse({"entry": [{"name": "TA-postern:postern_respond:", "content": {
            "realm": "TA-postern", "username": "postern_respond", "clear_password": self.secret}}]})


@pytest.fixture
def splunkd(tmp_path: Path) -> Iterator[StoragePasswords]:
    """The management port as splunkd serves it by default: https, with its own self-signed certificate."""
    store = StoragePasswords(SECRET)
    app = Starlette(routes=[Route("/servicesNS/nobody/TA-postern/storage/passwords", store.passwords)])
    certfile, keyfile = self_signed("SplunkServerDefaultCert").write(tmp_path, "splunkd")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off",
                                           ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)))
    threading.Thread(target=server.run, daemon=True).start()
    wait_until(lambda: server.started)
    store.url = f"https://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    yield store
    server.should_exit = True


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[RunningReceiver]:
    sources = [{"name": "splunk-ta", "kind": "splunk", "auth": "signature", "secret": SECRET}]
    with running_receiver(tmp_path, sources=sources) as running:
        yield running


def results_file(path: Path, rows: list[dict[str, str]]) -> Path:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[*rows[0], "__mv_rule.id"])
    writer.writeheader()
    writer.writerows([{**row, "__mv_rule.id": ""} for row in rows])
    path.write_bytes(gzip.compress(text.getvalue().encode()))
    return path


def run_action(payload: dict) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--execute"], input=json.dumps(payload), text=True,
                          capture_output=True, timeout=60, check=False)


def payload(tmp_path: Path, splunkd: StoragePasswords, receiver: RunningReceiver) -> dict:
    rows = [{"rule.id": "cert.expiring_soon", "postern.fingerprint": f"{n:032x}", "postern.severity": "medium"}
            for n in range(3)]
    return {"app": "TA-postern", "owner": "nobody", "results_file": str(results_file(tmp_path / "r.csv.gz", rows)),
            "results_link": "https://splunk.test/@go?sid=s1", "server_uri": splunkd.url, "session_key": SESSION_KEY,
            "sid": "scheduler_nobody_postern_at_1", "search_name": "Postern - certificate expiring within 14 days",
            "configuration": {"url": receiver.url + "/v1/callbacks/splunk", "timeout": "5", "retries": "1"},
            "result": {"rule.id": "cert.expiring_soon"}}


def test_every_row_is_sent_signed_and_a_rerun_is_one_callback(tmp_path: Path, splunkd: StoragePasswords,
                                                               receiver: RunningReceiver) -> None:
    alert = payload(tmp_path, splunkd, receiver)
    first, again = run_action(alert), run_action(alert)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    [job] = receiver.queue.jobs()
    assert [row["postern.fingerprint"] for row in job.params["payload"]["results"]] == [f"{n:032x}" for n in range(3)]
    assert all("__mv_rule.id" not in row for row in job.params["payload"]["results"])
    assert [record.action for record in receiver.audit] == ["callback-accepted", "callback-duplicate"]


def test_a_wrong_secret_is_refused_and_reported_in_splunkd_log(tmp_path: Path, splunkd: StoragePasswords,
                                                               receiver: RunningReceiver) -> None:
    splunkd.secret = "whsec_" + base64.b64encode(b"an outdated key of thirty-two b!").decode()
    done = run_action(payload(tmp_path, splunkd, receiver))
    assert done.returncode == 5 and "answered 401" in done.stderr
    assert receiver.queue.jobs() == []


def test_a_management_uri_without_tls_is_refused_and_the_action_says_why(
        tmp_path: Path, splunkd: StoragePasswords, receiver: RunningReceiver) -> None:
    alert = payload(tmp_path, splunkd, receiver)
    alert["server_uri"] = splunkd.url.replace("https://", "http://")
    done = run_action(alert)
    assert done.returncode == 4 and "is not https" in done.stderr, done.stderr
    assert receiver.queue.jobs() == []


def test_without_a_url_the_action_says_what_to_configure(tmp_path: Path, splunkd: StoragePasswords,
                                                         receiver: RunningReceiver) -> None:
    alert = payload(tmp_path, splunkd, receiver)
    alert["configuration"] = {}
    done = run_action(alert)
    assert done.returncode == 3 and "param.url is not set" in done.stderr


def test_the_shipped_trigger_searches_use_emitted_fields_and_suppress_per_finding() -> None:
    searches = configparser.ConfigParser(interpolation=None, strict=True)
    searches.read(SCRIPT.parents[1] / "default" / "savedsearches.conf")
    emitted = set(elastic.field_types())
    for name in searches.sections():
        stanza = searches[name]
        fields = set(re.findall(r"([a-z_]+(?:\.[a-z0-9_]+)+)\s*(?:=|<=)", stanza["search"])) | set(
            re.findall(r"'([a-z_]+(?:\.[a-z0-9_]+)+)'", stanza["search"]))
        assert fields and fields <= emitted, (name, sorted(fields - emitted))
        assert stanza["disabled"] == "1" and stanza["action.postern_respond"] == "1"
        assert stanza["alert.suppress.fields"] == "postern.fingerprint"
        # field throttling applies per result only: in digest mode one finding would mute all others
        assert stanza["alert.digest_mode"] == "0", name
