"""Running out of our own resources is an error finding, never an answer from the target: a port that could not
be probed because this process had no descriptor left is not a closed port."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

from connector.core.catalog import Catalog
from connector.core.model import Asset, Finding
from connector.scan.context import ScanContext, ScanSettings
from connector.scan.engine import ScanPlan, build_checks, scan
from support.web import listening

OPEN_PORTS = 40
SPARE_DESCRIPTORS = 4


def test_running_out_of_descriptors_is_an_error_finding_never_closed(catalog: Catalog) -> None:
    with listening(OPEN_PORTS) as ports:
        asset = Asset(host="starved.test", address="127.0.0.1", http_port=None, expected_ports=(),
                      scan_ports=tuple(ports))
        plan = ScanPlan([asset], build_checks({"ports": {"banner_timeout": 0.1}}, ["ports"]))

        async def starved() -> list[Finding]:
            # the socket budget is taken from the limit at start; the limit then drops under the scan's feet,
            # as when other work of the process (or a lower limit than planned for) holds the descriptors
            ctx = ScanContext(ScanSettings(connect_timeout=2))
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            in_use = len(list(Path("/proc/self/fd").iterdir()))
            resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + SPARE_DESCRIPTORS, hard))
            try:
                return [finding async for report in scan(plan, catalog, ctx, scan_id="starved")
                        for finding in report.findings]
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        findings = asyncio.run(starved())
    assert [(finding.rule_id, finding.evidence.get("error_kind")) for finding in findings] \
        == [("scan.error", "resource")]
    assert "could not be probed: this host ran out of resources (Too many open files)" in findings[0].message
