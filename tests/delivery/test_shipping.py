"""Shipper robustness and what the CLI tells the user about delivery: sink bugs, events a sink cannot encode,
rejected and undelivered events in exit codes, and the spool admin commands on real spool files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from connector.core.events import NewEvent, SpooledEvent
from connector.delivery.shipping import Shipper
from connector.delivery.sinks.base import SendOutcome, Sink, SinkSettings
from connector.delivery.spool import Spool
from emulators.elasticsearch import ElasticsearchEmulator
from support.cli import connector
from support.delivery import make_pipeline
from support.scanning import web_checks, without_dns_checks
from support.waiting import wait_until


class CrashingSink(Sink):
    """A sink with a bug: it raises on any event whose document contains ``poison``.

    A stand-in on purpose: no real receiver can make one of our sinks crash, and what is under test is the real
    Shipper and Spool around it, isolating the poison event.
    """

    type_name = "crashing"

    def __init__(self) -> None:
        super().__init__(SinkSettings(type="crashing", batch_events=50))
        self.received: list[str] = []

    def send(self, events: Sequence[SpooledEvent]) -> SendOutcome:
        if any(b"poison" in (event.ecs or b"") for event in events):
            raise KeyError("boom")
        self.received.extend(event.event_id for event in events)
        return SendOutcome()


def test_a_sink_bug_on_one_event_dead_letters_that_event_and_delivers_the_rest(tmp_path: Path, caplog) -> None:
    spool = Spool(tmp_path / "spool.sqlite", ["crashing"])
    spool.append([NewEvent(f"id-{n}", "{}", b'{"poison":1}' if n == 7 else b"{}", None) for n in range(20)])
    sink = CrashingSink()
    shipper = Shipper(spool, sink, initial_backoff=0.01, max_backoff=0.05)
    shipper.start()
    try:
        wait_until(lambda: spool.status().sinks[0].pending == 0)
    finally:
        shipper.stop(5)
    assert sink.received == [f"id-{n}" for n in range(20) if n != 7]
    (letter,) = spool.dead_letters()
    assert letter[2] == "id-7" and "KeyError('boom')" in letter[3]
    assert "sink crashing failed unexpectedly" in caplog.text


def test_events_spooled_before_a_cef_sink_existed_become_dead_letters_not_empty_lines(tmp_path: Path, catalog,
                                                                                     scanned) -> None:
    ecs_file, cef_file = tmp_path / "events.jsonl", tmp_path / "events.cef"
    first = make_pipeline(tmp_path, catalog, [{"type": "file", "path": str(ecs_file)}])
    first.publish(scanned[:5])  # spooled with the ECS encoding only; not shipped yet
    first.stop()
    second = make_pipeline(tmp_path, catalog, [{"type": "file", "path": str(ecs_file)},
                                               {"type": "file", "name": "cef", "path": str(cef_file),
                                                "format": "cef"}])
    second.start()
    second.publish(scanned[5:8])
    try:
        assert second.drain(20) == {"file": 0, "cef": 0}
    finally:
        second.stop()
    assert len(ecs_file.read_text().splitlines()) == 8
    cef_lines = cef_file.read_text().splitlines()
    assert len(cef_lines) == 3 and all(line.startswith("CEF:0|") for line in cef_lines)
    letters = Spool.existing(tmp_path / "state" / "spool.sqlite").dead_letters()
    assert [event_id for _, _, event_id, _, _ in letters] == [f.event_id for f in scanned[:5]]
    assert all("spooled without its CEF encoding" in reason for *_, reason, _ in letters)


def write_config(path: Path, sinks: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"assets": [{"host": "no-such-host.invalid", "http_port": None}],
                                    "checks": without_dns_checks(), "state_dir": str(path.parent / "state"),
                                    "sinks": sinks}))
    return path


# What one scan of write_config's single asset publishes: an error event per check, the asset's creation, and a
# KPI metric event per scope it is in (overall, its owner "(none)" and its criticality)
KPI_SCOPES = {("overall", "all"), ("owner", "(none)"), ("criticality", "medium")}


def published_per_scan() -> int:
    return len(web_checks()) + 1 + len(KPI_SCOPES)


def test_scan_exits_3_and_says_so_when_the_receiver_rejects_events(tmp_path: Path) -> None:
    with ElasticsearchEmulator() as cluster:
        cluster.reject_items(2, status=400, error_type="document_parsing_exception", reason="failed to parse")
        config = write_config(tmp_path / "config.yaml", [{"type": "elasticsearch", "hosts": [cluster.url],
                                                          "api_key": "test-api-key"}])
        done = connector("scan", "-c", str(config), "-q", "-o", "/dev/null")
        stored = len(cluster.ids("logs-postern.findings-default"))
    assert done.returncode == 3, done.stderr
    assert "rejected by the receiver (elasticsearch: 2)" in done.stderr and "Traceback" not in done.stderr
    assert stored == published_per_scan() - 2
    status = connector("spool", "status", "-c", str(config), "--dead-letters")
    assert status.returncode == 0 and "document_parsing_exception" in status.stdout


def test_run_once_exits_3_when_events_could_not_be_delivered_in_time(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", [{"type": "elasticsearch", "hosts": ["http://127.0.0.1:9"],
                                                      "api_key": "k"}])
    done = connector("run", "-c", str(config), "--once", "--ship-timeout", "1")
    assert done.returncode == 3, done.stderr
    assert "not yet delivered after 1s" in done.stderr and "Traceback" not in done.stderr
    status = connector("spool", "status", "-c", str(config))
    assert status.returncode == 0
    pending = [line for line in status.stdout.splitlines() if line.strip().startswith("│ elasticsearch")]
    assert pending and pending[0].split("│")[2].strip() == str(published_per_scan())


def test_spool_admin_commands_explain_instead_of_creating_or_guessing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", [{"type": "file", "path": str(tmp_path / "out.jsonl")}])
    done = connector("spool", "status", "-c", str(config))
    assert done.returncode == 2 and "no spool at" in done.stderr
    assert not (tmp_path / "state" / "spool.sqlite").exists()
    assert connector("scan", "-c", str(config), "-q", "-o", "/dev/null").returncode == 0
    unknown = connector("spool", "replay", "-c", str(config), "--sink", "splunk")
    assert unknown.returncode == 2 and "no such sink (known: file)" in unknown.stderr
    backlog = connector("spool", "purge", "-c", str(config), "--backlog", "--yes")
    assert backlog.returncode == 2 and "--backlog needs --sink" in backlog.stderr


def test_a_stdout_sink_is_not_doubled_by_the_scan_output(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", [{"type": "stdout"}])
    done = connector("scan", "-c", str(config), "-q")
    published = [json.loads(line) for line in done.stdout.splitlines()]
    ids = [event["event"]["id"] for event in published]
    assert done.returncode == 0 and len(ids) == len(set(ids)) == published_per_scan()
    assert {(e["postern"]["kpi"]["scope"]["kind"], e["postern"]["kpi"]["scope"]["value"]) for e in published
            if e["event"]["kind"] == "metric"} == KPI_SCOPES
