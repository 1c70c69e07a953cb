"""What the connector remembers between runs: when each asset was scanned and its schedule, plus the asset
register, the finding ledger and the observation baselines of connector.inventory, all in one SQLite file of the
state directory."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TextIO

from connector.core.catalog import Catalog
from connector.core.errors import ConfigError
from connector.core.lifecycle import AssetChange
from connector.core.model import Asset, Severity
from connector.inventory.assets import AssetRegister
from connector.inventory.baselines import BaselineStore
from connector.inventory.discovery import Discovery, InventorySettings, reported_dependencies
from connector.inventory.lifecycle import FindingLedger
from connector.scan.sentinel import Sentinel

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    scan_id TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    finished TEXT NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (scan_id, asset_id)
);
CREATE TABLE IF NOT EXISTS sentinels (
    asset_id TEXT PRIMARY KEY,
    sentinel TEXT NOT NULL,
    observed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS digests (
    period TEXT PRIMARY KEY,
    last_end TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule (
    asset_id TEXT PRIMARY KEY,
    last_slot TEXT NOT NULL,
    completed INTEGER NOT NULL
);
"""


class StateStore:
    """SQLite in WAL mode; one writer (the connector), safe to read while it runs.

    The writer holds an exclusive lock next to the file for as long as it runs: two processes scanning from one
    state directory would both publish the same due assets into its spool (30% duplicate events were measured).
    Readers (``exclusive=False``) take no lock.
    """

    def __init__(self, path: Path, *, exclusive: bool = True) -> None:
        self._lock: TextIO | None = _lock(path) if exclusive else None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")  # a rescan writes through its own connection
            self._db.executescript(_SCHEMA)
            self.findings = FindingLedger(self._db)
            self.assets = AssetRegister(self._db)
            self.baselines = BaselineStore(self._db)
        except (OSError, sqlite3.Error) as exc:
            self._unlock()
            raise ConfigError(f"state store {path}: {exc}") from None
        self.path = path

    def discovery(self, settings: InventorySettings, catalog: Catalog, *, rogue_rule: bool = True,
                  rogue_severity: Severity | None = None) -> Discovery:
        """Discovery over this store's register, with its record of the dependencies already reported."""
        return Discovery(self._db, self.assets, settings, catalog, rogue_rule=rogue_rule,
                         rogue_severity=rogue_severity)

    def third_parties(self) -> list[tuple[str, str | None, str, str]]:
        return reported_dependencies(self._db)

    def last_digest(self, period: str) -> datetime | None:
        """The end of the last period whose digests were published."""
        row = self._db.execute("SELECT last_end FROM digests WHERE period = ?", (period,)).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def record_digest(self, period: str, end: datetime) -> None:
        self._db.execute("INSERT INTO digests (period, last_end) VALUES (?, ?) ON CONFLICT(period) DO UPDATE SET "
                         "last_end = excluded.last_end", (period, end.isoformat()))

    def slot(self, asset_id: str) -> tuple[datetime, bool] | None:
        """The asset's last scheduled slot and whether its scan completed."""
        row = self._db.execute("SELECT last_slot, completed FROM schedule WHERE asset_id = ?", (asset_id,)).fetchone()
        return None if row is None else (datetime.fromisoformat(row[0]), bool(row[1]))

    def record_slot(self, asset_id: str, slot: datetime, completed: bool) -> None:
        self._db.execute(
            "INSERT INTO schedule (asset_id, last_slot, completed) VALUES (?, ?, ?) "
            "ON CONFLICT(asset_id) DO UPDATE SET last_slot = excluded.last_slot, completed = excluded.completed",
            (asset_id, slot.isoformat(), int(completed)),
        )

    def sync_assets(self, assets: list[Asset], now: datetime,
                    publish: Callable[[list[AssetChange]], None]) -> list[AssetChange]:
        """The configuration's assets into the register (see AssetRegister.sync); a renamed asset keeps its open
        findings, baselines and sentinel."""
        return self.assets.sync(assets, now, publish, self._renamed)

    def _renamed(self, old_id: str, asset: Asset) -> None:
        self.findings.rename(old_id, asset)
        self.baselines.rename(old_id, asset.id)
        self._db.execute("UPDATE OR REPLACE sentinels SET asset_id = ? WHERE asset_id = ?", (asset.id, old_id))

    def sentinel(self, asset_id: str) -> Sentinel | None:
        """The watch lane's last sentinel of the asset."""
        row = self._db.execute("SELECT sentinel FROM sentinels WHERE asset_id = ?", (asset_id,)).fetchone()
        return Sentinel(**json.loads(row[0])) if row else None

    def record_sentinel(self, asset_id: str, sentinel: Sentinel, observed_at: datetime) -> None:
        self._db.execute(
            "INSERT INTO sentinels (asset_id, sentinel, observed_at) VALUES (?, ?, ?) ON CONFLICT(asset_id) "
            "DO UPDATE SET sentinel = excluded.sentinel, observed_at = excluded.observed_at",
            (asset_id, json.dumps(asdict(sentinel)), observed_at.isoformat()))

    def record_scan(self, scan_id: str, asset_id: str, finished: datetime, events: int) -> None:
        self._db.execute(
            "INSERT INTO scans (scan_id, asset_id, finished, events) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(scan_id, asset_id) DO UPDATE SET finished = excluded.finished, events = excluded.events",
            (scan_id, asset_id, finished.isoformat(), events),
        )

    def latest_scans(self) -> dict[str, int]:
        """Each asset's most recent scan id and how many events it produced."""
        rows = self._db.execute(
            "SELECT scan_id, SUM(events) FROM scans WHERE (asset_id, finished) IN "
            "(SELECT asset_id, MAX(finished) FROM scans GROUP BY asset_id) GROUP BY scan_id").fetchall()
        return {scan_id: int(count) for scan_id, count in rows}

    def close(self) -> None:
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None


def _lock(path: Path) -> TextIO:
    """Hold ``<store>.lock`` exclusively (released by the kernel when the process ends, however it ends)."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a+", encoding="ascii")
    except OSError as exc:
        raise ConfigError(f"state store {path}: cannot create its lock file: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(f"state directory {path.parent} is in use by another connector process (pid {holder}); "
                          "run one connector per state directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
