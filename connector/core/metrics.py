"""Prometheus metrics of the pipeline, served by the sidecar when ``metrics_port`` is set."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_SPOOLED = Counter("connector_events_spooled", "Events committed to the spool")
EVENTS_DROPPED = Counter("connector_events_dropped", "Events deleted by the spool overflow policy")
EVENTS_DELIVERED = Counter("connector_events_delivered", "Events a sink accepted", ["sink"])
EVENTS_DEAD_LETTERED = Counter("connector_events_dead_lettered", "Events a sink rejected for good", ["sink"])
DELIVERY_RETRIES = Counter("connector_delivery_retries", "Batches retried after a transient failure", ["sink"])
LAST_DELIVERY = Gauge("connector_last_delivery_timestamp_seconds", "When a sink last committed a batch", ["sink"])
SPOOL_PENDING = Gauge("connector_spool_pending_events", "Events waiting for a sink", ["sink"])
FINDINGS = Counter("connector_findings", "Findings produced by scans", ["status"])
ASSETS_UNFINISHED = Counter("connector_assets_unfinished", "Due assets whose scan was cut short (stop, crash); "
                            "their slots run again")
