"""CEF over syslog into a real rsyslogd (started by the tests on loopback): UDP, TCP with octet-counting and LF
framing, TLS; RFC 5424 and RFC 3164 headers; every received CEF line parsed back field by field."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.core.model import Asset, Criticality, Finding, Severity, Status
from connector.normalise import Normaliser
from support import rsyslog
from support.cef import parse_cef
from support.delivery import make_pipeline, running, ship
from support.pki import Pki
from support.rsyslog import Rsyslog
from support.waiting import wait_until

pytestmark = pytest.mark.needs_rsyslog


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory, pki: Pki):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("rsyslog")
    cert, key = pki.intermediate.issue(["127.0.0.1", "syslog.test"]).write(folder, "server")
    with Rsyslog(folder / "run", tls_cert=cert, tls_key=key, tls_ca=pki.bundle) as daemon:
        yield daemon


def sink(daemon: Rsyslog, protocol: str, **extra: object) -> dict[str, object]:
    port = {"udp": daemon.udp_port, "tcp": daemon.tcp_port, "tls": daemon.tls_port}[protocol]
    return {"type": "syslog", "host": "127.0.0.1", "port": port, "protocol": protocol, **extra}


def received_since(daemon: Rsyslog, before: int, count: int) -> list[rsyslog.Received]:
    return daemon.wait_for(before + count)[before:]


@pytest.mark.parametrize(
    ("protocol", "extra"),
    [
        ("udp", {"format": "rfc5424"}),
        ("udp", {"format": "rfc3164"}),
        ("tcp", {"framing": "octet-counting", "format": "rfc5424"}),
        ("tcp", {"framing": "lf", "format": "rfc5424"}),
        ("tcp", {"framing": "octet-counting", "format": "rfc3164"}),
        ("tls", {"framing": "octet-counting", "format": "rfc5424"}),
        ("tls", {"framing": "lf", "format": "rfc3164"}),
    ],
)
def test_every_event_arrives_and_parses_back_field_by_field(protocol: str, extra: dict[str, object],
                                                           receiver: Rsyslog, pki: Pki, tmp_path: Path, catalog,
                                                           scanned: list[Finding]) -> None:
    before = len(receiver.messages())
    settings = sink(receiver, protocol, ca_bundle=str(pki.bundle), hostname="collector-7", **extra)
    assert ship(make_pipeline(tmp_path, catalog, [settings]), scanned) == {"syslog": 0}
    got = received_since(receiver, before, len(scanned))
    assert {message.transport for message in got} == {protocol}
    normaliser = Normaliser.load(catalog)
    expected = {finding.event_id: (finding, normaliser.cef(finding)) for finding in scanned}
    seen = set()
    for message in got:
        header, fields = parse_cef(message.text)
        finding, line = expected[fields["externalId"]]
        assert message.text == line  # byte for byte what the normaliser produced
        assert header[4] == finding.rule_id and fields["dhost"] == finding.asset.host
        assert fields["msg"] == finding.message
        assert message.hostname == "collector-7" and message.app_name == "postern"
        assert message.facility == 20
        assert message.severity == {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}[
            finding.severity.value]
        assert message.protocol_version == ("1" if extra["format"] == "rfc5424" else "0")
        if extra["format"] == "rfc5424":
            assert message.msgid == "finding" and message.procid.isdigit()
        seen.add(fields["externalId"])
    assert seen == set(expected)


def test_hostile_values_survive_lf_framing_without_splitting_the_event(receiver: Rsyslog, tmp_path: Path,
                                                                       catalog) -> None:
    now = datetime.now(UTC)
    hostile = Finding(
        rule_id="cert.expired", check="certificate", status=Status.FAIL, severity=Severity.CRITICAL,
        message="line one\nline two\r| pipe \\ backslash = equals \t tab, café, 証明書",
        asset=Asset(host="evil.test", owner="a=b|c\\d\ne", criticality=Criticality.HIGH), port=443,
        scheme="https", scan_id="hostile", observed_at=now, first_seen=now, last_seen=now,
        evidence={"quote": '"\'', "newline": "x\ny"},
    )
    before = len(receiver.messages())
    assert ship(make_pipeline(tmp_path, catalog, [sink(receiver, "tcp", framing="lf")]), [hostile]) == {"syslog": 0}
    (message,) = received_since(receiver, before, 1)
    _, fields = parse_cef(message.text)
    assert fields["msg"] == hostile.message
    assert fields["cs2"] == hostile.asset.owner
    assert '"newline":"x\\ny"' in fields["cs5"]


def test_a_receiver_restart_is_survived_by_reconnecting(receiver: Rsyslog, tmp_path: Path, catalog,
                                                        scanned: list[Finding]) -> None:
    before = len(receiver.messages())
    with running(make_pipeline(tmp_path, catalog, [sink(receiver, "tcp")])) as pipeline:
        pipeline.publish(scanned[:10])
        wait_until(lambda: len(receiver.messages()) >= before + 10)
        receiver.stop_listening()
        pipeline.publish(scanned[10:20])  # the receiver is away: these wait in the spool
        wait_until(lambda: pipeline.spool.status().sinks[0].pending == 10)
        receiver.restart()
        pipeline.publish(scanned[20:30])
        assert pipeline.drain(30) == {"syslog": 0}
    ids = [parse_cef(m.text)[1]["externalId"] for m in receiver.wait_for(before + 30)[before:]]
    assert set(ids) == {finding.event_id for finding in scanned[:30]}  # none lost across the restart


def test_tls_receiver_with_an_untrusted_certificate_gets_nothing_and_events_are_kept(receiver: Rsyslog,
                                                                                      tmp_path: Path, catalog,
                                                                                      scanned: list[Finding]) -> None:
    before = len(receiver.messages())
    pipeline = make_pipeline(tmp_path, catalog, [sink(receiver, "tls")])  # system roots: the test CA is unknown
    assert ship(pipeline, scanned[:5], timeout=1.0) == {"syslog": 5}
    assert len(receiver.messages()) == before


def test_a_message_too_large_for_udp_becomes_a_dead_letter(receiver: Rsyslog, tmp_path: Path, catalog,
                                                           scanned: list[Finding]) -> None:
    pipeline = make_pipeline(tmp_path, catalog, [sink(receiver, "udp", max_udp_bytes=480)])
    assert ship(pipeline, scanned[:3]) == {"syslog": 0}
    letters = make_pipeline(tmp_path, catalog, [sink(receiver, "udp")]).spool.dead_letters()
    assert len(letters) == 3 and all("max_udp_bytes" in reason for *_, reason, _ in letters)


def test_tls13_receiver_gets_every_event_even_when_the_sender_closes_right_away(tmp_path: Path, pki: Pki, catalog,
                                                                                 scanned: list[Finding]) -> None:
    """TLS 1.3 servers send session tickets the sender never reads; closing without reading them would reset the
    connection and make the receiver drop what it had not read yet. A busy machine (two spinning processes) makes
    the receiver slow enough for that window to show; without the graceful close about half the attempts lose."""
    cert, key = pki.intermediate.issue(["127.0.0.1"]).write(tmp_path, "server")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        with Rsyslog(tmp_path / "run", tls_cert=cert, tls_key=key, tls_ca=pki.bundle, tls_driver="ossl",
                     tls13=True) as daemon:
            _send_repeatedly(daemon, tmp_path, pki, catalog, scanned)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def _send_repeatedly(daemon: Rsyslog, tmp_path: Path, pki: Pki, catalog, scanned: list[Finding]) -> None:
    for attempt in range(15):
        before = len(daemon.messages())
        pipeline = make_pipeline(tmp_path / str(attempt), catalog, [sink(daemon, "tls", ca_bundle=str(pki.bundle))])
        assert ship(pipeline, scanned) == {"syslog": 0}
        assert len(received_since(daemon, before, len(scanned))) == len(scanned)
