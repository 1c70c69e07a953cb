"""Findings -> normaliser -> durable spool -> shippers -> sinks, assembled from a configuration."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from datetime import UTC, datetime

from connector import metrics
from connector.catalog import Catalog
from connector.config import Config
from connector.model import Asset, Finding, Status, normalise_host
from connector.normalise import Normaliser
from connector.shipping import Shipping
from connector.sinks import build_sink
from connector.sinks.base import Sink
from connector.spool import Spool

log = logging.getLogger(__name__)

OVERFLOW_RULE = "connector.spool_overflow"


class Pipeline:
    def __init__(self, config: Config, catalog: Catalog, normaliser: Normaliser, **backoff: float) -> None:
        self.config = config
        self.catalog = catalog
        self.normaliser = normaliser
        self.sinks: list[Sink] = [build_sink(settings) for settings in config.sink_settings]
        self.formats = frozenset(fmt for sink in self.sinks for fmt in sink.formats)
        spool = config.spool
        self.spool = Spool(config.state_dir / "spool.sqlite", [sink.name for sink in self.sinks],
                           max_events=spool.max_events, max_bytes=spool.max_bytes, overflow=spool.overflow,
                           fsync=spool.fsync)
        self.shipping = Shipping(self.spool, self.sinks, **backoff)

    def start(self) -> None:
        self.shipping.start()

    def publish(self, findings: Sequence[Finding], timeout: float | None = None) -> None:
        """Commit findings to the spool; returns once they are durable (the shippers take it from there)."""
        if not self.sinks or not findings:
            return
        events = [self.normaliser.spool_event(finding, self.formats) for finding in findings]
        dropped = self.spool.append(events, timeout=timeout)
        metrics.EVENTS_SPOOLED.inc(len(events))
        for finding in findings:
            metrics.FINDINGS.labels(finding.status.value).inc()
        if dropped:
            self._report_overflow(dropped)

    def _report_overflow(self, dropped: int) -> None:
        metrics.EVENTS_DROPPED.inc(dropped)
        limits = f"max_events={self.spool.max_events}, max_bytes={self.spool.max_bytes}"
        log.error("spool full: dropped the %d oldest undelivered event(s) (%s)", dropped, limits)
        now = datetime.now(UTC)
        name = self.normaliser.contexts.connector["name"]
        asset = Asset(host=_own_host(), name=f"connector:{name}", http_port=None, ports=())
        finding = Finding(
            rule_id=OVERFLOW_RULE, check="engine", status=Status.FAIL, severity=self.catalog[OVERFLOW_RULE].severity,
            message=f"the spool was full: the {dropped} oldest undelivered event(s) were dropped ({limits})",
            asset=asset, evidence={"dropped": dropped, "policy": self.spool.overflow.value},
            scan_id=f"overflow-{now.timestamp():.0f}", observed_at=now, first_seen=now, last_seen=now,
        )
        self.spool.append([self.normaliser.spool_event(finding, self.formats)])

    def drain(self, timeout: float) -> dict[str, int]:
        return self.shipping.drain(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self.shipping.stop(timeout)
        self.spool.close()


def _own_host() -> str:
    try:
        return normalise_host(socket.gethostname())
    except ValueError:
        return "localhost"
