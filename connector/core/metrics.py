"""Prometheus metrics of the pipeline and the responder, served by the sidecar when ``metrics_port`` is set."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_SPOOLED = Counter("connector_events_spooled", "Events committed to the spool")
EVENTS_DROPPED = Counter("connector_events_dropped", "Events deleted by the spool overflow policy")
EVENTS_DELIVERED = Counter("connector_events_delivered", "Events a sink accepted", ["sink"])
EVENTS_DEAD_LETTERED = Counter("connector_events_dead_lettered", "Events a sink rejected for good", ["sink"])
DELIVERY_RETRIES = Counter("connector_delivery_retries", "Batches retried after a transient failure", ["sink"])
LAST_DELIVERY = Gauge("connector_last_delivery_timestamp_seconds", "When a sink last committed a batch", ["sink"])
SPOOL_PENDING = Gauge("connector_spool_pending_events", "Events waiting for a sink", ["sink"])
FINDINGS = Counter("connector_findings", "Findings produced by scans", ["status"])
WATCH_SENTINELS = Counter("connector_watch_sentinels", "Watch-lane sentinels: same, changed (the asset was "
                          "scanned at once), unobserved (part of it could not be seen)", ["outcome"])
CHANGES = Counter("connector_changes", "Change events: findings opened, reopened, changed and resolved; drift; "
                  "assets created, changed and removed", ["action"])
ASSETS_UNFINISHED = Counter("connector_assets_unfinished", "Due assets whose scan was cut short (stop, crash); "
                            "their slots run again")
CALLBACKS = Counter("connector_callbacks", "Callbacks received, by source and outcome (accepted, duplicate, "
                    "rejected)", ["source", "outcome"])
CALLBACK_SECONDS = Histogram("connector_callback_seconds", "Time from a callback's arrival to its answer",
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
PLAYBOOK_STEPS = Counter("connector_playbook_steps", "Playbook steps by action and decision (queued, skipped, "
                         "dry_run, awaiting_approval, succeeded, failed)", ["action", "decision"])
KPI = Gauge("connector_kpi", "The KPIs of each scope after the last scan cycle, as in the postern.kpi metric "
            "events (risk_score, open.critical, compliance.pci_dss_4_0.score...)", ["scope", "kpi"])
