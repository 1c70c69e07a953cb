"""The small mapping language of ``mappings/ecs.yaml`` and ``mappings/cef.yaml``, compiled once into getters.

A target field maps to a source path (``finding.message``), a constant (``{value: state}``), or a path with a
lookup table and/or a transform (``{from: finding.severity, lookup: cef_severity}``). ``from`` may list several
paths; the first non-empty one wins. Unknown paths are not an error at run time (the field is left out), but
unknown transforms and lookups are rejected when the file is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.errors import ConfigError

Context = Mapping[str, Any]
Getter = Callable[[Context], Any]


def _iso8601(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value


def _epoch_ms(value: Any) -> Any:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def _join(value: Any) -> Any:
    return ",".join(str(item) for item in value) if isinstance(value, list | tuple) else value


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else [value]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list | tuple) and value else value


def _json(value: Any) -> Any:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "iso8601": _iso8601,
    "epoch_ms": _epoch_ms,
    "join": _join,
    "list": _as_list,
    "first": _first,
    "json": _json,
    "upper": lambda value: value.upper() if isinstance(value, str) else value,
    "lower": lambda value: value.lower() if isinstance(value, str) else value,
    "str": lambda value: value if isinstance(value, str) else json.dumps(value, default=str),
}


def is_empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list | tuple | dict) and not value)


def _path_getter(path: str) -> Getter:
    parts = tuple(path.split("."))

    def get(context: Context) -> Any:
        value: Any = context
        for part in parts:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
            if value is None:
                return None
        return value

    return get


def compile_source(spec: Any, lookups: Mapping[str, Mapping[str, Any]], where: str) -> Getter:
    """Turn one right-hand side of a mapping file into a getter; ``where`` names it in error messages."""
    if isinstance(spec, str):
        return _path_getter(spec)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a source path or a mapping, got {spec!r}")
    unknown = set(spec) - {"value", "from", "lookup", "transform", "default"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    if "value" in spec:
        constant = spec["value"]
        return lambda _context: constant
    sources = spec.get("from")
    paths = [sources] if isinstance(sources, str) else sources
    if not paths or not all(isinstance(path, str) for path in paths):
        raise ConfigError(f"{where}: 'from' must be a path or a list of paths")
    getters = [_path_getter(path) for path in paths]
    table: Mapping[str, Any] | None = None
    if "lookup" in spec:
        if spec["lookup"] not in lookups:
            raise ConfigError(f"{where}: unknown lookup {spec['lookup']!r} (defined: {sorted(lookups)})")
        table = lookups[spec["lookup"]]
    transform = None
    if "transform" in spec:
        if spec["transform"] not in TRANSFORMS:
            raise ConfigError(f"{where}: unknown transform {spec['transform']!r} (known: {sorted(TRANSFORMS)})")
        transform = TRANSFORMS[spec["transform"]]
    default = spec.get("default")

    def get(context: Context) -> Any:
        value = None
        for getter in getters:
            value = getter(context)
            if not is_empty(value):
                break
        if is_empty(value):
            return default
        if table is not None:
            value = table.get(str(value), default)
        if transform is not None and value is not None:
            value = transform(value)
        return value

    return get


@dataclass(frozen=True)
class FieldRule:
    target: str
    path: tuple[str, ...]
    get: Getter


def compile_fields(
    fields: Mapping[str, Any], lookups: Mapping[str, Mapping[str, Any]], where: str
) -> list[FieldRule]:
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{where}: 'fields' must be a mapping of target field to source")
    return [
        FieldRule(str(target), tuple(str(target).split(".")), compile_source(spec, lookups, f"{where}: {target}"))
        for target, spec in fields.items()
    ]


def set_nested(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``value`` at ``path``, merging into mappings already there (so subtrees can be combined)."""
    node = document
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    last = path[-1]
    if isinstance(value, Mapping) and isinstance(node.get(last), dict):
        node[last] = {**node[last], **value}
    else:
        node[last] = value
