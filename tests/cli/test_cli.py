"""``connector scan`` as a CI/CD pipeline uses it: events on stdout or in a file, a summary, a meaningful exit code."""

from __future__ import annotations

import json
from pathlib import Path

from connector.scan.checks import available_checks
from support.cli import connector
from support.pki import Pki, self_signed
from support.scanning import web_checks
from support.sites import hardened_routes, site


def scan_args(hosted, pki: Pki, *extra: str) -> list[str]:
    asset = hosted.asset
    return ["scan", f"https://{asset.host}:{asset.ports[0]}/", "--resolve", f"{asset.host}=127.0.0.1",
            "--http-port", str(asset.http_port), "--ca-bundle", str(pki.bundle), *extra]


def test_scan_writes_ecs_json_lines_and_exits_zero_for_a_hardened_host(pki: Pki) -> None:
    with site("cli.test", pki.intermediate.issue(["cli.test"]), https_routes=hardened_routes()) as good:
        done = connector(*scan_args(good, pki, "--fail-on", "low", "--checks", ",".join(web_checks())))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(events) > 25
    assert {event["result"]["evaluation"] for event in events} == {"passed"}
    assert "0 failing, 0 advisories, " in done.stderr and "Traceback" not in done.stderr


def test_fail_on_sets_the_exit_code_by_severity(pki: Pki, tmp_path: Path) -> None:
    with site("own.test", self_signed("own.test")) as bad:
        high = connector(*scan_args(bad, pki, "--fail-on", "high", "-o", str(tmp_path / "out.jsonl")))
        critical = connector(*scan_args(bad, pki, "--fail-on", "critical", "--only-failed", "-q",
                                        "--checks", "certificate,https"))
    assert high.returncode == 1
    assert "cert.self_signed" in high.stderr  # the summary table names the rule
    assert high.stdout == ""
    assert (tmp_path / "out.jsonl").read_text().count("\n") > 20
    assert critical.returncode == 0
    written = {json.loads(line)["rule"]["id"]: json.loads(line)["result"]["evaluation"]
               for line in critical.stdout.splitlines()}
    assert written == {"cert.self_signed": "failed", "hsts.missing": "unknown"}  # failing and not evaluated
    assert critical.stderr == ""


def test_cef_output(pki: Pki) -> None:
    with site("cef.test", self_signed("cef.test")) as bad:
        done = connector(*scan_args(bad, pki, "--format", "cef", "--only-failed", "--checks", "certificate", "-q"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [line for line in lines if line.startswith("CEF:0|Postern|Posture Connector|")]
    assert any("|cert.self_signed|TLS certificate is self-signed|8|" in line for line in lines)


def test_bad_arguments_are_one_line_errors() -> None:
    severe = connector("scan", "x.test", "--fail-on", "severe")
    assert severe.returncode == 2 and "--fail-on must be one of" in severe.stderr
    resolve = connector("scan", "x.test", "--resolve", "x.test")
    assert resolve.returncode == 2 and "--resolve takes HOST=ADDRESS" in resolve.stderr
    done = connector("scan", "x.test", "--checks", "nosuch")
    assert done.returncode == 2 and "unknown checks ['nosuch']" in done.stderr
    assert connector("scan").stderr.strip().endswith("nothing to scan: give targets or a config with assets")


def test_version_and_module_entry_point() -> None:
    done = connector("--version")
    assert done.returncode == 0 and done.stdout.startswith("connector ")


def test_the_shipped_example_configuration_is_valid() -> None:
    example = Path(__file__).parents[2] / "deploy" / "config.example.yaml"
    missing = connector("validate", "-c", str(example))
    assert missing.returncode == 1 and "environment variable SPLUNK_HEC_TOKEN is not set" in missing.stderr
    secrets = {"SPLUNK_HEC_TOKEN": "x" * 36, "SPLUNK_MGMT_TOKEN": "y" * 40, "ES_API_KEY": "z" * 40}
    done = connector("validate", "-c", str(example), env=secrets)
    assert done.returncode == 0, done.stderr
    assert f"valid: 4 asset(s), {len(available_checks())} check(s)" in done.stdout and "4 sink(s)" in done.stdout


def test_scan_output_and_the_file_sink_write_the_same_bytes(pki: Pki, tmp_path: Path) -> None:
    sunk, written = tmp_path / "sink.jsonl", tmp_path / "out.jsonl"
    with site("utf8.test", self_signed("utf8.test")) as bad:
        asset = {**bad.asset.model_dump(mode="json", exclude_none=True), "owner": "café team"}
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps({
            "assets": [asset], "scan": {"ca_bundle": str(pki.bundle), "connect_timeout": 1},
            "sinks": [{"type": "file", "path": str(sunk)}], "state_dir": str(tmp_path / "state"),
        }, ensure_ascii=False), encoding="utf-8")
        done = connector("scan", "-c", str(config), "-o", str(written), "--checks", "certificate", "-q")
    assert done.returncode in (0, 1), done.stderr
    lines = written.read_bytes().splitlines()
    about_the_asset = [line for line in lines if b'"kind":"metric"' not in line or b'"kind":"owner"' in line]
    assert about_the_asset and all("café team".encode() in line for line in about_the_asset)  # raw UTF-8, not \u00e9
    assert sorted(lines) == sorted(sunk.read_bytes().splitlines())


def test_advisories_are_counted_apart_and_fail_the_build_only_with_fail_on_info(pki: Pki) -> None:
    routes = hardened_routes(drop=("Cross-Origin-Resource-Policy",))  # headers.corp_missing: an info advisory
    with site("advice.test", pki.intermediate.issue(["advice.test"]), https_routes=routes) as advised:
        low = connector(*scan_args(advised, pki, "--fail-on", "low", "--checks", ",".join(web_checks())))
        info = connector(*scan_args(advised, pki, "--fail-on", "info", "--checks", "headers", "--only-failed"))
    assert low.returncode == 0, low.stderr
    assert "0 failing, 1 advisory, " in low.stderr and "Failing findings" not in low.stderr
    events = [json.loads(line) for line in low.stdout.splitlines()]
    assert [e["rule"]["id"] for e in events if e["result"]["evaluation"] == "failed"] == ["headers.corp_missing"]
    assert info.returncode == 1
    assert [json.loads(line)["rule"]["id"] for line in info.stdout.splitlines()] == ["headers.corp_missing"]
