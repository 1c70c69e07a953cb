"""Hostile or broken targets and configurations: a clear error or an explicit error finding, never a traceback,
never a silent gap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.core.errors import ConfigError
from connector.core.model import Asset, Status
from connector.runtime.config import load_config
from support.cli import connector
from support.fake_tls import TLS12, LegacyServer
from support.pki import Pki
from support.scanning import errors, failing, result, run_scan, web_checks
from support.sites import site
from support.web import Reply, WebServer, closed_port

MODERN = 0xC02F


def error_messages(findings) -> dict[str, str]:
    return {f.subject or "": f.message for f in errors(findings) if f.rule_id == "scan.error"}


def test_unknown_host_gives_one_error_finding_per_check(catalog) -> None:
    asset = Asset(host="no-such-host.invalid", ports=(443,), http_port=None)
    findings = run_scan([asset], catalog)
    messages = error_messages(findings)
    assert set(messages) == {"certificate", "tls", "https"}
    assert all("no-such-host.invalid" in message for message in messages.values())
    assert "cannot resolve" in messages["tls"]
    assert failing(findings) == set()


def test_refused_connection(catalog) -> None:
    asset = Asset(host="refused.test", address="127.0.0.1", ports=(closed_port(),), http_port=None)
    findings = run_scan([asset], catalog, checks=["certificate", "tls"])
    messages = error_messages(findings)
    assert set(messages) == {"certificate", "tls"}
    assert "cannot connect" in messages["tls"] and "refused" in messages["tls"].lower()


def test_server_that_never_answers_times_out_with_a_reason(pki: Pki, catalog) -> None:
    with LegacyServer({TLS12}, [MODERN], behaviour="silent") as silent:
        asset = Asset(host="silent.test", address="127.0.0.1", ports=(silent.port,), http_port=None)
        findings = run_scan([asset], catalog, checks=["tls"], connect_timeout=0.5)
    (message,) = error_messages(findings).values()
    assert "no answer to a" in message and "within 0.5s" in message


@pytest.mark.parametrize("behaviour", ["garbage", "http"])
def test_server_that_does_not_speak_tls(behaviour: str, catalog) -> None:
    with LegacyServer({TLS12}, [MODERN], behaviour=behaviour) as liar:
        asset = Asset(host="liar.test", address="127.0.0.1", ports=(liar.port,), http_port=None)
        findings = run_scan([asset], catalog, checks=["certificate", "tls"])
    messages = error_messages(findings)
    assert set(messages) == {"certificate", "tls"}
    assert all("does not speak TLS" in message for message in messages.values())


def test_plain_http_server_on_the_tls_port(catalog) -> None:
    with WebServer({"/": Reply(200)}) as plain:
        asset = Asset(host="plain.test", address="127.0.0.1", ports=(plain.port,), http_port=None)
        findings = run_scan([asset], catalog, checks=["tls"])
    (message,) = error_messages(findings).values()
    assert "does not speak TLS" in message and "looks like plain HTTP" in message


def test_certificate_that_does_not_parse(pki: Pki, catalog) -> None:
    with LegacyServer({TLS12}, [MODERN], behaviour="bad_certificate") as broken:
        asset = Asset(host="broken.test", address="127.0.0.1", ports=(broken.port,), http_port=None)
        findings = run_scan([asset], catalog, checks=["certificate", "tls"])
    messages = error_messages(findings)
    assert set(messages) == {"certificate"}
    assert "does not parse" in messages["certificate"]
    assert result(findings, "tls.protocol.sslv3").status is Status.PASS  # the other check still reports


def test_one_bad_target_does_not_hide_the_others(pki: Pki, catalog) -> None:
    with site("fine.test", pki.intermediate.issue(["fine.test"])) as fine:
        broken = Asset(host="gone.test", address="127.0.0.1", ports=(closed_port(),), http_port=None)
        findings = run_scan([broken, fine.asset], catalog, ca_bundle=pki.bundle)
    by_asset = {f.asset.host for f in findings if f.status is Status.PASS}
    assert by_asset == {"fine.test"}
    assert {f.asset.host for f in errors(findings)} == {"gone.test"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("assets: [", "invalid YAML at line 1"),
        ("assets: []", "assets: List should have at least 1 item"),
        ("assets:\n  - host: 'bad host name'\n", "not a valid host name"),
        ("assets:\n  - host: a.test\n    ports: [70000]\n", "port must be 1-65535"),
        ("assets:\n  - host: a.test\nchecks:\n  certificate: {expiry_warning_days: 10, expiry_critical_days: 20}\n",
         "expiry_critical_days must not exceed expiry_warning_days"),
        ("assets:\n  - host: a.test\nchecks:\n  nosuch: {}\n", "unknown checks ['nosuch']"),
        ("assets:\n  - host: a.test\nschedule:\n  intervals: {critical: 2x}\n", "not a duration"),
        ("assets:\n  - host: a.test\n  - host: a.test\n", "duplicate asset id 'a.test'"),
        ("assets:\n  - host: a.test\n    colour: blue\n", "assets.0.colour: Extra inputs are not permitted"),
    ],
)
def test_invalid_config_gives_a_clear_message(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_cli_reports_config_errors_in_one_line_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("assets:\n  - host: a.test\n    ports: [0]\n")
    done = connector("validate", "-c", str(path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "port must be 1-65535" in done.stderr
    done = connector("run", "-c", str(path))
    assert done.returncode == 2
    assert done.stderr.count("\n") <= 2 and "Traceback" not in done.stderr


def test_cli_scan_of_unreachable_target_exits_cleanly() -> None:
    done = connector("scan", "no-such-host.invalid", "--fail-on-error", "--checks", ",".join(web_checks()))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "cannot resolve host name" in done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(events) == len(web_checks())  # one error event per check, as JSON lines
    assert {event["result"]["evaluation"] for event in events} == {"unknown"}
