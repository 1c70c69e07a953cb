"""Findings -> normaliser -> durable spool -> shippers -> sinks, assembled from a configuration."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.core import metrics
from connector.core.audit import AuditRecord
from connector.core.catalog import Catalog
from connector.core.lifecycle import StateChange
from connector.core.model import Asset, Finding, Status, normalise_host
from connector.delivery.shipping import Shipping
from connector.delivery.sinks import build_sink
from connector.delivery.sinks.base import Sink, SinkSettings
from connector.delivery.spool import Spool, SpoolConfig
from connector.normalise import Normaliser, change_action
from connector.normalise.audit import audit_spool_event

log = logging.getLogger(__name__)

OVERFLOW_RULE = "connector.spool_overflow"


class Pipeline:
    """Implements core.events.Publisher and core.audit.Auditor: what the collector and the SOAR half publish
    through, into one spool."""

    def __init__(
        self,
        sinks: Sequence[SinkSettings],
        spool: SpoolConfig,
        state_dir: Path,
        catalog: Catalog,
        normaliser: Normaliser,
        **backoff: float,
    ) -> None:
        self.spool_config = spool
        self.catalog = catalog
        self.normaliser = normaliser
        self.sinks: list[Sink[Any]] = [build_sink(settings) for settings in sinks]
        self.formats = frozenset(fmt for sink in self.sinks for fmt in sink.formats)
        self.spool = open_spool(spool, state_dir, [sink.name for sink in self.sinks])
        self.shipping = Shipping(self.spool, self.sinks, **backoff)
        self.stopping = threading.Event()  # ends a producer's wait for room (overflow: block)
        self._rejected_before = self.spool.rejected()

    def start(self) -> None:
        self.shipping.start()

    def publish(self, findings: Sequence[Finding], changes: Sequence[StateChange] = ()) -> None:
        """Commit findings and what changed with them to the spool in one append; returns once they are durable
        (the shippers take it from there).

        Raises SpoolError when they could not be written (full under ``block``, or a disk error): the caller
        still holds them and must treat the scan as not delivered.
        """
        if not self.sinks or not (findings or changes):
            return
        events = [self.normaliser.spool_event(finding, self.formats) for finding in findings]
        events += [self.normaliser.change_event(change, self.formats) for change in changes]
        dropped = self.spool.append(events, timeout=self.spool_config.block_timeout.total_seconds(),
                                    stop=self.stopping)
        metrics.EVENTS_SPOOLED.inc(len(events))
        for finding in findings:
            metrics.FINDINGS.labels(finding.status.value).inc()
        for change in changes:
            metrics.CHANGES.labels(change_action(change)).inc()
        if dropped:
            self._report_overflow(dropped)

    def audit(self, records: list[AuditRecord]) -> None:
        """Commit the SOAR half's audit records like findings: durable on return, or SpoolError."""
        if not self.sinks or not records:
            return
        connector = self.normaliser.contexts.connector
        events = [audit_spool_event(record, connector, self.formats) for record in records]
        dropped = self.spool.append(events, timeout=self.spool_config.block_timeout.total_seconds(),
                                    stop=self.stopping)
        metrics.EVENTS_SPOOLED.inc(len(events))
        if dropped:
            self._report_overflow(dropped)

    def _report_overflow(self, dropped: int) -> None:
        metrics.EVENTS_DROPPED.inc(dropped)
        limits = f"max_events={self.spool.max_events}, max_bytes={self.spool.max_bytes}"
        log.error("spool full: dropped the %d oldest undelivered event(s) (%s)", dropped, limits)
        now = datetime.now(UTC)
        name = self.normaliser.contexts.connector["name"]
        asset = Asset(host=_own_host(self.normaliser.contexts.connector["hostname"]), name=f"connector:{name}",
                      http_port=None, ports=())
        finding = Finding(
            rule_id=OVERFLOW_RULE, check="engine", status=Status.FAIL, severity=self.catalog[OVERFLOW_RULE].severity,
            message=f"the spool was full: the {dropped} oldest undelivered event(s) were dropped ({limits})",
            asset=asset, evidence={"dropped": dropped, "policy": self.spool.overflow.value},
            scan_id=f"overflow-{secrets.token_hex(8)}", observed_at=now, first_seen=now, last_seen=now,
        )
        self.spool.append([self.normaliser.spool_event(finding, self.formats)])

    def drain(self, timeout: float) -> dict[str, int]:
        """Wait for the sinks to take everything (or ``timeout``); returns events still pending per sink."""
        return self.shipping.drain(timeout)

    def rejected_since_start(self) -> dict[str, int]:
        """Events each sink rejected for good (now dead letters) since this pipeline was built."""
        return {sink: count - self._rejected_before.get(sink, 0) for sink, count in self.spool.rejected().items()}

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.shipping.stop(timeout)
        self.spool.close()


def open_spool(settings: SpoolConfig, state_dir: Path, sinks: Sequence[str] | None) -> Spool:
    """The configured spool; ``sinks=None`` opens an existing one for inspection without touching cursors."""
    path = state_dir / "spool.sqlite"
    if sinks is None:
        return Spool.existing(path)
    return Spool(path, sinks, max_events=settings.max_events, max_bytes=settings.max_bytes,
                 max_dead_letters=settings.max_dead_letters, overflow=settings.overflow, fsync=settings.fsync)


def _own_host(hostname: str) -> str:
    try:
        return normalise_host(hostname)
    except ValueError:
        return "localhost"
