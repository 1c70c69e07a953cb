"""Fault scenarios across the whole path (scan -> normaliser -> spool -> sinks): a killed connector, a receiver
that goes away, a receiver that answers garbage. Nothing is lost; duplicates carry the same event id."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from pathlib import Path

import yaml

from emulators.elasticsearch import ElasticsearchEmulator
from emulators.splunk import SplunkEmulator
from support.cli import connector_process
from support.delivery import make_pipeline, running
from support.pki import Pki, self_signed
from support.sites import site
from support.waiting import wait_until


def file_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["event"]["id"] for line in path.read_text().splitlines() if line.strip()]


def test_sigkill_mid_batch_then_restart_delivers_every_event_exactly_once_after_dedup(pki: Pki,
                                                                                       tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"  # a second sink: every event the connector produced reaches it too
    with SplunkEmulator() as splunk, ElasticsearchEmulator() as cluster, \
            site("kill-a.test", pki.intermediate.issue(["kill-a.test"])) as one, \
            site("kill-b.test", self_signed("kill-b.test")) as two:
        splunk.delay = 0.4  # a batch stays in flight long enough to be killed
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "assets": [one.asset.model_dump(mode="json", exclude_none=True),
                       two.asset.model_dump(mode="json", exclude_none=True)],
            "scan": {"ca_bundle": str(pki.bundle), "connect_timeout": 2},
            "schedule": {"startup_spread": "0s"},
            "state_dir": str(tmp_path / "state"),
            "sinks": [{"type": "splunk_hec", "url": splunk.hec_url, "token": splunk.token, "batch_events": 7},
                      {"type": "elasticsearch", "hosts": [cluster.url], "api_key": "test-api-key",
                       "batch_events": 7},
                      {"type": "file", "path": str(truth)}],
        }))
        with connector_process("run", "-c", str(config), stderr=subprocess.DEVNULL) as first:
            wait_until(lambda: len(splunk.events) >= 7 and len(file_ids(truth)) > 0, timeout=30)
            first.send_signal(signal.SIGKILL)  # while the next HEC batch is in flight
            first.wait(10)
        assert len(set(splunk.event_ids())) < len(set(file_ids(truth)))
        splunk.delay = 0
        with connector_process("run", "-c", str(config), stderr=subprocess.DEVNULL) as second:
            wait_until(lambda: file_ids(truth) and
                       set(splunk.event_ids()) >= set(file_ids(truth)) and
                       set(cluster.ids("logs-postern.findings-default")) >= set(file_ids(truth)), timeout=60)
            second.send_signal(signal.SIGTERM)
            second.wait(20)
        produced = set(file_ids(truth))
        in_splunk = splunk.event_ids()
        in_elastic = cluster.ids("logs-postern.findings-default")
    assert len(produced) > 50
    assert set(in_splunk) == produced  # none missing, nothing invented
    assert sorted(in_elastic) == sorted(produced)  # Elasticsearch deduplicates by _id itself
    assert second.returncode == 0


def test_receiver_down_grows_the_spool_on_disk_and_it_drains_when_back(tmp_path: Path, catalog, scanned) -> None:
    with SplunkEmulator() as splunk:
        splunk.down()
        hec = {"type": "splunk_hec", "url": splunk.hec_url, "token": splunk.token}
        with running(make_pipeline(tmp_path, catalog, [hec])) as pipeline:
            for _ in range(4):  # four scans' worth while the receiver is away
                pipeline.publish(scanned)
                scanned = [f.model_copy(update={"scan_id": f.scan_id + "x"}) for f in scanned]
            time.sleep(0.5)
            status = pipeline.spool.status()
            assert status.sinks[0].pending == 4 * len(scanned) and status.file_bytes > 100_000
            splunk.up()
            assert pipeline.drain(30) == {"splunk_hec": 0}
    assert len(set(splunk.event_ids())) == 4 * len(scanned)
    assert make_pipeline(tmp_path, catalog, []).spool.status().events == 0  # delivered events are deleted


def test_garbage_answers_are_logged_clearly_and_the_events_kept(tmp_path: Path, catalog, scanned, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="connector.delivery.shipping")
    with SplunkEmulator() as splunk:
        splunk.garbage_next(6)
        hec = {"type": "splunk_hec", "url": splunk.hec_url, "token": splunk.token, "batch_events": 1000}
        with running(make_pipeline(tmp_path, catalog, [hec])) as pipeline:
            pipeline.publish(scanned)
            wait_until(lambda: len(caplog.records) >= 3)
            assert pipeline.spool.status().sinks[0].pending == len(scanned)
            assert pipeline.drain(30) == {"splunk_hec": 0}
    messages = [record.getMessage() for record in caplog.records]
    assert any("unreadable body" in message and "<html>" in message for message in messages)
    assert set(splunk.event_ids()) == {f.event_id for f in scanned}
