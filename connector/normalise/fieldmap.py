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
from functools import lru_cache
from typing import Any

from connector.errors import ConfigError

Context = Mapping[str, Any]
Getter = Callable[[Context], Any]


@lru_cache(maxsize=1024)
def _iso8601_datetime(value: datetime) -> str:
    # Cached: a scan stamps all its findings with the same few instants.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _iso8601(value: Any) -> Any:
    return _iso8601_datetime(value) if isinstance(value, datetime) else value


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


_CONTAINERS = (list, tuple, dict)


def is_empty(value: Any) -> bool:
    return value is None or value == "" or (type(value) in _CONTAINERS and not value)


def _path_getter(path: str) -> Getter:
    # Hot path (one call per field per event): plain dicts only, no ABC isinstance checks.
    parts = tuple(path.split("."))
    if len(parts) == 2:
        head, tail = parts

        def get_two(context: Context) -> Any:
            node = context.get(head)
            return node.get(tail) if type(node) is dict else None

        return get_two

    def get(context: Context) -> Any:
        value: Any = context
        for part in parts:
            if type(value) is not dict:
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
    source: str | None = None  # the plain source path, when the right-hand side is just a path


def compile_fields(
    fields: Mapping[str, Any], lookups: Mapping[str, Mapping[str, Any]], where: str
) -> list[FieldRule]:
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{where}: 'fields' must be a mapping of target field to source")
    return [
        FieldRule(str(target), tuple(str(target).split(".")), compile_source(spec, lookups, f"{where}: {target}"),
                  spec if isinstance(spec, str) else None)
        for target, spec in fields.items()
    ]


_SELF = "\x00self"  # marks an object-valued field that also has fields mapped inside it


def compile_document(rules: list[FieldRule]) -> Callable[[Context], dict[str, Any]]:
    """Generate one function that builds the nested document for all ``rules``.

    Normalising is on the shipping hot path (every event, tens of thousands a second in a backlog), so the
    mapping is turned into straight-line Python once: plain paths become inline dict lookups, nested objects are
    built directly instead of walked per field, and empty values are skipped without function calls.
    """
    tree: dict[str, Any] = {}
    for index, rule in enumerate(rules):
        node = tree
        for part in rule.path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{rule.target}: {part} is mapped both as a value and as an object")
            node = child
        leaf = rule.path[-1]
        if leaf in node:
            if isinstance(node[leaf], dict):
                node[leaf][_SELF] = index  # a whole object merged with fields mapped inside it
                continue
            raise ConfigError(f"{rule.target} is mapped twice")
        node[leaf] = index
    lines = ["def build(ctx):"]
    roots = sorted({rule.source.split(".", 1)[0] for rule in rules if rule.source and "." in rule.source})
    lines += [f"    r_{name} = ctx.get({name!r})" for name in roots]
    names = iter(range(10**6))

    def expression(index: int) -> str:
        rule = rules[index]
        if rule.source is None:
            return f"g{index}(ctx)"
        head, *rest = rule.source.split(".")
        if not rest:
            return f"ctx.get({head!r})"
        if len(rest) == 1:
            return f"(r_{head}.get({rest[0]!r}) if type(r_{head}) is dict else None)"
        return f"dig(r_{head}, {tuple(rest)!r})"

    def emit(node: dict[str, Any], target: str, indent: str) -> None:
        for key, child in node.items():
            if key == _SELF:
                continue
            if isinstance(child, dict):
                name = f"d{next(names)}"
                lines.append(f"{indent}{name} = {{}}")
                emit(child, name, indent)
                if _SELF in child:
                    lines.append(f"{indent}v = {expression(child[_SELF])}")
                    lines.append(f"{indent}if type(v) is dict: {name} = {{**v, **{name}}}")
                lines.append(f"{indent}if {name}: {target}[{key!r}] = {name}")
            else:
                lines.append(f"{indent}v = {expression(child)}")
                lines.append(f"{indent}if v is not None and v != '' and (type(v) not in C or v): {target}[{key!r}] = v")

    lines.append("    d = {}")
    emit(tree, "d", "    ")
    lines.append("    return d")
    namespace: dict[str, Any] = {"C": _CONTAINERS, "dig": _dig}
    namespace.update({f"g{index}": rule.get for index, rule in enumerate(rules)})
    exec(compile("\n".join(lines), "<mapping>", "exec"), namespace)
    built: Callable[[Context], dict[str, Any]] = namespace["build"]
    return built


def _dig(value: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        if type(value) is not dict:
            return None
        value = value.get(part)
        if value is None:
            return None
    return value
