"""Scanning as the CLI and sidecar do, for tests: the engine's public API with test-sized timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from connector.core.catalog import Catalog
from connector.core.model import Asset, Finding, Status
from connector.scan.checks import available_checks
from connector.scan.context import ScanContext, ScanSettings
from connector.scan.engine import ScanPlan, build_checks, scan


def run_scan(
    assets: Iterable[Asset],
    catalog: Catalog,
    *,
    checks: Iterable[str] = ("certificate", "tls", "https"),
    ca_bundle: Path | None = None,
    check_settings: dict[str, dict[str, object]] | None = None,
    **settings: object,
) -> list[Finding]:
    """Scan through the public engine API, exactly as the CLI and sidecar do."""
    scan_settings = ScanSettings.model_validate(
        {"ca_bundle": ca_bundle, "connect_timeout": 2.0, "check_timeout": 20.0, **settings})
    plan = ScanPlan(list(assets), build_checks(check_settings or {}, list(checks)))

    async def collect() -> list[Finding]:
        found: list[Finding] = []
        async for report in scan(plan, catalog, ScanContext(scan_settings), scan_id="test"):
            found.extend(report.findings)
        return found

    return asyncio.run(collect())


def failing(findings: Iterable[Finding]) -> set[str]:
    return {finding.rule_id for finding in findings if finding.status is Status.FAIL}


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.status is Status.ERROR]


def result(findings: Iterable[Finding], rule_id: str) -> Finding:
    matches = [finding for finding in findings if finding.rule_id == rule_id]
    assert len(matches) == 1, f"expected one {rule_id} finding, got {len(matches)}"
    return matches[0]


DNS_CHECKS = ("dns", "spf", "dmarc", "dkim", "mta_sts")


def web_checks() -> list[str]:
    """The checks that reach a target over TCP; the DNS family asks resolvers, which its own tests point at Knot."""
    return [name for name in available_checks() if name not in DNS_CHECKS]


def without_dns_checks() -> dict[str, dict[str, bool]]:
    """A config ``checks:`` section for tests whose target name must not depend on the machine's resolver."""
    return {name: {"enabled": False} for name in DNS_CHECKS}
