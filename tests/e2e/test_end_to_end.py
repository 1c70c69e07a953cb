"""The user's view: one `connector scan -c config` with Splunk, Elasticsearch and syslog sinks configured puts
every event in all three; secrets never appear in what the connector prints."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from emulators.elasticsearch import ElasticsearchEmulator
from emulators.splunk import SplunkEmulator
from support.cef import parse_cef
from support.cli import connector
from support.pki import Pki, self_signed
from support.rsyslog import Rsyslog
from support.sites import site
from support.web import closed_port


def test_one_scan_delivers_every_event_to_splunk_elasticsearch_and_syslog(pki: Pki, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with SplunkEmulator() as splunk, ElasticsearchEmulator() as cluster, Rsyslog(tmp_path / "rsyslog") as syslog, \
            site("e2e.test", pki.intermediate.issue(["e2e.test"])) as good, \
            site("weak.e2e.test", self_signed("weak.e2e.test")) as weak:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "assets": [good.asset.model_dump(mode="json", exclude_none=True),
                       weak.asset.model_dump(mode="json", exclude_none=True)],
            "scan": {"ca_bundle": str(pki.bundle)},
            "state_dir": str(tmp_path / "state"),
            "sinks": [
                {"type": "splunk_hec", "url": splunk.hec_url, "token": {"env": "E2E_HEC_TOKEN"}},
                {"type": "elasticsearch", "hosts": [cluster.url], "api_key": {"file": str(tmp_path / "es.key")}},
                {"type": "syslog", "host": "127.0.0.1", "port": syslog.tcp_port, "protocol": "tcp"},
            ],
        }))
        (tmp_path / "es.key").write_text("test-api-key\n")
        done = connector("scan", "-c", str(config), "-o", str(events), "--fail-on", "high",
                         env={"E2E_HEC_TOKEN": splunk.token})
        written = [json.loads(line)["event"]["id"] for line in events.read_text().splitlines()]
        in_splunk = splunk.event_ids()
        in_elastic = cluster.ids("logs-postern.findings-default")
        in_syslog = [parse_cef(m.text)[1]["externalId"] for m in syslog.wait_for(len(written))]
    assert done.returncode == 1, done.stderr  # the self-signed host fails high: a CI gate still works
    assert "delivered to splunk_hec, elasticsearch, syslog" in done.stderr
    assert len(written) > 50
    for received in (in_splunk, in_elastic, in_syslog):
        assert sorted(received) == sorted(written)


def test_secrets_never_appear_in_logs_or_errors(tmp_path: Path) -> None:
    secret = "s3cr3t-hec-token-do-not-print"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "assets": [{"host": "127.0.0.1", "ports": [1], "http_port": None}],
        "state_dir": str(tmp_path / "state"),
        "sinks": [{"type": "splunk_hec", "url": f"http://127.0.0.1:{closed_port()}/{secret}",
                   "token": {"env": "LEAKY"}}],
    }))
    done = connector("--log-level", "debug", "scan", "-c", str(config), "-q", "--ship-timeout", "1", "-o",
                     str(tmp_path / "out.jsonl"), env={"LEAKY": secret}, timeout=60)
    doctor = connector("--log-level", "debug", "doctor", "-c", str(config), env={"LEAKY": secret}, timeout=60)
    assert done.returncode == 3  # nothing listens there: the events stay spooled
    assert "cannot reach" in doctor.stderr  # the doctor's error quotes the URL, redacted
    output = done.stdout + done.stderr + doctor.stdout + doctor.stderr
    assert "***" in output  # the URL carrying the secret was logged, redacted
    assert secret not in output
