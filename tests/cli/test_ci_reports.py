"""`connector scan --format sarif|junit` for CI/CD: valid by the official schema, stable finding identities across
runs, and the same --fail-on verdict as every other format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from junitparser import Error, Failure, JUnitXml

from support.cli import connector
from support.pki import Pki, self_signed
from support.sites import hardened_routes, site

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "sarif-schema-2.1.0.json").read_text())
DEPLOY = Path(__file__).parents[2] / "deploy" / "ci"


def scan(target: str, port: int, fmt: str, out: Path, *extra: str) -> int:
    done = connector("scan", f"{target}:{port}", "--resolve", f"{target}=127.0.0.1", "--no-http", "--checks",
                     "certificate,tls,headers", "--format", fmt, "-o", str(out), "-q", *extra)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode


def test_sarif_is_valid_and_keeps_each_findings_identity_across_runs(tmp_path: Path) -> None:
    first, second = tmp_path / "first.sarif", tmp_path / "second.sarif"
    with site("weak.ci.test", self_signed("weak.ci.test"), https_routes={}, plain_http=False) as weak:
        code = scan("weak.ci.test", weak.asset.https_port, "sarif", first, "--fail-on", "high")
        scan("weak.ci.test", weak.asset.https_port, "sarif", second)
    log: dict[str, Any] = json.loads(first.read_text())
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    assert code == 1  # the self-signed certificate fails high: the gate holds with SARIF too
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["results"], "a self-signed site with no security headers has failing findings"
    for result in run["results"]:
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        assert 0.0 <= float(rule["properties"]["security-severity"]) <= 10.0 and rule["help"]["text"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith(
            "https://weak.ci.test:")
    self_signed_result = next(result for result in run["results"] if result["ruleId"] == "cert.self_signed")
    assert self_signed_result["level"] == "error"  # high: an error in code scanning
    fingerprints = [{r["partialFingerprints"]["posternFingerprint/v1"] for r in json.loads(path.read_text())
                     ["runs"][0]["results"]} for path in (first, second)]
    assert fingerprints[0] == fingerprints[1]


def test_a_clean_site_is_a_valid_log_without_results(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "clean.sarif"
    with site("good.ci.test", pki.intermediate.issue(["good.ci.test"]), https_routes=hardened_routes(),
              plain_http=False) as good:
        done = connector("scan", f"good.ci.test:{good.asset.https_port}", "--resolve", "good.ci.test=127.0.0.1",
                         "--no-http", "--checks", "certificate,headers", "--ca-bundle", str(pki.bundle),
                         "--format", "sarif", "-o", str(out), "-q", "--fail-on", "low")
    log = json.loads(out.read_text())
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    assert done.returncode == 0, done.stderr
    assert log["runs"][0]["results"] == [] and log["runs"][0]["invocations"][0]["executionSuccessful"]


def test_junit_has_a_case_per_rule_a_failure_per_failing_finding_and_an_error_per_unreachable_check(
        tmp_path: Path) -> None:
    report, events = tmp_path / "report.xml", tmp_path / "events.jsonl"
    with site("weak.ci.test", self_signed("weak.ci.test"), https_routes={}, plain_http=False) as weak:
        code = scan("weak.ci.test", weak.asset.https_port, "junit", report, "--fail-on", "high")
        scan("weak.ci.test", weak.asset.https_port, "ecs", events)
    down = connector("scan", "down.ci.test:1", "--resolve", "down.ci.test=127.0.0.1", "--no-http", "--checks",
                     "certificate", "--format", "junit", "-o", str(tmp_path / "down.xml"), "-q")
    xml = JUnitXml.fromfile(str(report))
    cases = [case for suite in xml for case in suite]
    failures = [case for case in cases if any(isinstance(r, Failure) for r in case.result)]
    failing = [doc for doc in map(json.loads, events.read_text().splitlines()) if doc["postern"]["status"] == "fail"]
    assert code == 1
    assert len(cases) == sum(1 for _ in events.read_text().splitlines())
    assert sorted(case.name.split(" ")[0] for case in failures) == sorted(doc["rule"]["id"] for doc in failing)
    unreachable = [case for suite in JUnitXml.fromfile(str(tmp_path / "down.xml")) for case in suite]
    assert down.returncode == 0
    assert unreachable and all(isinstance(case.result[0], Error) for case in unreachable)


def test_the_ci_examples_scan_with_a_gate_and_upload_the_report() -> None:
    github = yaml.safe_load((DEPLOY / "github-actions.yml").read_text())
    steps = github["jobs"]["scan"]["steps"]
    scan_step = next(step for step in steps if "connector scan" in step.get("run", ""))
    upload = next(step for step in steps if step.get("uses", "").startswith("github/codeql-action/upload-sarif"))
    assert "--format sarif" in scan_step["run"] and "--fail-on" in scan_step["run"]
    assert upload["if"] == "always()" and upload["with"]["sarif_file"] in scan_step["run"]
    assert github["permissions"]["security-events"] == "write"
    gitlab = yaml.safe_load((DEPLOY / "gitlab-ci.yml").read_text())["posture"]
    command = next(line for line in gitlab["script"] if "connector scan" in line)
    assert "--format junit" in command and gitlab["artifacts"]["reports"]["junit"] in command
    assert gitlab["artifacts"]["when"] == "always"
