"""HEC delivery against two receivers: our strict Splunk emulator and a real Fluent Bit (in_splunk).

The same behaviours must hold against both: every event exactly once with its metadata, a wrong token
reported, a 413 of any body shape split down to one event, a receiver restart survived. Where only one can
show something (Fluent Bit has no indexer acknowledgement; only the emulator injects 429), the test says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from connector.core.catalog import Catalog
from connector.core.errors import ConnectorError
from connector.core.model import Finding
from connector.delivery.sinks import build_sink, parse_sink
from emulators.splunk import SplunkEmulator
from support.delivery import make_pipeline, running, ship
from support.fluentbit import TOKEN, FluentBit
from support.waiting import wait_until


class Receiver:
    """One HEC receiver, seen the same way whichever it is."""

    def __init__(self, kind: str, url: str, token: str, delivered: Any, stop: Any, start: Any) -> None:
        self.kind, self.url, self.token = kind, url, token
        self._delivered, self.stop, self.start = delivered, stop, start

    def delivered(self) -> list[dict[str, Any]]:
        """Each received event as {time, host, source, sourcetype, index, fields, event}."""
        return self._delivered()


@contextmanager
def receiver(kind: str, **options: Any) -> Iterator[Receiver]:
    if kind == "splunk":
        with SplunkEmulator(max_content_length=options.get("limit", 800 * 1024 * 1024)) as splunk:
            yield Receiver(kind, splunk.hec_url, splunk.token, lambda: list(splunk.events), splunk.down, splunk.up)
    else:
        limit = options.get("limit")
        with FluentBit(buffer_max_size=f"{limit // 1024}k" if limit else None) as fluent:
            yield Receiver(kind, fluent.url, TOKEN, fluent.received, fluent.stop, fluent.start)


RECEIVERS = ["splunk", "fluent-bit"]


def hec(target: Receiver, **extra: object) -> dict[str, object]:
    return {"type": "splunk_hec", "url": target.url, "token": target.token, "index": "main", **extra}


def ids(events: list[dict[str, Any]]) -> list[str]:
    return sorted(event["event"]["event"]["id"] for event in events)


@pytest.mark.parametrize("kind", RECEIVERS)
def test_every_event_arrives_once_with_its_metadata(kind: str, tmp_path: Path, catalog: Catalog,
                                                    scanned: list[Finding]) -> None:
    with receiver(kind) as target:
        assert ship(make_pipeline(tmp_path, catalog, [hec(target, batch_events=10)]), scanned) == {"splunk_hec": 0}
        wait_until(lambda: len(target.delivered()) >= len(scanned), timeout=15)
        time.sleep(1.5)  # one more flush: a duplicate would show now
        events = target.delivered()
    assert ids(events) == sorted(f.event_id for f in scanned)  # before the fix: 0 of them reached Fluent Bit
    first = next(e for e in events if e["event"]["event"]["id"] == scanned[0].event_id)
    assert (first["sourcetype"], first["source"], first["index"]) == ("postern:finding", "postern", "main")
    assert first["host"] == scanned[0].asset.host and set(first["fields"]) == {"rule", "severity", "status", "asset"}
    assert abs(float(first["time"]) - scanned[0].observed_at.timestamp()) < 1


@pytest.mark.parametrize("kind", RECEIVERS)
def test_a_wrong_token_is_reported_and_nothing_is_lost(kind: str, tmp_path: Path, catalog: Catalog,
                                                       scanned: list[Finding]) -> None:
    with receiver(kind) as target:
        wrong = {**hec(target), "token": "00000000-0000-0000-0000-000000000000"}
        sink = build_sink(parse_sink(wrong, "sinks.0"))
        with pytest.raises(ConnectorError, match="refused the token"):
            sink.health()
        sink.close()
        left = ship(make_pipeline(tmp_path, catalog, [wrong]), scanned[:5], timeout=2)
        assert left == {"splunk_hec": 5} and target.delivered() == []  # kept in the spool, not dropped


@pytest.mark.parametrize("kind", RECEIVERS)
def test_a_413_is_split_down_to_one_event_whatever_its_body(kind: str, tmp_path: Path, catalog: Catalog,
                                                            scanned: list[Finding]) -> None:
    with receiver(kind, limit=16 * 1024) as target:  # Splunk: an HTML 413; Fluent Bit: an empty one
        left = ship(make_pipeline(tmp_path, catalog, [hec(target, gzip=False, batch_events=50)]), scanned,
                    timeout=30)
        assert left == {"splunk_hec": 0}
        wait_until(lambda: len(target.delivered()) >= len(scanned), timeout=15)
        assert ids(target.delivered()) == sorted(f.event_id for f in scanned)


@pytest.mark.parametrize("kind", RECEIVERS)
def test_a_receiver_restart_mid_run_loses_and_repeats_nothing(kind: str, tmp_path: Path, catalog: Catalog,
                                                              scanned: list[Finding]) -> None:
    half = len(scanned) // 2
    with receiver(kind) as target:
        pipeline = make_pipeline(tmp_path, catalog, [hec(target, batch_events=10)])
        with running(pipeline):
            pipeline.publish(scanned[:half])
            assert pipeline.drain(20) == {"splunk_hec": 0}
            wait_until(lambda: len(target.delivered()) >= half, timeout=15)
            before = target.delivered()
            target.stop()
            pipeline.publish(scanned[half:])
            time.sleep(1)
            target.start()
            assert pipeline.drain(30) == {"splunk_hec": 0}
        wait_until(lambda: len(target.delivered()) >= len(scanned), timeout=15)
        time.sleep(1.5)
        after = target.delivered()  # both keep what they had before the restart
    assert len(before) == half and ids(after) == sorted(f.event_id for f in scanned)


def test_ack_against_a_receiver_without_acknowledgement_is_a_config_error_not_a_resend_loop(
        tmp_path: Path, catalog: Catalog, scanned: list[Finding]) -> None:
    """Fluent Bit only: it has no indexer acknowledgement (the emulator's useACK tests are in test_sink_splunk)."""
    with receiver("fluent-bit") as target:
        pipeline = make_pipeline(tmp_path, catalog, [hec(target, ack=True)])
        with running(pipeline):
            pipeline.publish(scanned[:10])
            wait_until(lambda: pipeline.shipping.shippers[0].failed is not None, timeout=15)
            time.sleep(1.5)
            received = target.delivered()
        assert "ack is true" in (pipeline.shipping.shippers[0].failed or "") and "set ack: false" in \
            (pipeline.shipping.shippers[0].failed or "")
    assert received == []  # before the fix: 60 copies of 10 events in 8 s


def test_429_retry_after_is_honoured(tmp_path: Path, catalog: Catalog, scanned: list[Finding]) -> None:
    """Emulator only: a load balancer's 429 with Retry-After in front of HEC."""
    with SplunkEmulator() as splunk:
        splunk.fail_next(2, 429, 9, "Too many requests", retry_after=2)  # the first meets the start-up token check
        pipeline = make_pipeline(tmp_path, catalog, [{"type": "splunk_hec", "url": splunk.hec_url,
                                                      "token": splunk.token}])
        started = time.monotonic()
        assert ship(pipeline, scanned[:5]) == {"splunk_hec": 0}
        waited = time.monotonic() - started
        assert sorted(splunk.event_ids()) == sorted(f.event_id for f in scanned[:5])
    assert waited >= 2  # the test pipeline's own backoff is 20 ms
