"""When each asset is scanned next: by criticality, with jitter derived from the asset so restarts keep the plan.

A slot is the moment an asset's scan was due. The scan id of that run is derived from (asset, slot), so a scan
interrupted by a crash and re-run for the same slot produces the same event ids, which sinks deduplicate.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.core.model import Asset, Criticality
from connector.core.units import Duration


class ScheduleConfig(BaseModel):
    """How often each asset is scanned, by criticality, with jitter so scans do not bunch up."""

    model_config = ConfigDict(extra="forbid")

    intervals: dict[Criticality, Duration] = Field(default_factory=lambda: {
        Criticality.CRITICAL: timedelta(days=1),
        Criticality.HIGH: timedelta(days=3),
        Criticality.MEDIUM: timedelta(days=7),
        Criticality.LOW: timedelta(days=7),
    })
    jitter: float = Field(default=0.1, ge=0, le=0.5, description="fraction of the interval, applied +/-")
    startup_spread: Duration = Field(default=timedelta(minutes=5), description="first scans spread over this")

    @model_validator(mode="after")
    def _all_criticalities(self) -> ScheduleConfig:
        for level in Criticality:
            interval = self.intervals.get(level)
            if interval is None:
                raise ValueError(f"intervals: no interval for criticality {level.value!r}")
            if interval < timedelta(minutes=1):
                raise ValueError(f"intervals.{level.value}: must be at least one minute")
        return self


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
