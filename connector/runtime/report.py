"""The posture report of a state directory: its history (removed assets included, so past days count them) and
the analysts' verdicts, assembled by inventory/report.py and rendered by connector/report/."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from connector.core.catalog import Catalog
from connector.inventory.kpi import Scope
from connector.inventory.report import PostureReport, build
from connector.report import render
from connector.runtime.config import Config
from connector.runtime.kpis import history
from connector.runtime.state import StateStore


def posture_report(config: Config, state: StateStore, catalog: Catalog, now: datetime, *, window: timedelta,
                   scopes: Sequence[Scope]) -> PostureReport:
    return build(history(config, state, include_removed=True), catalog, config.kpi, now, window=window, scopes=scopes)


def render_report(report: PostureReport, output_format: str) -> bytes:
    """The report as ``html``, ``json`` or ``csv`` bytes."""
    return render(report, output_format)
