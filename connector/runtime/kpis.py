"""The KPIs of a state directory now, for `connector kpi`, the report, the metric events that follow each scan
cycle and the Prometheus gauges: the history from the state store and the analysts' verdicts, computed per scope
by inventory/kpi.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from connector.core import metrics
from connector.core.catalog import Catalog
from connector.core.lifecycle import Digest, Measurement
from connector.inventory.digest import digests, period_end
from connector.inventory.kpi import SCOPE_KINDS, History, Kpis, compute, measurement, scopes
from connector.respond.verdicts import VerdictStore
from connector.runtime.config import Config
from connector.runtime.state import StateStore

VERDICTS_FILE = "verdicts.sqlite"  # the analysts' verdicts: `connector findings mark` and POST /v1/feedback


def history(config: Config, state: StateStore, *, include_removed: bool = False) -> History:
    """``include_removed``: assets removed from the inventory too, for figures of past days (the report)."""
    return History(state.assets.records(include_removed=include_removed), state.findings.verdicts(),
                   state.findings.episodes(),
                   state.baselines.detections(), analyst_verdicts(config))


def analyst_verdicts(config: Config) -> dict[str, str]:
    path = config.state_dir / VERDICTS_FILE
    if not path.exists():
        return {}
    store = VerdictStore(path)
    try:
        return store.latest()
    finally:
        store.close()


def current_kpis(config: Config, state: StateStore, catalog: Catalog, now: datetime,
                 kinds: Sequence[str] = SCOPE_KINDS) -> list[Kpis]:
    """The KPIs of every scope of ``kinds`` present in the inventory (overall first)."""
    known = history(config, state)
    return [compute(scope, known, catalog, config.kpi, now) for kind in kinds for scope in scopes(known.records, kind)]


def due_digests(config: Config, state: StateStore, now: datetime) -> list[tuple[str, datetime, list[Digest]]]:
    """(period, end, digests) of each configured period that ended since its digests were last published; the
    caller records each with ``state.record_digest`` once published. Periods missed while the collector was down
    are not made up: the digest of the latest one lists what is overdue."""
    due: list[tuple[str, datetime, list[Digest]]] = []
    for period in config.kpi.digests:
        end = period_end(period, now)
        last = state.last_digest(period)
        if last is None or last < end:
            due.append((period, end, digests(history(config, state), config.kpi, period, end)))
    return due


def measurements(config: Config, state: StateStore, catalog: Catalog, now: datetime) -> list[Measurement]:
    """The metric events of a finished scan cycle, one per scope; the Prometheus gauges follow them."""
    snapshots = [measurement(kpis) for kpis in current_kpis(config, state, catalog, now)]
    for snapshot in snapshots:
        scope = snapshot.scope_kind if snapshot.scope_kind == "overall" else \
            f"{snapshot.scope_kind}:{snapshot.scope_value}"
        for name, value in snapshot.values.items():
            if isinstance(value, int | float):
                metrics.KPI.labels(scope, name).set(value)
    return snapshots
