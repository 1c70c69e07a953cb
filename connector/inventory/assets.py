"""The asset register: every configured or discovered asset, its classification, and when it was seen and scanned.

The configuration is the source of truth for configured assets: each sync against it reports what entered,
changed (its declaration: host, classification, owner, tags, ports...) or left. Discovered assets enter through
``discover`` and stay until removed by hand (they are not in the configuration to leave it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime

from connector.core.lifecycle import AssetAction, AssetChange, AssetRecord
from connector.core.model import Asset

CONFIG = "config"
DISCOVERED = "discovered"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    asset_id TEXT PRIMARY KEY,
    declaration TEXT NOT NULL,   -- the Asset, as JSON
    source TEXT NOT NULL,
    seen_from TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    last_scanned TEXT,
    removed_at TEXT
);
"""
_FIELDS = "asset_id, declaration, source, seen_from, first_seen, last_seen, last_scanned, removed_at"


class AssetRegister:
    """Kept in the state database the runtime opens (one writer, WAL: safe to read while it runs)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)

    def sync(self, configured: Iterable[Asset], now: datetime, publish: Callable[[list[AssetChange]], None],
             renamed: Callable[[str, Asset], None] | None = None) -> list[AssetChange]:
        """Record the configuration's assets, and hand ``publish`` what entered, changed or left it since the last
        sync; the register keeps the sync only if ``publish`` returns (the changes are then durable events).

        An asset whose name changed while its host stayed is the same asset renamed: one asset-changed event, and
        ``renamed(old id, asset)`` moves what is known of it (open findings, baselines) in the same transaction.
        """
        configured = list(configured)
        known = {record.asset.id: record for record in self.records(include_removed=True)}
        ids = {asset.id for asset in configured}
        leaving = {record.asset.host: record for record in known.values()
                   if record.source == CONFIG and record.removed_at is None and record.asset.id not in ids}
        changes: list[AssetChange] = []
        present: set[str] = set()
        with self._db:
            self._db.execute("BEGIN")
            for asset in configured:
                present.add(asset.id)
                before = known.get(asset.id)
                old = leaving.pop(asset.host, None) if before is None or before.removed_at is not None else None
                if old is not None:
                    record = AssetRecord(asset, CONFIG, None, old.first_seen, now, old.last_scanned)
                    changes.append(AssetChange(AssetAction.CHANGED, record, old, now))
                    self._db.execute("DELETE FROM assets WHERE asset_id = ?", (old.asset.id,))
                    present.add(old.asset.id)
                    if renamed is not None:
                        renamed(old.asset.id, asset)
                elif before is None or before.removed_at is not None:
                    record = AssetRecord(asset, CONFIG, None, now, now, None)
                    changes.append(AssetChange(AssetAction.CREATED, record, None, now))
                else:
                    record = AssetRecord(asset, CONFIG, None, before.first_seen, now, before.last_scanned)
                    if before.asset != asset or before.source != CONFIG:
                        changes.append(AssetChange(AssetAction.CHANGED, record, before, now))
                self._write(record)
            for record in known.values():
                if record.source == CONFIG and record.removed_at is None and record.asset.id not in present:
                    removed = AssetRecord(record.asset, record.source, record.seen_from, record.first_seen,
                                          record.last_seen, record.last_scanned, now)
                    self._write(removed)
                    changes.append(AssetChange(AssetAction.REMOVED, removed, record, now))
            if changes:
                publish(changes)
        return changes

    def discovered(self, found: Iterable[tuple[Asset, str]], now: datetime) -> list[AssetChange]:
        """What discovering each (asset, where it was seen) would add: nothing for a name the inventory already
        holds, by id or host, configured or discovered. Writes nothing; ``record_discovered`` keeps them once
        their events are durable."""
        records = self.records()
        known = {record.asset.host for record in records} | {record.asset.id for record in records}
        changes = []
        for asset, seen_from in found:
            if asset.host not in known and asset.id not in known:
                known.add(asset.host)
                record = AssetRecord(asset, DISCOVERED, seen_from, now, now, None)
                changes.append(AssetChange(AssetAction.CREATED, record, None, now))
        return changes

    def record_discovered(self, created: Iterable[AssetChange], seen: Iterable[str], now: datetime) -> None:
        """Keep the discovered assets, and note when discovered names in ``seen`` (hosts) were seen again."""
        with self._db:
            self._db.execute("BEGIN")
            for change in created:
                self._write(change.record)
            for host in seen:
                self._db.execute("UPDATE assets SET last_seen = ? WHERE source = ? AND removed_at IS NULL "
                                 "AND json_extract(declaration, '$.host') = ?", (now.isoformat(), DISCOVERED, host))

    def scanned(self, asset_id: str, at: datetime) -> None:
        self._db.execute("UPDATE assets SET last_scanned = ? WHERE asset_id = ?", (at.isoformat(), asset_id))

    def record(self, asset_id: str) -> AssetRecord | None:
        row = self._db.execute(f"SELECT {_FIELDS} FROM assets WHERE asset_id = ?", (asset_id,)).fetchone()
        return _record(row) if row else None

    def records(self, *, include_removed: bool = False) -> list[AssetRecord]:
        where = "" if include_removed else " WHERE removed_at IS NULL"
        return [_record(row) for row in self._db.execute(f"SELECT {_FIELDS} FROM assets{where} ORDER BY asset_id")]

    def _write(self, record: AssetRecord) -> None:
        self._db.execute(
            f"INSERT INTO assets ({_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(asset_id) DO UPDATE SET "
            "declaration = excluded.declaration, source = excluded.source, seen_from = excluded.seen_from, "
            "first_seen = excluded.first_seen, last_seen = excluded.last_seen, last_scanned = excluded.last_scanned, "
            "removed_at = excluded.removed_at",
            (record.asset.id, record.asset.model_dump_json(), record.source, record.seen_from,
             record.first_seen.isoformat(), record.last_seen.isoformat(),
             record.last_scanned.isoformat() if record.last_scanned else None,
             record.removed_at.isoformat() if record.removed_at else None))


def _record(row: tuple[str, ...]) -> AssetRecord:
    _, declaration, source, seen_from, first_seen, last_seen, last_scanned, removed_at = row
    return AssetRecord(Asset.model_validate_json(declaration), source, seen_from, datetime.fromisoformat(first_seen),
                       datetime.fromisoformat(last_seen),
                       datetime.fromisoformat(last_scanned) if last_scanned else None,
                       datetime.fromisoformat(removed_at) if removed_at else None)
