"""The Kibana posture dashboard: saved objects (a data view, Lens panels, the dashboard) for
``POST /api/saved_objects/_import``, kept as data in ``mappings/elastic/kibana-dashboard.ndjson``.

The file is what Kibana exports, so a user can edit the dashboard in Kibana, export it and replace the file; the
only thing set here is the data view's title, which follows the sink's dataset (``logs-<dataset>-*``). Object ids
are fixed, so an import with ``overwrite=true`` updates the dashboard instead of adding a copy. Tests check that
every panel reads a field the connector emits (``assets.field_types``) and that the references hang together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connector.core.errors import ConfigError
from connector.core.resources import mappings_dir

DASHBOARD_ID = "postern-posture"
DATA_VIEW_ID = "postern-events"
FILE = "kibana-dashboard.ndjson"
_RECORDS = "___records___"  # Lens's "count of records" pseudo-field


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-empty line; the error names the file and the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    objects = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object")
        objects.append(value)
    return objects


def saved_objects(data_stream_pattern: str, directory: Path | None = None) -> list[dict[str, Any]]:
    """The shipped saved objects, with the data view over ``data_stream_pattern`` (e.g. logs-postern.findings-*)."""
    path = (directory or mappings_dir()) / "elastic" / FILE
    objects = read_ndjson(path)
    for number, obj in enumerate(objects, 1):
        if not isinstance(obj.get("type"), str) or not isinstance(obj.get("id"), str) \
                or not isinstance(obj.get("attributes"), dict):
            raise ConfigError(f"{path}: object {number}: a saved object needs type, id and attributes")
    views = [obj for obj in objects if obj["type"] == "index-pattern" and obj["id"] == DATA_VIEW_ID]
    if len(views) != 1:
        raise ConfigError(f"{path}: expected one data view (index-pattern) with id {DATA_VIEW_ID}")
    views[0]["attributes"]["title"] = data_stream_pattern
    return objects


def to_ndjson(objects: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(obj, separators=(",", ":")).encode() + b"\n" for obj in objects)


def lens_columns(lens: dict[str, Any]) -> dict[str, dict[str, Any]]:
    layers = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
    return {name: column for layer in layers.values() for name, column in layer["columns"].items()}


def fields_used(objects: list[dict[str, Any]]) -> set[str]:
    """Every field a Lens panel reads (its columns' source fields)."""
    return {str(column["sourceField"]) for obj in objects if obj["type"] == "lens"
            for column in lens_columns(obj).values() if column.get("sourceField") not in (None, _RECORDS)}
