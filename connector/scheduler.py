"""When each asset is scanned next: by criticality, with jitter derived from the asset so restarts keep the plan.

A slot is the moment an asset's scan was due. The scan id of that run is derived from (asset, slot), so a scan
interrupted by a crash and re-run for the same slot produces the same event ids, which sinks deduplicate.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from connector.config import ScheduleConfig
from connector.model import Asset


def _fraction(*parts: str) -> float:
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def next_slot(
    asset: Asset, schedule: ScheduleConfig, previous: tuple[datetime, bool] | None, started_at: datetime
) -> datetime:
    """The asset's next due time given its previous slot (and whether that scan completed)."""
    if previous is None:
        return started_at + schedule.startup_spread * _fraction(asset.id, "first")
    slot, completed = previous
    if not completed:
        return slot  # finish the interrupted run under the same slot, hence the same event ids
    interval = schedule.intervals[asset.criticality]
    jitter = (2 * _fraction(asset.id, slot.isoformat()) - 1) * schedule.jitter
    return slot + interval * (1 + jitter)


def scan_id(asset: Asset, slot: datetime) -> str:
    return hashlib.sha256(f"{asset.id}|{slot.isoformat()}".encode()).hexdigest()[:20]
