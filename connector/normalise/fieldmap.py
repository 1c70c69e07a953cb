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

from connector.core.errors import ConfigError

Context = Mapping[str, Any]
Getter = Callable[[Context], Any]


@lru_cache(maxsize=1024)
def iso8601_datetime(value: datetime) -> str:
    # Cached: a scan stamps all its findings with the same few instants.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _iso8601(value: Any) -> Any:
    return iso8601_datetime(value) if isinstance(value, datetime) else value


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


@dataclass(frozen=True)
class Source:
    """One right-hand side of a mapping file, parsed and validated."""

    paths: tuple[str, ...] = ()
    constant: Any = None
    is_constant: bool = False
    table: Mapping[str, Any] | None = None
    transform: Callable[[Any], Any] | None = None
    default: Any = None

    @property
    def single_path(self) -> str | None:
        return self.paths[0] if len(self.paths) == 1 else None


def parse_source(spec: Any, lookups: Mapping[str, Mapping[str, Any]], where: str) -> Source:
    """Validate one right-hand side; ``where`` names it in error messages."""
    if isinstance(spec, str):
        return Source(paths=(spec,))
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a source path or a mapping, got {spec!r}")
    unknown = set(spec) - {"value", "from", "lookup", "transform", "default"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    if "value" in spec:
        return Source(constant=spec["value"], is_constant=True)
    sources = spec.get("from")
    paths = [sources] if isinstance(sources, str) else sources
    if not paths or not all(isinstance(path, str) for path in paths):
        raise ConfigError(f"{where}: 'from' must be a path or a list of paths")
    table = None
    if "lookup" in spec:
        if spec["lookup"] not in lookups:
            raise ConfigError(f"{where}: unknown lookup {spec['lookup']!r} (defined: {sorted(lookups)})")
        table = lookups[spec["lookup"]]
    transform = None
    if "transform" in spec:
        if spec["transform"] not in TRANSFORMS:
            raise ConfigError(f"{where}: unknown transform {spec['transform']!r} (known: {sorted(TRANSFORMS)})")
        transform = TRANSFORMS[spec["transform"]]
    return Source(tuple(paths), table=table, transform=transform, default=spec.get("default"))


def getter(source: Source) -> Getter:
    if source.is_constant:
        constant = source.constant
        return lambda _context: constant
    getters = [_path_getter(path) for path in source.paths]
    if len(getters) == 1 and source.table is None and source.transform is None and source.default is None:
        return getters[0]

    def get(context: Context) -> Any:
        value = None
        for path_getter in getters:
            value = path_getter(context)
            if not is_empty(value):
                break
        if is_empty(value):
            return source.default
        if source.table is not None:
            value = source.table.get(str(value), source.default)
        if source.transform is not None and value is not None:
            value = source.transform(value)
        return value

    return get


def compile_source(spec: Any, lookups: Mapping[str, Mapping[str, Any]], where: str) -> Getter:
    return getter(parse_source(spec, lookups, where))


@dataclass(frozen=True)
class FieldRule:
    target: str
    path: tuple[str, ...]
    source: Source


def compile_fields(
    fields: Mapping[str, Any], lookups: Mapping[str, Mapping[str, Any]], where: str
) -> list[FieldRule]:
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{where}: 'fields' must be a mapping of target field to source")
    return [
        FieldRule(str(target), tuple(str(target).split(".")), parse_source(spec, lookups, f"{where}: {target}"))
        for target, spec in fields.items()
    ]


_SELF = "\x00self"  # marks an object-valued field that also has fields mapped inside it


def compile_document(rules: list[FieldRule]) -> Callable[[Context], dict[str, Any]]:
    """Generate one function that builds the nested document for all ``rules``.

    Normalising is on the shipping hot path (every event, tens of thousands a second in a backlog), so the
    mapping is turned into straight-line Python once: paths become inline dict lookups, lookups and transforms
    are inlined, nested objects are built directly instead of walked per field, and empty values are skipped.
    """
    return _DocumentCompiler(rules).compile()


class _DocumentCompiler:
    def __init__(self, rules: list[FieldRule]) -> None:
        self.rules = rules
        self.lines = ["def build(ctx):"]
        self.namespace: dict[str, Any] = {"C": _CONTAINERS}
        self.names = iter(range(10**6))

    def compile(self) -> Callable[[Context], dict[str, Any]]:
        tree = self._tree()
        roots = sorted({path.split(".", 1)[0] for rule in self.rules
                        if (path := rule.source.single_path) and "." in path})
        self.lines += [f"    r_{name} = ctx.get({name!r})" for name in roots]
        self.lines.append("    d = {}")
        self._emit(tree, "d", "    ")
        self.lines.append("    return d")
        exec(compile("\n".join(self.lines), "<mapping>", "exec"), self.namespace)
        built: Callable[[Context], dict[str, Any]] = self.namespace["build"]
        return built

    def _tree(self) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        for index, rule in enumerate(self.rules):
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
        return tree

    def _emit(self, node: dict[str, Any], target: str, indent: str) -> None:
        for key, child in node.items():
            if key == _SELF:
                continue
            if isinstance(child, dict):
                name = f"d{next(self.names)}"
                self.lines.append(f"{indent}{name} = {{}}")
                self._emit(child, name, indent)
                if _SELF in child:
                    self._load(child[_SELF], indent)
                    self.lines.append(f"{indent}if type(v) is dict: {name} = {{**v, **{name}}}")
                self.lines.append(f"{indent}if {name}: {target}[{key!r}] = {name}")
            else:
                self._load(child, indent)
                self.lines.append(
                    f"{indent}if v is not None and v != '' and (type(v) not in C or v): {target}[{key!r}] = v")

    def _load(self, index: int, indent: str) -> None:
        """Lines that leave the rule's value in ``v``: inline for one path, a getter call for several."""
        source = self.rules[index].source
        path = source.single_path
        if source.is_constant:
            self.namespace[f"K{index}"] = source.constant
            self.lines.append(f"{indent}v = K{index}")
            return
        if path is None:
            self.namespace[f"g{index}"] = getter(source)
            self.lines.append(f"{indent}v = g{index}(ctx)")
            return
        self.lines.extend(indent + line for line in _path_lines(path))
        if source.table is None and source.transform is None and source.default is None:
            return
        self.namespace[f"D{index}"] = source.default
        self.lines.append(f"{indent}if v is None or v == '' or (type(v) in C and not v): v = D{index}")
        if source.table is not None:
            self.namespace[f"L{index}"] = source.table
            self.lines.append(f"{indent}else: v = L{index}.get(str(v), D{index})")
        if source.transform is not None:
            self.namespace[f"T{index}"] = source.transform
            self.lines.append(f"{indent}if v is not None: v = T{index}(v)")


def _path_lines(path: str) -> list[str]:
    head, *rest = path.split(".")
    if not rest:
        return [f"v = ctx.get({head!r})"]
    lines = [f"v = r_{head}.get({rest[0]!r}) if type(r_{head}) is dict else None"]
    lines += [f"v = v.get({part!r}) if type(v) is dict else None" for part in rest[1:]]
    return lines
