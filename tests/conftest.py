from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from connector.core.catalog import Catalog, load_catalog
from connector.core.model import Asset, Finding, Status
from connector.delivery.pipeline import Pipeline
from connector.normalise import Normaliser
from connector.runtime.config import Config
from connector.scan.checks import available_checks
from connector.scan.context import ScanContext, ScanSettings
from connector.scan.engine import ScanPlan, build_checks, scan
from support.pki import Authority, self_signed
from support.sites import site


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


@pytest.fixture(scope="session")
def scanned(pki: Pki, catalog: Catalog) -> list[Finding]:
    """Findings of a real scan (a hardened site and a self-signed one): what the pipeline ships in tests."""
    with site("ship.test", pki.intermediate.issue(["ship.test"])) as good, \
            site("weak.ship.test", self_signed("weak.ship.test")) as weak:
        return run_scan([good.asset, weak.asset], catalog, ca_bundle=pki.bundle)


DNS_CHECKS = ("dns", "spf", "dmarc", "dkim", "mta_sts")


def web_checks() -> list[str]:
    """The checks that reach a target over TCP; the DNS family asks resolvers, which its own tests point at Knot."""
    return [name for name in available_checks() if name not in DNS_CHECKS]


def without_dns_checks() -> dict[str, dict[str, bool]]:
    """A config ``checks:`` section for tests whose target name must not depend on the machine's resolver."""
    return {name: {"enabled": False} for name in DNS_CHECKS}


def make_pipeline(tmp_path: Path, catalog: Catalog, sinks: list[dict[str, object]], **spool: object) -> Pipeline:
    """A real normaliser -> spool -> shippers pipeline with fast backoff, as the sidecar builds it."""
    config = Config.model_validate({"assets": [{"host": "unused.test"}], "sinks": sinks,
                                    "state_dir": str(tmp_path / "state"), "spool": spool or {}})
    return Pipeline(config.sink_settings, config.spool, config.state_dir, catalog, Normaliser.load(catalog),
                    initial_backoff=0.02, max_backoff=0.2)


@contextmanager
def running(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The pipeline's shippers at work for the block, stopped however it ends."""
    pipeline.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()


def ship(pipeline: Pipeline, findings: list[Finding], timeout: float = 20.0) -> dict[str, int]:
    """Start the shippers, spool ``findings``, wait for delivery; returns what is still pending per sink."""
    with running(pipeline):
        pipeline.publish(findings)
        return pipeline.drain(timeout)


def wait_until(condition, timeout: float = 15.0, interval: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)
