"""A scan as a SARIF 2.1.0 log (for GitHub code scanning and other CI/CD dashboards) or a JUnit XML report.

SARIF: one rule descriptor per catalog rule that the scan evaluated (help text, remediation, GitHub's
``security-severity``, compliance controls as tags), one result per failing finding, located at the asset's URL,
with the finding fingerprint in ``partialFingerprints`` so that a finding keeps its identity (and its dismissal)
across runs. Findings that could not be evaluated are tool execution notifications, not results: they are not
verdicts about the site.

JUnit: one test suite per asset and one test case per asset and rule (and subject); a failing finding is a
failure, a check that could not run an error, a rule that does not apply a skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

from connector import __version__
from connector.core.catalog import Catalog, Rule
from connector.core.model import Finding, Severity, Status

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_LEVEL = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note",
          Severity.INFO: "note"}
# GitHub code scanning: >= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low
_SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5", Severity.LOW: "3.0",
                      Severity.INFO: "0.0"}


def sarif_log(findings: Sequence[Finding], catalog: Catalog) -> dict[str, Any]:
    evaluated = sorted({finding.rule_id for finding in findings if finding.status in (Status.PASS, Status.FAIL)})
    index = {rule_id: position for position, rule_id in enumerate(evaluated)}
    results = [_result(finding, index[finding.rule_id]) for finding in findings if finding.status is Status.FAIL]
    errors = [finding for finding in findings if finding.status is Status.ERROR]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "postern", "fullName": "Postern posture connector", "version": __version__,
                                "semanticVersion": __version__,
                                "rules": [_descriptor(catalog[rule_id]) for rule_id in evaluated]}},
            "automationDetails": {"id": f"postern/{findings[0].scan_id}" if findings else "postern/empty"},
            "invocations": [{"executionSuccessful": not errors, "toolExecutionNotifications": [
                {"level": "error", "message": {"text": finding.message},
                 "descriptor": {"id": finding.rule_id},
                 "locations": [_location(finding)]} for finding in errors]}],
            "results": results,
        }],
    }


def _descriptor(rule: Rule) -> dict[str, Any]:
    references = [str(url) for url in rule.references]
    help_text = rule.remediation + ("\n\nReferences: " + " ".join(references) if references else "")
    markdown = rule.remediation + "".join(f"\n- <{url}>" for url in references)
    descriptor: dict[str, Any] = {
        "id": rule.id,
        "name": "".join(part.capitalize() for part in rule.id.replace(".", "_").split("_")),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.description},
        "help": {"text": help_text, "markdown": markdown},
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {"security-severity": _SECURITY_SEVERITY[rule.severity], "precision": "high",
                       "problem.severity": _LEVEL[rule.severity],
                       "tags": ["security", rule.category, *rule.compliance.flattened(), *rule.tags]},
    }
    if references:
        descriptor["helpUri"] = references[0]
    return descriptor


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    return {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": _LEVEL[finding.severity],
        "message": {"text": f"{finding.target}: {finding.message}"},
        "locations": [_location(finding)],
        "partialFingerprints": {"posternFingerprint/v1": finding.fingerprint},
        "properties": {"asset": finding.asset.id, "severity": finding.severity.value,
                       "security-severity": _SECURITY_SEVERITY[finding.severity],
                       **({"subject": finding.subject} if finding.subject else {})},
    }


def _location(finding: Finding) -> dict[str, Any]:
    target = finding.target
    uri = target.url or f"https://{target.asset.host}/"
    return {"physicalLocation": {"artifactLocation": {"uri": uri}, "region": {"startLine": 1}},
            "message": {"text": str(target)}}


def junit_report(findings: Sequence[Finding]) -> bytes:
    suites = ElementTree.Element("testsuites", name="postern")
    by_asset: dict[str, list[Finding]] = {}
    for finding in findings:
        by_asset.setdefault(finding.asset.id, []).append(finding)
    for asset_id, asset_findings in by_asset.items():
        counts = {status: sum(1 for f in asset_findings if f.status is status) for status in Status}
        suite = ElementTree.SubElement(suites, "testsuite", name=asset_id, tests=str(len(asset_findings)),
                                       failures=str(counts[Status.FAIL]), errors=str(counts[Status.ERROR]),
                                       skipped=str(counts[Status.NOT_APPLICABLE]))
        for finding in asset_findings:
            name = finding.rule_id + (f" [{finding.subject}]" if finding.subject else "")
            case = ElementTree.SubElement(suite, "testcase", classname=f"{asset_id}.{finding.check}", name=name)
            if finding.status is Status.FAIL:
                failure = ElementTree.SubElement(case, "failure", message=finding.message,
                                                 type=finding.severity.value)
                failure.text = f"{finding.target}: {finding.message}"
            elif finding.status is Status.ERROR:
                error = ElementTree.SubElement(case, "error", message=finding.message, type="not evaluated")
                error.text = finding.message
            elif finding.status is Status.NOT_APPLICABLE:
                ElementTree.SubElement(case, "skipped", message=finding.message)
    ElementTree.indent(suites)
    document: bytes = ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
