from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from connector.catalog import Catalog, load_catalog
from connector.checks import ScanContext, ScanSettings
from connector.config import build_checks
from connector.engine import ScanPlan, scan
from connector.model import Asset, Finding, Status
from support.pki import Authority


@dataclass
class Pki:
    root: Authority
    intermediate: Authority
    stranger: Authority  # a root nobody trusts
    bundle: Path  # trusts ``root`` only


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = Authority("Postern Test Root")
    intermediate = Authority("Postern Test Intermediate", root)
    stranger = Authority("Unknown Root")
    bundle = tmp_path_factory.mktemp("pki") / "roots.pem"
    bundle.write_bytes(root.pem())
    return Pki(root, intermediate, stranger, bundle)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


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
