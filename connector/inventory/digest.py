"""Digests: each owner's roll-up of a day or a week, from the finding episodes (inventory/lifecycle.py).

The alert tiers of the monitoring guide: critical findings page now and high ones escalate (playbooks), while
routine ones roll up into a summary instead of drowning the on-call. A digest lists what opened and what was
resolved in the period, and every finding still open past its SLA (KpiSettings.sla), whenever it opened. An owner
with nothing to report gets no digest. Periods end at midnight UTC; a week ends on Monday 00:00.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from connector.core.lifecycle import Digest, DigestEntry, Episode
from connector.core.model import Severity
from connector.inventory.kpi import History, KpiSettings

PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
NO_OWNER = "(none)"


def period_end(period: str, now: datetime) -> datetime:
    """The end of the last complete ``period`` at ``now``: today's midnight, or the last Monday's."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if period == "daily" else midnight - timedelta(days=midnight.weekday())


def digests(history: History, settings: KpiSettings, period: str, end: datetime) -> list[Digest]:
    """One digest per owner with something to say, for the ``period`` that ends at ``end``."""
    start = end - PERIODS[period]
    owners = {record.asset.id: record.asset.owner or NO_OWNER for record in history.records
              if record.removed_at is None}
    opened: dict[str, list[DigestEntry]] = defaultdict(list)
    resolved: dict[str, list[DigestEntry]] = defaultdict(list)
    overdue: dict[str, list[DigestEntry]] = defaultdict(list)
    for episode in history.episodes:
        owner = owners.get(episode.asset_id)
        if owner is None or episode.severity is Severity.INFO:
            continue
        entry = _entry(episode, settings)
        if start <= episode.opened_at < end:
            opened[owner].append(entry)
        if episode.resolved_at is not None and start <= episode.resolved_at < end:
            resolved[owner].append(entry)
        if episode.opened_at < end and (episode.resolved_at is None or episode.resolved_at >= end) \
                and entry.due is not None and entry.due < end:
            overdue[owner].append(entry)
    return [Digest(owner, period, start, end, tuple(_ordered(opened[owner])), tuple(_ordered(resolved[owner])),
                   tuple(_ordered(overdue[owner])))
            for owner in sorted(set(opened) | set(resolved) | set(overdue))]


def _entry(episode: Episode, settings: KpiSettings) -> DigestEntry:
    sla = settings.sla.get(episode.severity)
    return DigestEntry(episode.fingerprint, episode.asset_id, episode.rule_id, episode.severity, episode.opened_at,
                       episode.resolved_at, episode.opened_at + sla if sla is not None else None)


def _ordered(entries: list[DigestEntry]) -> list[DigestEntry]:
    """Most severe first, then oldest."""
    return sorted(entries, key=lambda entry: (-entry.severity.rank, entry.opened_at, entry.asset_id))
