"""Splunk HEC delivery through the spool, against the strict HEC emulator: batching, routing, per-event
rejection, retries, indexer acknowledgement, TLS, and the management-port setup and verification."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import pytest
import yaml

from connector.core.resources import mappings_dir
from connector.delivery.sinks.elasticsearch import assets as elastic
from emulators.splunk import SplunkEmulator
from support.cli import connector
from support.delivery import make_pipeline, running, ship
from support.pki import Pki
from support.sites import site
from support.waiting import wait_until
from support.web import tls_context


def hec(emulator: SplunkEmulator, **extra: object) -> dict[str, object]:
    return {"type": "splunk_hec", "url": emulator.hec_url, "token": emulator.token, **extra}


def test_every_event_arrives_once_in_batched_gzipped_envelopes(tmp_path: Path, catalog, scanned) -> None:
    with SplunkEmulator() as splunk:
        left = ship(make_pipeline(tmp_path, catalog, [hec(splunk, batch_events=10)]), scanned)
        assert left == {"splunk_hec": 0}
        assert sorted(splunk.event_ids()) == sorted(f.event_id for f in scanned)
        first = splunk.events[0]
        assert first["sourcetype"] == "postern:finding" and first["source"] == "postern"
        assert first["host"] in ("ship.test", "weak.ship.test") and first["index"] == "main"
        assert set(first["fields"]) == {"rule", "severity", "status", "asset"}
        assert abs(first["time"] - scanned[0].observed_at.timestamp()) < 1
        posts = [r for r in splunk.requests if r.path.startswith("/services/collector/event") and r.body]
        assert len(posts) == -(-len(scanned) // 10)  # several events per request
        assert all(r.headers["content-encoding"] == "gzip" for r in posts)
        assert all(r.headers["authorization"] == f"Splunk {splunk.token}" for r in posts)


def test_routes_send_categories_to_their_own_index_and_sourcetype(tmp_path: Path, catalog, scanned) -> None:
    routes = [{"category": ["tls"], "index": "sec_tls", "sourcetype": "postern:tls"},
              {"severity": ["high", "critical"], "index": "sec_urgent"}]
    with SplunkEmulator(indexes=("main", "sec_tls", "sec_urgent")) as splunk:
        ship(make_pipeline(tmp_path, catalog, [hec(splunk, routes=routes)]), scanned)
        by_rule = {e["event"]["rule"]["id"]: (e["index"], e["sourcetype"]) for e in splunk.events
                   if e["host"] == "weak.ship.test"}
    assert by_rule["tls.cipher.rc4"] == ("sec_tls", "postern:tls")
    assert by_rule["cert.self_signed"] == ("sec_urgent", "postern:finding")
    assert by_rule["cert.expired"] == ("main", "postern:finding")


def test_an_event_hec_rejects_becomes_a_dead_letter_and_the_rest_is_delivered(tmp_path: Path, catalog,
                                                                              scanned) -> None:
    """A route to an index the token may not write to: HEC says which event (code 7), the rest continues."""
    routes = [{"rule_prefix": "cert.self_signed", "index": "forbidden"}]
    config = tmp_path / "config.yaml"
    with SplunkEmulator() as splunk:
        pipeline = make_pipeline(tmp_path, catalog, [hec(splunk, routes=routes)])
        left = ship(pipeline, scanned)
        assert left == {"splunk_hec": 0}
        delivered = splunk.event_ids()
        routed = [f for f in scanned if f.rule_id == "cert.self_signed"]
        assert len(routed) == 2
        assert sorted(delivered) == sorted(f.event_id for f in scanned if f not in routed)
        config.write_text(yaml.safe_dump({"assets": [{"host": "unused.test"}], "state_dir": str(tmp_path / "state"),
                                          "sinks": [hec(splunk, routes=routes)]}))
        status = connector("spool", "status", "-c", str(config), "--dead-letters").stdout
        assert "HEC code 7: Incorrect index" in status
        # fix the cause (let the token write there), replay: the dead letter is delivered, nothing else again
        splunk.indexes["forbidden"] = dict(splunk.indexes["main"])
        splunk.hec_inputs["default"]["indexes"].append("forbidden")
        replay = connector("spool", "replay", "-c", str(config))
        assert replay.stdout.startswith("2 dead letter(s) queued again")
        assert ship(make_pipeline(tmp_path, catalog, [hec(splunk, routes=routes)]), []) == {"splunk_hec": 0}
        assert sorted(splunk.event_ids()) == sorted(f.event_id for f in scanned)


@pytest.mark.parametrize("fault", ["busy", "drop", "garbage", "internal"])
def test_transient_failures_are_retried_until_every_event_is_in(fault: str, tmp_path: Path, catalog,
                                                                scanned) -> None:
    with SplunkEmulator() as splunk:
        if fault == "busy":
            splunk.fail_next(3, 503, 9, "Server is busy")
        elif fault == "drop":
            splunk.drop_next(2)
        elif fault == "garbage":
            splunk.garbage_next(2)
        else:
            splunk.fail_next(1, 500, 8, "Internal server error")
        left = ship(make_pipeline(tmp_path, catalog, [hec(splunk, batch_events=50)]), scanned)
        assert left == {"splunk_hec": 0}
        assert splunk.pending_faults() == 0  # every injected fault was met and survived
        assert set(splunk.event_ids()) == {f.event_id for f in scanned}  # none missing; duplicates only after garbage


def test_a_bad_token_keeps_every_event_and_dead_letters_none(tmp_path: Path, catalog, scanned) -> None:
    with SplunkEmulator() as splunk:
        pipeline = make_pipeline(tmp_path, catalog, [hec(splunk, token="00000000-0000-0000-0000-000000000000")])
        left = ship(pipeline, scanned, timeout=1.0)
        assert left == {"splunk_hec": len(scanned)}
        assert splunk.events == []
        status = make_pipeline(tmp_path, catalog, [hec(splunk)]).spool.status().sinks[0]
        assert status.pending == len(scanned) and status.dead_letters == 0


def test_indexer_acknowledgement_counts_only_acknowledged_batches(tmp_path: Path, catalog, scanned) -> None:
    with SplunkEmulator(ack=True) as splunk:
        splunk.ack_after = 0.3
        sink = hec(splunk, ack=True, ack_poll_interval="50ms", batch_events=20)
        assert ship(make_pipeline(tmp_path, catalog, [sink]), scanned) == {"splunk_hec": 0}
        channels = {r.headers.get("x-splunk-request-channel") for r in splunk.requests if "event" in r.path}
        assert len(channels) == 1 and None not in channels
        assert splunk.acked(channels.pop()) == set(range(-(-len(scanned) // 20)))


def test_lost_acknowledgements_resend_the_batch(tmp_path: Path, catalog, scanned) -> None:
    with SplunkEmulator(ack=True) as splunk:
        splunk.lose_acks()
        sink = hec(splunk, ack=True, ack_poll_interval="20ms", ack_timeout="200ms")
        with running(make_pipeline(tmp_path, catalog, [sink])) as pipeline:
            pipeline.publish(scanned)
            wait_until(lambda: len(splunk.events) >= 2 * len(scanned))  # sent, unacknowledged, sent again
    status = make_pipeline(tmp_path, catalog, [hec(splunk, ack=True)]).spool.status().sinks[0]
    assert status.pending == len(scanned)  # never acknowledged: still spooled, not lost


def test_tls_is_verified_with_the_configured_ca_bundle(tmp_path: Path, pki: Pki, catalog, scanned) -> None:
    issued = pki.intermediate.issue(["127.0.0.1", "localhost"])
    server = tls_context(issued)
    with SplunkEmulator(tls=server) as splunk:
        trusted = ship(make_pipeline(tmp_path / "a", catalog, [hec(splunk, ca_bundle=str(pki.bundle))]), scanned[:3])
        untrusted = ship(make_pipeline(tmp_path / "b", catalog, [hec(splunk)]), scanned[:3], timeout=1.0)
    assert trusted == {"splunk_hec": 0} and untrusted == {"splunk_hec": 3}
    assert len(splunk.events) == 3


def test_doctor_reports_hec_health(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    with SplunkEmulator() as splunk:
        config.write_text(yaml.safe_dump({"assets": [{"host": "a.test"}], "state_dir": str(tmp_path / "state"),
                                          "sinks": [hec(splunk)]}))
        healthy = connector("doctor", "-c", str(config))
        splunk.healthy = False
        sick = connector("doctor", "-c", str(config))
    assert healthy.returncode == 0 and "is healthy" in healthy.stdout
    assert sick.returncode == 1 and "503" in sick.stderr


def test_splunk_setup_creates_index_and_input_and_verify_finds_the_scan(tmp_path: Path, pki: Pki) -> None:
    config = tmp_path / "config.yaml"
    with SplunkEmulator(indexes=("main",)) as splunk, \
            site("verify.test", pki.intermediate.issue(["verify.test"])) as good:
        sink = hec(splunk, index="postern", token="not-issued-yet",
                   management={"url": splunk.mgmt_url, "username": "admin", "password": "changeme-please",
                               "verify_tls": False})
        document = {"assets": [good.asset.model_dump(mode="json", exclude_none=True)],
                    "scan": {"ca_bundle": str(pki.bundle)}, "state_dir": str(tmp_path / "state"), "sinks": [sink]}
        config.write_text(yaml.safe_dump(document))
        setup = connector("splunk", "setup", "-c", str(config))
        assert setup.returncode == 0, setup.stderr
        assert "index postern: created" in setup.stdout and "HEC input postern: created" in setup.stdout
        token = setup.stdout.split("new HEC token: ", 1)[1].split()[0]
        sink["token"] = token
        config.write_text(yaml.safe_dump({**document, "sinks": [sink]}))
        again = connector("splunk", "setup", "-c", str(config))
        assert "index postern: exists" in again.stdout and "matches the sink" in again.stdout
        scan = connector("scan", "-c", str(config), "-q", "-o", "/dev/null")
        assert scan.returncode == 0, scan.stderr
        verify = connector("splunk", "verify", "-c", str(config))
    assert verify.returncode == 0, verify.stderr
    assert "complete" in verify.stdout and "found 0" not in verify.stdout
    assert {event["index"] for event in splunk.events} == {"postern"}


def test_hec_body_is_exactly_what_splunk_parses(tmp_path: Path, catalog, scanned) -> None:
    """Concatenated JSON objects, no array, no separators Splunk would reject."""
    with SplunkEmulator() as splunk:
        ship(make_pipeline(tmp_path, catalog, [hec(splunk, gzip=False, batch_events=5)]), scanned[:5])
        body = splunk.requests[-1].body
    decoder, position, objects = json.JSONDecoder(), 0, []
    while position < len(body):
        value, position = decoder.raw_decode(body.decode(), position)
        objects.append(value)
    assert len(objects) == 5 and all(set(o) >= {"time", "host", "source", "sourcetype", "event"} for o in objects)


def test_the_splunk_add_on_only_refers_to_fields_the_connector_emits() -> None:
    """props.conf and eventtypes.conf name ECS fields; renaming one in ecs.yaml must not silently break CIM."""
    add_on = mappings_dir() / "splunk" / "TA-postern" / "default"
    props = configparser.ConfigParser(interpolation=None, strict=True)
    props.read(add_on / "props.conf")
    emitted = set(elastic.field_types())
    referenced = {name.removesuffix("{}") for value in props["postern:finding"].values()
                  for name in re.findall(r"'([a-z_@][a-z0-9_.{}]*)'", value)}
    eventtypes = (add_on / "eventtypes.conf").read_text()
    referenced |= set(re.findall(r'"([a-z_]+\.[a-z0-9_.]+)"=', eventtypes))
    assert referenced and referenced <= emitted, sorted(referenced - emitted)
    tags = configparser.ConfigParser(interpolation=None)
    tags.read(add_on / "tags.conf")
    assert {section.split("=", 1)[1] for section in tags.sections()} <= set(
        re.findall(r"^\[(\w+)\]", eventtypes, re.M))
