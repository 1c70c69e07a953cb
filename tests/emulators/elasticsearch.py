"""A strict, in-process Elasticsearch 8.x/9.x REST emulator for tests that drive the real ``elasticsearch`` client.

Elasticsearch cannot run in the test environment, and a lenient fake would let the connector pass tests that a real
cluster fails. This emulator therefore answers the way a single-node cluster with security enabled does, as far as
the public documentation and the Elasticsearch sources show it:

* every answer carries ``X-Elastic-Product: Elasticsearch`` (the client's product check) and mirrors a requested
  ``compatible-with=N`` media type; a compatible-with version the server does not support is refused with
  ``media_type_header_exception``, like a 9.x client against an 8.x cluster;
* requests are authenticated (``ApiKey`` or ``Basic``) and refused with 401 ``security_exception``;
* ``_bulk`` bodies are parsed the way ``BulkRequestParser`` does (9.x messages), documents are checked against the
  mappings of the matching composable index template (component templates in ``composed_of`` order, then the
  template's own), dynamic mapping and dynamic templates apply, and each item gets its own status and error;
* data streams are auto-created from index templates with ``data_stream: {}``; the built-in ``logs`` template
  (``logs-*-*``, priority 100, composed of ``logs@mappings``, ``logs@settings``, ``ecs@mappings``) exists from the
  start, including its ``ignore_malformed`` setting and its ``logs@default-pipeline`` that fills a missing
  ``@timestamp`` - the one ingest processor emulated;
* search is near-real-time: documents become visible after a refresh (``refresh`` parameter, ``_refresh`` API or
  the ``index.refresh_interval``, 1 s by default), exactly as tests against a real cluster must expect.

Credentials accepted (see ``ElasticsearchEmulator.__init__``): ``Authorization: ApiKey <v>`` where ``<v>`` is one of
``api_keys`` verbatim or the base64 encoding of one (so ``api_key=("id", "secret")`` works when ``"id:secret"`` is
listed, as the client base64-encodes a tuple), and ``Authorization: Basic base64(user:password)`` from ``users``.

Sources: the Bulk API reference (elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk), the data stream
and template guides (elastic.co/docs/manage-data/data-store/...), ``BulkRequestParser`` and its tests, the
``x-pack/plugin/core/template-resources`` JSON files and ``elasticsearch-py``'s ``_base.py`` and ``helpers``.
Where a message could not be found in a public source it is marked "inferred" next to the code.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import datetime as dt
import functools
import gzip
import ipaddress
import json
import re
import secrets
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["ElasticsearchEmulator"]

JSON = dict[str, Any]

_DEFAULT_USERS: Mapping[str, str] = MappingProxyType({"elastic": "changeme-please"})

# ---------------------------------------------------------------------------------------------------------------
# Errors in the shape Elasticsearch renders them:
# {"error": {"root_cause": [...], "type": ..., "reason": ..., ...}, "status": N}
# ---------------------------------------------------------------------------------------------------------------


class EsError(Exception):
    """An Elasticsearch exception: rendered as a whole-request error body or as a bulk item's ``error``."""

    def __init__(
        self,
        status: int,
        error_type: str,
        reason: str,
        *,
        extra: Mapping[str, Any] | None = None,
        caused_by: Mapping[str, Any] | None = None,
        headers: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.extra = dict(extra or {})
        self.caused_by = dict(caused_by) if caused_by else None
        self.headers = dict(headers or {})

    def cause(self) -> JSON:
        """The error object without ``root_cause``: what a bulk item carries under ``error``."""
        out: JSON = {"type": self.error_type, "reason": self.reason, **self.extra}
        if self.headers:
            out["header"] = {name: values[0] if len(values) == 1 else values for name, values in self.headers.items()}
        if self.caused_by:
            out["caused_by"] = self.caused_by
        return out

    def body(self) -> JSON:
        root = {k: v for k, v in self.cause().items() if k != "caused_by"}
        return {"error": {"root_cause": [root], **self.cause()}, "status": self.status}


class _PlainError(EsError):
    """Errors the REST layer renders as a bare string (406 content type, unknown route, wrong method)."""

    def body(self) -> JSON:
        return {"error": self.reason, "status": self.status}


class _NotFoundEmpty(EsError):
    """``GET _ingest/pipeline/<missing>`` answers 404 with an empty object, not an error body."""

    def body(self) -> JSON:
        return {}


def _index_not_found(name: str, resource_type: str = "index_or_alias") -> EsError:
    return EsError(
        404,
        "index_not_found_exception",
        f"no such index [{name}]",
        extra={"resource.type": resource_type, "resource.id": name, "index_uuid": "_na_", "index": name},
    )


def _validation_failed(messages: Iterable[str]) -> EsError:
    text = "".join(f"{n}: {m};" for n, m in enumerate(messages, 1))
    return EsError(400, "action_request_validation_exception", f"Validation Failed: {text}")


def _method_not_allowed(req: _Request, methods: tuple[str, ...]) -> _PlainError:
    """The REST layer's 405 for a path that exists with other methods."""
    allowed = ", ".join(sorted(methods))
    return _PlainError(405, "illegal_argument_exception",
                       f"Incorrect HTTP method for uri [{req.raw_path}] and method [{req.method}], "
                       f"allowed: [{allowed}]")


def _illegal(reason: str, status: int = 400) -> EsError:
    return EsError(status, "illegal_argument_exception", reason)


# ---------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """Elasticsearch's ``Regex.simpleMatch``: ``*`` is the only wildcard."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _simple_match(pattern: str, value: str) -> bool:
    if "*" not in pattern:
        return pattern == value
    return _wildcard(pattern).fullmatch(value) is not None


def _patterns(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso_millis(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _uuid() -> str:
    """Elasticsearch UUIDs and auto-generated ``_id`` values are 20-22 URL-safe base64 characters."""
    return base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()


def _truthy(value: str | None, *, default: bool = False) -> bool:
    """Boolean query parameters: a bare ``?refresh`` means true, as in Elasticsearch."""
    if value is None:
        return default
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    raise _illegal(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")


def _parse_interval(value: Any) -> float | None:
    """``index.refresh_interval``: ``1s``, ``500ms``, ``-1`` (never)."""
    text = str(value).strip()
    if text in ("-1", "-1s"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(nanos|micros|ms|s|m|h|d)?", text)
    if not match:
        return 1.0
    number = float(match.group(1))
    factor = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    return number * factor[match.group(2) or "ms"]


def _flatten_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten_settings(value, name + "."))
        else:
            flat[name] = value
    if prefix:
        return flat
    return {key if key.startswith("index.") else f"index.{key}": value for key, value in flat.items()}


def _java_text(value: Any) -> str:
    """How a parsed JSON value prints in Java (``Map.toString``), as in the "Preview of field's value"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_java_text(v) for v in value) + "]"
    return str(value)


_WS = re.compile(r"[ \t\n\r]*")
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_DECODER = json.JSONDecoder()


def _locate(text: str, jpath: list[str | int]) -> tuple[int, int]:
    """Start and end offsets of the JSON value at ``jpath`` in ``text``.

    Elasticsearch prefixes document errors with the parser's token location ``[line:column]``; a bulk source is one
    line, so only the column is needed. Called on the error path only, so the hot path never tracks positions.
    """
    try:
        idx = _WS.match(text, 0).end()  # type: ignore[union-attr]
        for step in jpath:
            if isinstance(step, int):
                idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
                for _ in range(step):
                    _, idx = _DECODER.raw_decode(text, idx)
                    idx = _WS.match(text, idx).end() + 1  # type: ignore[union-attr]
                    idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
                continue
            found: int | None = None
            idx += 1
            while True:
                idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
                if text[idx] == "}":
                    break
                key, idx = _scanstring(text, idx + 1)
                idx = _WS.match(text, idx).end() + 1  # type: ignore[union-attr]
                idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
                if key == step:
                    found = idx  # the last duplicate wins, as in json.loads
                _, idx = _DECODER.raw_decode(text, idx)
                idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
                if text[idx] == ",":
                    idx += 1
            if found is None:
                return 0, len(text)
            idx = found
        _, end = _DECODER.raw_decode(text, idx)
    except (ValueError, IndexError, AttributeError):
        return 0, len(text.rstrip())
    return idx, end


# ---------------------------------------------------------------------------------------------------------------
# Field value checks (DocumentParser / FieldMapper behaviour)
# ---------------------------------------------------------------------------------------------------------------

Problem = tuple[str, str] | None

_INTEGER_RANGES = {
    "long": (-(2**63), 2**63 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-(2**7), 2**7 - 1),
    "unsigned_long": (0, 2**64 - 1),
}
_FLOAT_TYPES = frozenset({"float", "double", "half_float", "scaled_float"})
_OBJECT_TYPES = frozenset({"object", "nested"})
# Types whose value shapes are too rich to check here (objects, arrays of numbers, vectors...): accepted as given.
_OPAQUE_TYPES = frozenset(
    {"flattened", "geo_point", "geo_shape", "point", "shape", "dense_vector", "sparse_vector", "rank_features",
     "percolator", "join", "histogram", "aggregate_metric_double", "passthrough", "semantic_text", "completion",
     "binary", "integer_range", "float_range", "long_range", "double_range", "date_range", "ip_range"}
)
# FieldMapper types that honour ignore_malformed (index.mapping.ignore_malformed sets the default).
_IGNORE_MALFORMED_TYPES = frozenset({*_INTEGER_RANGES, *_FLOAT_TYPES, "date", "date_nanos", "ip", "boolean"})

# strict_date_optional_time (and epoch_millis for numbers); enough to tell a date from a non-date.
_ISO_DATE = re.compile(
    r"[+-]?\d{4,9}(?:-(\d{2})(?:-(\d{2})(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,]\d{1,9})?)?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)
_DATE_DETECTION = re.compile(r"\d{4}[-/]\d{2}[-/]\d{2}(?:[T ].*)?")
_EPOCH = re.compile(r"-?\d+(?:\.\d+)?")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _valid_iso(text: str) -> bool:
    match = _ISO_DATE.fullmatch(text)
    if match is None:
        return False
    month, day, hour, minute, second = (int(g) if g else None for g in match.groups())
    return (
        (month is None or 1 <= month <= 12)
        and (day is None or 1 <= day <= 31)
        and (hour is None or hour <= 23)
        and (minute is None or minute <= 59)
        and (second is None or second <= 59)
    )


def _check_integer(value: Any, spec: JSON) -> Problem:
    low, high = _INTEGER_RANGES[spec["type"]]
    if isinstance(value, bool):
        return "illegal_argument_exception", f"Current token ({'VALUE_TRUE' if value else 'VALUE_FALSE'}) not numeric"
    number: int | None
    if isinstance(value, float):
        number = int(value)  # coerce: true truncates
    elif isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = int(float(text)) if _DECIMAL.fullmatch(text) else None
            except (ValueError, OverflowError):
                number = None
    if number is None:
        # inferred from AbstractXContentParser.toLong: IllegalArgumentException("For input string: ...")
        return "illegal_argument_exception", f'For input string: "{value}"'
    if not low <= number <= high:
        return "illegal_argument_exception", f"Value [{value}] is out of range for {spec['type'].replace('_', ' ')}"
    return None


def _check_float(value: Any, spec: JSON) -> Problem:
    if isinstance(value, bool):
        return "illegal_argument_exception", f"Current token ({'VALUE_TRUE' if value else 'VALUE_FALSE'}) not numeric"
    if isinstance(value, int | float):
        return None
    text = str(value).strip()
    if not _DECIMAL.fullmatch(text):
        return "number_format_exception", f'For input string: "{value}"'
    return None


_ISO_FORMATS = frozenset({"strict_date_optional_time", "date_optional_time", "strict_date_time", "date_time",
                          "strict_date_optional_time_nanos", "strict_date", "date", "strict_date_hour_minute_second"})


@functools.lru_cache(maxsize=65536)
def _date_text_ok(text: str, fmt: str) -> bool:
    for one in fmt.split("||"):
        if one in _ISO_FORMATS:
            ok = _valid_iso(text)
        elif one in ("epoch_millis", "epoch_second"):
            ok = _EPOCH.fullmatch(text) is not None
        else:
            ok = bool(text)  # custom java-time patterns are not interpreted: any non-empty string passes
        if ok:
            return True
    return False


def _check_date(value: Any, spec: JSON) -> Problem:
    fmt = str(spec.get("format") or "strict_date_optional_time||epoch_millis")
    if isinstance(value, bool):
        ok = False
    elif isinstance(value, int | float):
        ok = "epoch_" in fmt
    else:
        ok = _date_text_ok(str(value), fmt)
    if ok:
        return None
    return "illegal_argument_exception", f"failed to parse date field [{value}] with format [{fmt}]"


@functools.lru_cache(maxsize=65536)
def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _check_ip(value: Any, spec: JSON) -> Problem:
    if isinstance(value, str) and _ip_ok(value):
        return None
    return "illegal_argument_exception", f"'{_java_text(value)}' is not an IP string literal."


def _check_boolean(value: Any, spec: JSON) -> Problem:
    if isinstance(value, bool) or value in ("true", "false", ""):
        return None
    return "illegal_argument_exception", (
        f"Failed to parse value [{_java_text(value)}] as only [true] or [false] are allowed."
    )


def _check_text(value: Any, spec: JSON) -> Problem:
    return None  # scalars of any JSON type are indexed as their text


_CHECKS: dict[str, Callable[[Any, JSON], Problem]] = {
    **dict.fromkeys(_INTEGER_RANGES, _check_integer),
    **dict.fromkeys(_FLOAT_TYPES, _check_float),
    "date": _check_date,
    "date_nanos": _check_date,
    "ip": _check_ip,
    "boolean": _check_boolean,
    **dict.fromkeys(
        ("keyword", "text", "match_only_text", "wildcard", "version", "search_as_you_type", "annotated_text",
         "constant_keyword", "counted_keyword", "pattern_text"),
        _check_text,
    ),
}

_ANY_SCALAR = frozenset(t for t, check in _CHECKS.items() if check is _check_text and t != "constant_keyword")
_SCALARS = frozenset({str, int, float, bool})
_DYNAMIC_DEFAULTS = {"string": "text", "long": "long", "double": "float", "boolean": "boolean", "date": "date",
                     "object": "object"}


class _Dotted(dict[str, Any]):
    """An object synthesised from a dotted field name (``{"a.b": 1}`` is ``{"a": {"b": 1}}``): not in the raw text."""


class _DocFailure(Exception):
    """A document failed to parse. ``jpath`` (raw JSON keys) is filled while unwinding, so the hot path is free."""

    def __init__(
        self, error_type: str, message: str, *, caused_by: Problem = None, anchor: str = "start",
        located: bool = True,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.caused_by = caused_by
        self.anchor = anchor
        self.located = located
        self.jpath: list[str | int] = []

    def to_error(self, raw: bytes | str) -> EsError:
        if not self.located:
            return EsError(400, self.error_type, self.message)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        start, end = _locate(text, self.jpath)
        column = end if self.anchor == "end" else start + 1
        caused = None
        if self.caused_by:
            caused = {"type": self.caused_by[0], "reason": self.caused_by[1].replace("{start}", str(start + 1))}
        return EsError(400, self.error_type, f"[1:{column}] {self.message}", caused_by=caused)


# ---------------------------------------------------------------------------------------------------------------
# Mappings
# ---------------------------------------------------------------------------------------------------------------


class _Mapping:
    """An index's mapping, flattened to ``full.path -> field spec`` so lookups on the hot path are one dict get."""

    def __init__(self, sources: Iterable[Mapping[str, Any]], settings: Mapping[str, Any]) -> None:
        self.fields: dict[str, JSON] = {}
        self.templates: list[tuple[str, JSON]] = []
        self.date_detection = True
        self.numeric_detection = False
        self.dynamic = "true"
        self.meta: JSON | None = None
        for source in sources:
            self.merge(source)
        self.ignore_malformed = str(settings.get("index.mapping.ignore_malformed", "false")).lower() == "true"

    def merge(self, mapping: Mapping[str, Any]) -> None:
        if not mapping:
            return
        if "dynamic" in mapping:
            self.dynamic = str(mapping["dynamic"]).lower()
        if "date_detection" in mapping:
            self.date_detection = bool(mapping["date_detection"])
        if "numeric_detection" in mapping:
            self.numeric_detection = bool(mapping["numeric_detection"])
        if "_meta" in mapping:
            self.meta = dict(mapping["_meta"])
        for entry in mapping.get("dynamic_templates") or []:
            for name, template in entry.items():
                self.templates = [(n, t) for n, t in self.templates if n != name]
                self.templates.append((name, dict(template)))
        self._flatten(mapping.get("properties") or {}, "")

    def _flatten(self, properties: Mapping[str, Any], prefix: str) -> None:
        for name, given in properties.items():
            path = prefix + name
            parts = path.split(".")
            for depth in range(1, len(parts)):
                self.fields.setdefault(".".join(parts[:depth]), {"type": "object"})
            spec = dict(given)
            children = spec.pop("properties", None)
            spec.setdefault("type", "object")
            if "dynamic" in spec:
                spec["dynamic"] = str(spec["dynamic"]).lower()
            self.fields[path] = {**self.fields.get(path, {}), **spec}
            if children and spec["type"] in _OBJECT_TYPES:
                self._flatten(children, path + ".")

    def find_template(self, path: str, name: str, json_type: str) -> JSON | None:
        """The first dynamic template matching a new field (match / unmatch / path_match / match_mapping_type)."""
        for _, template in self.templates:
            mapping = template.get("mapping")
            if not isinstance(mapping, dict):
                continue  # runtime templates are not emulated
            kinds = _patterns(template.get("match_mapping_type"))
            if kinds and "*" not in kinds and json_type not in kinds:
                continue
            if json_type in _patterns(template.get("unmatch_mapping_type")):
                continue
            if json_type == "object" and not kinds and mapping.get("type") not in (
                None, "object", "nested", "flattened", "{dynamic_type}"):
                continue  # inferred: a template that maps a scalar type does not turn objects into leaves
            regex = template.get("match_pattern") == "regex"

            def hit(patterns: list[str], value: str, regex: bool = regex) -> bool:
                if regex:
                    return any(re.fullmatch(p, value) for p in patterns)
                return any(_simple_match(p, value) for p in patterns)

            if "match" in template and not hit(_patterns(template["match"]), name):
                continue
            if "unmatch" in template and hit(_patterns(template["unmatch"]), name):
                continue
            if "path_match" in template and not hit(_patterns(template["path_match"]), path):
                continue
            if "path_unmatch" in template and hit(_patterns(template["path_unmatch"]), path):
                continue
            spec: JSON = json.loads(
                json.dumps(mapping).replace("{name}", name).replace("{dynamic_type}", _DYNAMIC_DEFAULTS[json_type]))
            spec.setdefault("type", _DYNAMIC_DEFAULTS[json_type])
            spec.pop("properties", None)
            return spec
        return None

    def to_json(self) -> JSON:
        """The nested mapping as ``GET <index>/_mapping`` shows it."""
        root: JSON = {}
        if self.templates:
            root["dynamic_templates"] = [{n: t} for n, t in self.templates]
        if not self.date_detection:
            root["date_detection"] = False
        if self.dynamic != "true":
            root["dynamic"] = self.dynamic
        if self.meta:
            root["_meta"] = self.meta
        props: JSON = {}
        for path in sorted(self.fields, key=lambda p: p.count(".")):
            parts = path.split(".")
            node = props
            for part in parts[:-1]:
                node = node.setdefault(part, {}).setdefault("properties", {})
            spec = dict(self.fields[path])
            if spec.get("type") == "object":
                spec.pop("type")
            node[parts[-1]] = {**spec, **node.get(parts[-1], {})}
        if props:
            root["properties"] = props
        return root


# ---------------------------------------------------------------------------------------------------------------
# Stored state
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class StoredDocument:
    """One stored document plus the metadata the emulator records about it."""

    index: str
    id: str
    source: JSON
    version: int
    seq_no: int
    pipelines: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


@dataclass
class _Index:
    name: str
    mapping: _Mapping
    settings: dict[str, Any]
    data_stream: str | None = None
    uuid: str = field(default_factory=_uuid)
    created: dt.datetime = field(default_factory=_now)
    docs: dict[str, StoredDocument] = field(default_factory=dict)
    tombstones: dict[str, int] = field(default_factory=dict)
    seq_no: int = -1
    visible: dict[str, StoredDocument] = field(default_factory=dict)
    dirty: bool = False
    last_write: float = 0.0

    @property
    def replicas(self) -> int:
        return int(self.settings.get("index.number_of_replicas", 1))

    @property
    def refresh_interval(self) -> float | None:
        return _parse_interval(self.settings.get("index.refresh_interval", "1s"))

    def refresh(self) -> None:
        if self.dirty:
            self.visible = dict(self.docs)
            self.dirty = False

    def searchable(self) -> dict[str, StoredDocument]:
        """Near-real-time view: writes show up after a refresh or once the refresh interval has passed."""
        interval = self.refresh_interval
        if self.dirty and interval is not None and time.monotonic() - self.last_write >= interval:
            self.refresh()
        return self.visible

    def settings_json(self) -> JSON:
        out: JSON = {}
        for key, value in {"index.number_of_shards": "1", "index.number_of_replicas": "1", **self.settings}.items():
            node = out
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = str(value).lower() if isinstance(value, bool) else str(value)
        out["index"].update({"uuid": self.uuid, "provided_name": self.name,
                             "creation_date": str(int(self.created.timestamp() * 1000))})
        return out


@dataclass
class _DataStream:
    name: str
    template: str
    indices: list[_Index]
    created: dt.datetime = field(default_factory=_now)

    @property
    def write_index(self) -> _Index:
        return self.indices[-1]

    def to_json(self, templates: Mapping[str, JSON]) -> JSON:
        policy = self.write_index.settings.get("index.lifecycle.name")
        managed = "Index Lifecycle Management" if policy else "Unmanaged"
        status = "YELLOW" if any(i.replicas for i in self.indices) else "GREEN"
        out: JSON = {
            "name": self.name,
            "timestamp_field": {"name": "@timestamp"},
            "indices": [
                {"index_name": i.name, "index_uuid": i.uuid, "prefer_ilm": True, "managed_by": managed,
                 **({"ilm_policy": policy} if policy else {})}
                for i in self.indices
            ],
            "generation": len(self.indices),
            "status": status,
            "template": self.template,
            "next_generation_managed_by": managed,
            "prefer_ilm": True,
            "hidden": False,
            "system": False,
            "allow_custom_routing": False,
            "replicated": False,
            "rollover_on_write": False,
        }
        meta = templates.get(self.template, {}).get("_meta")
        if meta:
            out["_meta"] = meta
        if policy:
            out["ilm_policy"] = policy
        return out


# Built-in templates of a default 9.x cluster, trimmed to what matters for writes
# (x-pack/plugin/core/template-resources/src/main/resources/logs@*.json, ecs@mappings.json).
_BUILTIN_META = {"managed": True}
_BUILTIN_COMPONENTS: dict[str, JSON] = {
    "logs@mappings": {
        "template": {"mappings": {
            "date_detection": False,
            "properties": {
                "@timestamp": {"type": "date"},
                "data_stream.type": {"type": "constant_keyword", "value": "logs"},
                "data_stream.dataset": {"type": "constant_keyword"},
                "data_stream.namespace": {"type": "constant_keyword"},
            },
        }},
        "version": 1,
        "_meta": {"description": "default mappings for the logs index template installed by x-pack", **_BUILTIN_META},
    },
    "logs@settings": {
        "template": {"settings": {"index": {
            "lifecycle": {"name": "logs@lifecycle"},
            "codec": "best_compression",
            "mapping": {"ignore_malformed": True, "total_fields": {"ignore_dynamic_beyond_limit": True}},
            "default_pipeline": "logs@default-pipeline",
        }}},
        "version": 1,
        "_meta": {"description": "default settings for the logs index template installed by x-pack", **_BUILTIN_META},
    },
    "ecs@mappings": {
        "template": {"mappings": {"dynamic_templates": [
            {"ecs_timestamp": {"mapping": {"ignore_malformed": False, "type": "date"}, "match": "@timestamp"}},
            {"ecs_message_match_only_text": {"mapping": {"type": "match_only_text"},
                                             "path_match": ["message", "*.message"]}},
            {"ecs_ip": {"mapping": {"type": "ip"}, "path_match": ["ip", "*.ip", "*_ip"],
                        "match_mapping_type": "string"}},
            {"ecs_wildcard": {"mapping": {"type": "wildcard"},
                              "path_match": ["*.io.text", "*.message_id", "*registry.data.strings", "*url.path"]}},
            {"ecs_path_match_wildcard_and_match_only_text": {
                "mapping": {"fields": {"text": {"type": "match_only_text"}}, "type": "wildcard"},
                "path_match": ["*.body.content", "*url.full", "*url.original"]}},
            {"ecs_match_wildcard_and_match_only_text": {
                "mapping": {"fields": {"text": {"type": "match_only_text"}}, "type": "wildcard"},
                "match": ["*command_line", "*stack_trace"]}},
            {"ecs_path_match_keyword_and_match_only_text": {
                "mapping": {"fields": {"text": {"type": "match_only_text"}}, "type": "keyword"},
                "path_match": ["*.title", "*.executable", "*.name", "*.working_directory", "*.full_name",
                               "*file.path", "*file.target_path", "*os.full", "email.subject",
                               "vulnerability.description", "user_agent.original"]}},
            {"ecs_date": {"mapping": {"type": "date"},
                          "path_match": ["*.timestamp", "*_timestamp", "*.not_after", "*.not_before", "*.accessed",
                                         "created", "*.created", "*.installed", "*.creation_date", "*.ctime",
                                         "*.mtime", "ingested", "*.ingested", "*.start", "*.end"]}},
            {"ecs_path_match_float": {"mapping": {"type": "float"}, "path_match": ["*.score.*", "*_score*"],
                                      "path_unmatch": "*.version"}},
            {"ecs_usage_double_scaled_float": {"mapping": {"type": "scaled_float", "scaling_factor": 1000},
                                               "path_match": "*.usage", "match_mapping_type": "double"}},
            {"ecs_usage_long_scaled_float": {"mapping": {"type": "scaled_float", "scaling_factor": 1000},
                                             "path_match": "*.usage", "match_mapping_type": "long"}},
            {"ecs_geo_point": {"mapping": {"type": "geo_point"}, "path_match": ["location", "*.location"]}},
            {"ecs_flattened": {"mapping": {"type": "flattened"},
                               "path_match": ["*structured_data", "*exports", "*imports"]}},
            {"all_strings_to_keywords": {"mapping": {"ignore_above": 1024, "type": "keyword"},
                                         "match_mapping_type": "string"}},
        ]}},
        "version": 1,
        "_meta": {"description": "dynamic mappings based on ECS, installed by x-pack", **_BUILTIN_META},
    },
}
_BUILTIN_TEMPLATES: dict[str, JSON] = {
    "logs": {
        "index_patterns": ["logs-*-*"],
        "composed_of": ["logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"],
        "priority": 100,
        "version": 1,
        "_meta": {"description": "default logs template installed by x-pack", **_BUILTIN_META},
        "data_stream": {"hidden": False, "allow_custom_routing": False},
        "allow_auto_create": True,
        "ignore_missing_component_templates": ["logs@custom"],
    },
}
_BUILTIN_PIPELINES: dict[str, JSON] = {
    "logs@default-pipeline": {
        "processors": [
            {"set": {"description": "If '@timestamp' is missing, set it with the ingest timestamp",
                     "field": "@timestamp", "override": False, "copy_from": "_ingest.timestamp"}},
            {"pipeline": {"name": "logs@custom", "ignore_missing_pipeline": True}},
        ],
        "_meta": {"description": "default pipeline for the logs index template installed by x-pack", **_BUILTIN_META},
        "version": 1,
    },
}
_BUILTIN_POLICIES: dict[str, JSON] = {
    "logs@lifecycle": {"phases": {"hot": {"min_age": "0ms", "actions": {
        "rollover": {"max_primary_shard_size": "50gb", "max_age": "30d"}}}},
        "_meta": {"description": "default policy for the logs index template installed by x-pack", **_BUILTIN_META}},
}

_INDEX_TEMPLATE_FIELDS = frozenset({"index_patterns", "composed_of", "template", "priority", "version", "_meta",
                                    "data_stream", "allow_auto_create", "ignore_missing_component_templates",
                                    "deprecated"})
_COMPONENT_TEMPLATE_FIELDS = frozenset({"template", "version", "_meta", "deprecated"})
_BULK_META_FIELDS = frozenset({"_index", "_id", "routing", "op_type", "version", "version_type", "if_seq_no",
                               "if_primary_term", "retry_on_conflict", "pipeline", "_source", "require_alias",
                               "require_data_stream", "dynamic_templates", "list_executed_pipelines"})
_UPDATE_FIELDS = frozenset({"doc", "upsert", "doc_as_upsert", "script", "scripted_upsert", "detect_noop", "_source"})
_ACTIONS = ("create", "delete", "index", "update")
_CREATE_ONLY = "only write ops with an op_type of create are allowed in data streams"
_COMMON_PARAMS = frozenset({"pretty", "human", "error_trace", "filter_path", "format"})
_INVALID_NAME_CHARS = frozenset(' "*\\<|,>/?')


def _token_name(value: Any) -> str:
    """XContentParser token names used in BulkRequestParser messages."""
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if value is None:
        return "VALUE_NULL"
    return "VALUE_NUMBER"


def _invalid_index_name(name: str) -> str | None:
    """MetadataCreateIndexService.validateIndexOrAliasName, the message after "Invalid index name [x], "."""
    if name != name.lower():
        return "must be lowercase"
    if any(ch in _INVALID_NAME_CHARS for ch in name):
        return 'must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?]'
    if "#" in name:
        return "must not contain '#'"
    if ":" in name:
        return "must not contain ':'"
    if name.startswith(("_", "-", "+")):
        return "must not start with '_', '-', or '+'"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    if len(name.encode()) > 255:
        return f"index name is too long, ({len(name.encode())} > 255)"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Requests and replies
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Request:
    method: str
    raw_path: str
    segments: list[str]
    params: dict[str, str]
    headers: Mapping[str, str]
    body: bytes

    def json(self, *, required: bool = False) -> Any:
        if not self.body.strip():
            if required:
                raise EsError(400, "parse_exception", "request body is required")
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            text = self.body.decode("utf-8", "replace")
            line = text.count("\n", 0, getattr(exc, "pos", 0)) + 1
            raise EsError(400, "x_content_parse_exception",
                          f"[{line}:{getattr(exc, 'colno', 1)}] {getattr(exc, 'msg', str(exc))}") from None

    def object(self, *, required: bool = True) -> JSON:
        body = self.json(required=required)
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise EsError(400, "x_content_parse_exception",
                          f"[1:1] Expected START_OBJECT but found {_token_name(body)}")
        return body


@dataclass
class _Reply:
    status: int
    body: Any = None  # JSON-able; None for HEAD-style empty answers
    raw: bytes | None = None
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False
    product_header: bool = True


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 413: "Request Entity Too Large",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}

_FAULT_DEFAULTS = {
    429: ("es_rejected_execution_exception",
          "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, "
          "all_bytes=0, coordinating_operation_bytes=1048576, max_coordinating_and_primary_bytes=0]"),
    503: ("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];"),
    500: ("exception", "internal error injected by the test"),
}


def _filter_path(body: Any, spec: str) -> Any:
    """The ``filter_path`` response filter: comma-separated dotted paths, ``*`` within a name, ``**`` at any depth,
    a leading ``-`` to exclude. Arrays are transparent and empty objects are dropped, as Elasticsearch does."""
    includes = [p.split(".") for p in spec.split(",") if p and not p.startswith("-")]
    excludes = [p[1:].split(".") for p in spec.split(",") if p.startswith("-")]

    def keep(node: Any, paths: list[list[str]], exclude: bool) -> Any:
        if isinstance(node, list):
            kept = [keep(item, paths, exclude) for item in node]
            return [k for k in kept if k is not _DROP]
        if not isinstance(node, dict):
            return _DROP if not exclude and not any(not p for p in paths) else node
        out = {}
        for key, value in node.items():
            nxt: list[list[str]] = []
            full = False
            for path in paths:
                if not path:
                    full = True
                    continue
                head, rest = path[0], path[1:]
                if head == "**":
                    nxt.append(path)
                    if rest and _simple_match(rest[0], key):
                        nxt.append(rest[1:])
                    elif not rest:
                        nxt.append([])
                elif _simple_match(head, key):
                    nxt.append(rest)
            if exclude:
                if any(not p for p in nxt):
                    continue
                out[key] = keep(value, nxt, True) if nxt else value
            elif full or any(not p for p in nxt):
                out[key] = value
            elif nxt:
                child = keep(value, nxt, False)
                if child is not _DROP and child != {} and child != []:
                    out[key] = child
        return out if out or exclude else _DROP

    result = keep(body, includes, False) if includes else body
    if result is _DROP:
        result = {}
    if excludes:
        result = keep(result, excludes, True)
    return result


_DROP = object()

# ---------------------------------------------------------------------------------------------------------------
# Bulk parsing
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Op:
    line: int
    action: str  # create | delete | index | update
    meta: JSON
    source: bytes | None
    op_type: str  # create | index | update | delete
    index: str | None
    id: str | None
    pipeline: str | None
    update: JSON | None = None


def _parse_bulk(body: bytes, default_index: str | None, default_pipeline: str | None) -> list[_Op]:
    """BulkRequestParser (9.x): NDJSON, an action line, then a source line except for ``delete``."""
    if not body.endswith(b"\n"):
        raise _illegal("The bulk request must be terminated by a newline [\\n]")
    lines = body.split(b"\n")
    lines.pop()
    ops: list[_Op] = []
    problems: list[str] = []
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i]
        i += 1
        if not line.strip():
            continue  # an empty action line is skipped
        try:
            action_obj = json.loads(line)
        except ValueError as exc:
            raise EsError(400, "x_content_parse_exception",
                          f"[1:{getattr(exc, 'colno', 1)}] {getattr(exc, 'msg', str(exc))}") from None
        prefix = f"Malformed action/metadata line [{number}]"
        if not isinstance(action_obj, dict):
            raise _illegal(f"{prefix}, expected START_OBJECT but found [{_token_name(action_obj)}]")
        if not action_obj:
            raise _illegal(f"{prefix}, expected FIELD_NAME but found [END_OBJECT]")
        action, meta = next(iter(action_obj.items()))
        if action not in _ACTIONS:
            raise _illegal(f"{prefix}, expected field [create], [delete], [index] or [update] but found [{action}]")
        if meta is None or not isinstance(meta, dict):
            raise _illegal(f"{prefix}, expected START_OBJECT or END_OBJECT but found [{_token_name(meta)}]")
        for key, value in meta.items():
            if isinstance(value, list):
                raise _illegal(f"{prefix}, expected a simple value for field [{key}] but found [START_ARRAY]")
            if key not in _BULK_META_FIELDS:
                raise _illegal(f"Action/metadata line [{number}] contains an unknown parameter [{key}]")
            if isinstance(value, dict) and key not in ("_source", "dynamic_templates"):
                raise _illegal(f"{prefix}, expected a simple value for field [{key}] but found [START_OBJECT]")
        if len(action_obj) > 1:
            raise _illegal(f"{prefix}, expected END_OBJECT but found [FIELD_NAME]")
        index = meta.get("_index", default_index)
        doc_id = meta.get("_id")
        doc_id = None if doc_id is None else str(doc_id)
        pipeline = meta.get("pipeline", default_pipeline)
        op_type = action
        if action == "index" and meta.get("op_type") is not None:
            op_type = str(meta["op_type"])
            if op_type not in ("create", "index"):
                raise _illegal(f"opType must be 'create' or 'index', found: [{op_type}]")
        if action == "delete":
            ops.append(_Op(number, action, meta, None, "delete", index, doc_id, None))
        else:
            if i >= len(lines):
                break  # like Elasticsearch, a trailing action without its source line is dropped
            source = lines[i].removesuffix(b"\r")
            i += 1
            op = _Op(number, action, meta, source, op_type, index, doc_id, pipeline)
            if action == "update":
                if "version" in meta or "version_type" in meta:
                    raise _illegal("Update requests do not support versioning. "
                                   "Please use `if_seq_no` and `if_primary_term` instead")
                try:
                    update = json.loads(source)
                except ValueError as exc:
                    raise EsError(400, "x_content_parse_exception",
                                  f"[1:{getattr(exc, 'colno', 1)}] {getattr(exc, 'msg', str(exc))}") from None
                if not isinstance(update, dict):
                    raise EsError(400, "x_content_parse_exception", "[1:1] Expected START_OBJECT")
                for key in update:
                    if key not in _UPDATE_FIELDS:
                        raise EsError(400, "x_content_parse_exception", f"[1:2] [UpdateRequest] unknown field [{key}]")
                op.update = update
            ops.append(op)
        # BulkRequest.validate(): collected for the whole request.
        if index is None:
            problems.append("index is missing")
        if doc_id is not None and not doc_id:
            problems.append("if _id is specified it must not be empty")
        elif doc_id is not None and len(doc_id.encode()) > 512:
            problems.append(f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: "
                            f"{len(doc_id.encode())}")
        if action in ("update", "delete") and doc_id is None:
            problems.append("id is missing")
    if not ops:
        problems.append("no requests added")
    if problems:
        raise _validation_failed(problems)
    return ops


# ---------------------------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------------------------

_KNOWN_QUERIES = frozenset({"match_all", "match_none", "term", "terms", "match", "match_phrase", "bool", "exists",
                            "ids", "range", "prefix", "wildcard", "regexp", "fuzzy", "query_string",
                            "simple_query_string", "multi_match", "nested", "function_score", "constant_score",
                            "dis_max", "boosting", "script", "geo_distance", "knn", "terms_set", "intervals"})
_TOKEN = re.compile(r"\w+", re.UNICODE)


def _values(node: Any, parts: list[str]) -> Iterator[Any]:
    """Values at a dotted path, through nested objects, literal dotted keys and arrays alike."""
    if isinstance(node, list):
        for item in node:
            yield from _values(item, parts)
        return
    if not parts:
        if node is not None:
            yield node
        return
    if isinstance(node, dict):
        for cut in range(len(parts), 0, -1):
            key = ".".join(parts[:cut])
            if key in node:
                yield from _values(node[key], parts[cut:])


def _field_values(doc: StoredDocument, path: str, mapping: _Mapping) -> tuple[list[Any], str]:
    values = list(_values(doc.source, path.split(".")))
    spec = mapping.fields.get(path)
    if spec is None and path.endswith(".keyword"):
        base = path.removesuffix(".keyword")
        values = list(_values(doc.source, base.split(".")))
        return values, "keyword"
    return values, (spec or {}).get("type", "keyword")


def _epoch_millis(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    if _EPOCH.fullmatch(text):
        return float(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp() * 1000


def _same(stored: Any, wanted: Any, ftype: str) -> bool:
    if ftype in _INTEGER_RANGES or ftype in _FLOAT_TYPES:
        try:
            return float(stored) == float(wanted)
        except (TypeError, ValueError):
            return False
    if ftype in ("date", "date_nanos"):
        return _epoch_millis(stored) == _epoch_millis(wanted)
    if ftype == "boolean":
        return str(stored).lower() == str(wanted).lower()
    if ftype == "ip":
        try:
            return ipaddress.ip_address(str(stored)) == ipaddress.ip_address(str(wanted))
        except ValueError:
            return False
    if ftype in ("text", "match_only_text"):
        # analysed text: the standard analyzer lower-cases tokens; a term query does not analyse its value
        return str(wanted) in {t.lower() for t in _TOKEN.findall(str(stored))}
    return _java_text(stored) == _java_text(wanted)


def _compare_key(value: Any, ftype: str) -> Any:
    if ftype in ("date", "date_nanos"):
        return _epoch_millis(value)
    if ftype in _INTEGER_RANGES or ftype in _FLOAT_TYPES:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return str(value)


def _query_body(query: Mapping[str, Any], name: str) -> tuple[str, Any]:
    if not isinstance(query, dict) or len(query) != 1:
        raise EsError(400, "parsing_exception", f"[{name}] query malformed, no start_object after query name")
    field_name, value = next(iter(query.items()))
    return field_name, value


def _matches(query: Any, doc: StoredDocument, mapping: _Mapping) -> bool:
    """Evaluate the supported query DSL subset against one document."""
    if not isinstance(query, dict) or len(query) != 1:
        raise EsError(400, "parsing_exception", "[_na] query malformed, must start with start_object")
    kind, body = next(iter(query.items()))
    if kind == "match_all":
        return True
    if kind == "match_none":
        return False
    if kind == "bool":
        must = _as_list(body.get("must")) + _as_list(body.get("filter"))
        should = _as_list(body.get("should"))
        must_not = _as_list(body.get("must_not"))
        if not all(_matches(q, doc, mapping) for q in must):
            return False
        if any(_matches(q, doc, mapping) for q in must_not):
            return False
        if should:
            minimum = int(body.get("minimum_should_match", 0 if must else 1))
            return sum(_matches(q, doc, mapping) for q in should) >= minimum
        return True
    if kind == "ids":
        return doc.id in [str(v) for v in body.get("values", [])]
    if kind == "exists":
        return bool(_field_values(doc, str(body["field"]), mapping)[0])
    if kind in ("term", "match", "match_phrase", "prefix"):
        name, value = _query_body(body, kind)
        if isinstance(value, dict):
            value = value.get("value", value.get("query"))
        values, ftype = _field_values(doc, name, mapping)
        if kind == "prefix":
            return any(str(v).startswith(str(value)) for v in values)
        if kind == "match_phrase" or (kind == "match" and ftype in ("text", "match_only_text")):
            if kind == "match":
                words = [w.lower() for w in _TOKEN.findall(str(value))]
                return any(_same(v, w, ftype) for v in values for w in words)
            return any(str(value).lower() in str(v).lower() for v in values)
        return any(_same(v, value, ftype) for v in values)
    if kind == "terms":
        name, wanted = next((k, v) for k, v in body.items() if k != "boost")
        values, ftype = _field_values(doc, name, mapping)
        return any(_same(v, w, ftype) for v in values for w in _as_list(wanted))
    if kind == "range":
        name, bounds = _query_body(body, kind)
        values, ftype = _field_values(doc, name, mapping)
        for value in values:
            key = _compare_key(value, ftype)
            if key is None:
                continue
            ok = True
            for op, limit in bounds.items():
                if op not in ("gt", "gte", "lt", "lte"):
                    continue
                bound = _compare_key(limit, ftype)
                if bound is None:
                    ok = False
                    break
                if (op == "gt" and not key > bound) or (op == "gte" and not key >= bound) or (
                        op == "lt" and not key < bound) or (op == "lte" and not key <= bound):
                    ok = False
                    break
            if ok:
                return True
        return False
    if kind in _KNOWN_QUERIES:
        raise _illegal(f"[emulator] query [{kind}] is not supported by the test emulator")
    raise EsError(400, "parsing_exception", f"unknown query [{kind}]", extra={"line": 1, "col": 1})


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------------------------------------------
# HTTP server
# ---------------------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, port: int, emulator: ElasticsearchEmulator) -> None:
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self.emulator.tls is not None:
            sock = self.emulator.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up (dropped connections, failed handshakes) are part of the tests

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
            self.connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 60

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.request)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.request)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def _serve(self) -> None:
        if int(self.headers.get("Content-Length") or 0) > self.server.emulator.max_content_length:
            # http.max_content_length: the HTTP layer refuses the request before any REST handler sees it,
            # with an empty 413 and a closed connection
            self.rfile.read(int(self.headers["Content-Length"]))
            self.close_connection = True
            self._write(_Request(self.command, self.path, [], {}, {}, b""), _Reply(413))
            return
        parts = urlsplit(self.path)
        path = parts.path or "/"
        segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        request = _Request(self.command, path, segments, dict(parse_qsl(parts.query, keep_blank_values=True)),
                           {k.lower(): v for k, v in self.headers.items()}, self._read_body())
        reply = self.server.emulator._handle(request)
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.request.shutdown(socket.SHUT_RDWR)
            return
        self._write(request, reply)

    def _write(self, request: _Request, reply: _Reply) -> None:
        if reply.raw is not None:
            payload = reply.raw
        elif reply.body is None:
            payload = b""
        else:
            indent = 2 if "pretty" in request.params and request.params["pretty"] != "false" else None
            payload = json.dumps(reply.body, indent=indent, separators=None if indent else (",", ":"),
                                 ensure_ascii=False).encode()
        lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}"]
        if reply.product_header:
            lines.append("X-elastic-product: Elasticsearch")
        lines += [f"{name}: {value}" for name, value in reply.headers]
        if reply.content_type:
            lines.append(f"content-type: {reply.content_type}")
        lines.append(f"content-length: {len(payload)}")
        if self.close_connection:
            lines.append("connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve


# ---------------------------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _ParseCtx:
    index: _Index
    doc_id: str
    fields: dict[str, JSON]
    pending: dict[str, JSON] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


class ElasticsearchEmulator:
    """A single-node Elasticsearch cluster on ``127.0.0.1:<ephemeral port>``; use it as a context manager.

    State (documents, templates, policies, pipelines) lives in the object and survives ``down()``/``up()``, as a
    restarted node keeps its data. All state access is serialised by one lock, so helpers may read it while the
    client writes.

    Fault injection applies to ``_bulk`` requests by default (pass ``scope="any"`` to ``drop_next`` or
    ``garbage_next`` to hit the next request of any kind). Each injected fault consumes one HTTP request, including
    the client's own transport retries: the ``elasticsearch`` client retries 429, 502, 503 and 504 and connection
    errors up to ``max_retries`` (3 by default) before raising.
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        api_keys: Iterable[str] = ("test-api-key",),
        users: Mapping[str, str] = _DEFAULT_USERS,
        version: str = "9.1.0",
    ) -> None:
        self.tls = tls
        self.version = version
        self.major = int(version.split(".", 1)[0])
        self.delay: float = 0.0
        self.max_content_length = 100 * 1024 * 1024  # http.max_content_length default (100mb)
        self.cluster_name = "docker-cluster"
        self.node_name = "es-emulator-1"
        self.cluster_uuid = _uuid()
        keys = list(api_keys)
        self._api_keys = set(keys) | {base64.b64encode(k.encode()).decode() for k in keys}
        self._users = dict(users)
        self._lock = threading.RLock()
        self._indices: dict[str, _Index] = {}
        self._streams: dict[str, _DataStream] = {}
        self._index_templates: dict[str, JSON] = copy.deepcopy(_BUILTIN_TEMPLATES)
        self._component_templates: dict[str, JSON] = copy.deepcopy(_BUILTIN_COMPONENTS)
        self._pipelines: dict[str, JSON] = copy.deepcopy(_BUILTIN_PIPELINES)
        modified = _iso_millis(_now())
        self._policies: dict[str, JSON] = {
            name: {"version": 1, "modified_date": modified, "policy": copy.deepcopy(policy)}
            for name, policy in _BUILTIN_POLICIES.items()}
        self._bulk_requests = 0
        self._fail: list[EsError] = []
        self._reject: list[EsError] = []
        self._drop: list[str] = []
        self._garbage: list[tuple[str, str]] = []
        self.server_errors: list[str] = []  # tracebacks of emulator bugs (answered 500); tests may assert it is empty
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def __enter__(self) -> ElasticsearchEmulator:
        self.up()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.down()
        if exc_type is None and self.server_errors:  # a bug the client's retries would otherwise hide
            raise AssertionError("the Elasticsearch emulator failed internally:\n" + "\n".join(self.server_errors))

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def up(self) -> None:
        """Start listening (again) - on the same port after a ``down()``."""
        if self._server is not None:
            return
        server = _Server(self.port, self)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"es-emulator-{self.port}", daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening and cut open keep-alive connections, like a node that went away."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- state for assertions ------------------------------------------------------------------------------------

    def _concrete(self, target: str) -> list[_Index]:
        if target in self._streams:
            return list(self._streams[target].indices)
        if target in self._indices:
            return [self._indices[target]]
        return []

    def stored(self, target: str) -> list[StoredDocument]:
        """Every stored document of an index or data stream (all backing indices), in insertion order, with the
        version, sequence number, executed pipelines and ignored (malformed) fields."""
        with self._lock:
            return [copy.deepcopy(doc) for index in self._concrete(target) for doc in index.docs.values()]

    def documents(self, target: str) -> list[JSON]:
        """The ``_source`` of every document of an index or data stream, in insertion order."""
        return [doc.source for doc in self.stored(target)]

    def ids(self, target: str) -> list[str]:
        with self._lock:
            return [doc_id for index in self._concrete(target) for doc_id in index.docs]

    @property
    def data_streams(self) -> dict[str, JSON]:
        with self._lock:
            return {name: ds.to_json(self._index_templates) for name, ds in self._streams.items()}

    @property
    def index_templates(self) -> dict[str, JSON]:
        """All composable index templates, the built-in ``logs`` one included, as ``GET _index_template`` shows."""
        with self._lock:
            return copy.deepcopy(self._index_templates)

    @property
    def component_templates(self) -> dict[str, JSON]:
        with self._lock:
            return copy.deepcopy(self._component_templates)

    @property
    def ilm_policies(self) -> dict[str, JSON]:
        """Policy name -> the ``policy`` body as PUT."""
        with self._lock:
            return {name: copy.deepcopy(entry["policy"]) for name, entry in self._policies.items()}

    @property
    def pipelines(self) -> dict[str, JSON]:
        with self._lock:
            return copy.deepcopy(self._pipelines)

    @property
    def indices(self) -> list[str]:
        with self._lock:
            return sorted(self._indices)

    @property
    def bulk_requests(self) -> int:
        """How many ``_bulk`` HTTP requests reached the emulator, whatever their outcome (dropped, failed, 401...)."""
        with self._lock:
            return self._bulk_requests

    # -- fault injection -----------------------------------------------------------------------------------------

    def pending_faults(self) -> int:
        """Injected faults (failures, item rejections, drops, garbage) not yet served."""
        with self._lock:
            return len(self._fail) + len(self._reject) + len(self._drop) + len(self._garbage)

    def fail_next(self, times: int, status: int, error_type: str | None = None, reason: str | None = None) -> None:
        """The next ``times`` ``_bulk`` requests fail as a whole with ``status`` and an Elasticsearch error body.
        Type and reason default to what Elasticsearch sends for that status (429 indexing pressure, 503 cluster
        block)."""
        default_type, default_reason = _FAULT_DEFAULTS.get(status, ("exception", f"injected failure [{status}]"))
        with self._lock:
            self._fail += [EsError(status, error_type or default_type, reason or default_reason)] * times

    def reject_items(self, count: int, status: int = 429, error_type: str = "es_rejected_execution_exception",
                     reason: str | None = None) -> None:
        """The next ``count`` bulk items, across requests, fail with this per-item status; the others succeed."""
        reason = reason or ("rejected execution of org.elasticsearch.action.support.replication."
                            "TransportWriteAction$1/WrappedActionListener on EsThreadPoolExecutor[name = "
                            f"{self.node_name}/write, queue capacity = 10000]")
        with self._lock:
            self._reject += [EsError(status, error_type, reason)] * count

    def drop_next(self, times: int, *, scope: Literal["bulk", "any"] = "bulk") -> None:
        """Read the next ``times`` requests, then close the socket without answering."""
        with self._lock:
            self._drop += [scope] * times

    def garbage_next(self, times: int, *, scope: Literal["bulk", "any"] = "bulk",
                     content_type: str = "text/html; charset=utf-8") -> None:
        """Answer the next ``times`` requests with 200, a non-JSON body and no product header, as a captive portal
        or a misrouted proxy would. With the default ``text/html`` a client that has not yet verified the server
        raises ``UnsupportedProductError``; with ``application/json`` it raises ``SerializationError``."""
        with self._lock:
            self._garbage += [(scope, content_type)] * times

    def _take(self, queue: list[Any], is_bulk: bool) -> Any:
        for position, entry in enumerate(queue):
            scope = entry[0] if isinstance(entry, tuple) else entry
            if scope == "any" or is_bulk:
                return queue.pop(position)
            break
        return None

    # -- request handling ----------------------------------------------------------------------------------------

    def _handle(self, req: _Request) -> _Reply:
        is_bulk = bool(req.segments) and req.segments[-1] == "_bulk"
        with self._lock:
            if is_bulk:
                self._bulk_requests += 1
            drop = self._take(self._drop, is_bulk)
            garbage = None if drop else self._take(self._garbage, is_bulk)
        if drop:
            return _Reply(0, drop=True)
        if is_bulk and self.delay:
            time.sleep(self.delay)
        if garbage:
            return _Reply(200, raw=b"<html><body><h1>It works!</h1></body></html>\n", content_type=garbage[1],
                          product_header=False)
        content_type = "application/json"
        try:
            accept_version = self._check_media_types(req)
            if accept_version is not None:
                content_type = f"application/vnd.elasticsearch+json;compatible-with={accept_version}"
            self._authenticate(req)
            if is_bulk:
                with self._lock:
                    failure = self._fail.pop(0) if self._fail else None
                if failure is not None:
                    raise failure
            status, body = self._route(req)
        except EsError as exc:
            status, body = exc.status, exc.body()
            headers = [("WWW-Authenticate", v) for values in exc.headers.values() for v in values]
            return _Reply(status, body, content_type=content_type, headers=headers + self._opaque(req))
        except Exception:
            self.server_errors.append(traceback.format_exc())
            error = EsError(500, "exception", "emulator failure, see ElasticsearchEmulator.server_errors")
            return _Reply(500, error.body(), content_type=content_type)
        if req.method == "HEAD":
            return _Reply(status, None, content_type=content_type, headers=self._opaque(req))
        if body is not None and "filter_path" in req.params:
            body = _filter_path(body, req.params["filter_path"])
        return _Reply(status, body, content_type=content_type, headers=self._opaque(req))

    @staticmethod
    def _opaque(req: _Request) -> list[tuple[str, str]]:
        opaque = req.headers.get("x-opaque-id")
        return [("X-Opaque-Id", opaque)] if opaque else []

    def _check_media_types(self, req: _Request) -> int | None:
        """Content negotiation: supported media types and REST API compatibility (``compatible-with=N``)."""
        accept = req.headers.get("accept")
        ctype = req.headers.get("content-type") if req.body else None
        if req.body and not ctype:
            raise _PlainError(406, "media_type_header_exception", "Content-Type header is missing")

        def version_of(header: str | None, name: str) -> int | None:
            if not header:
                return None
            main = header.split(";", 1)[0].strip().lower()
            match = re.search(r"compatible-with\s*=\s*(\d+)", header)
            if main.startswith("application/vnd.elasticsearch+"):
                return int(match.group(1)) if match else None
            if name == "Content-Type" and main not in ("application/json", "application/x-ndjson"):
                raise _PlainError(406, "media_type_header_exception",
                                  f"Content-Type header [{header}] is not supported")
            return None

        accept_version = version_of(accept, "Accept")
        ctype_version = version_of(ctype, "Content-Type")
        headers = "[Accept, Content-Type]" if ctype else "[Accept]"
        supported = (self.major, self.major - 1)
        for name, value, version in (("Accept", accept, accept_version), ("Content-Type", ctype, ctype_version)):
            if version is not None and version not in supported:
                raise EsError(400, "media_type_header_exception", f"Invalid media-type value on headers {headers}",
                              caused_by={"type": "status_exception", "reason": (
                                  f"{name} version must be either version {self.major} or {self.major - 1}, but "
                                  f"found {version}. {name}={value}")})
        if ctype and (accept_version is not None or ctype_version is not None) and accept_version != ctype_version:
            raise EsError(400, "media_type_header_exception", f"Invalid media-type value on headers {headers}",
                          caused_by={"type": "status_exception", "reason": (
                              "A compatible version is required on both Content-Type and Accept headers if either "
                              "one has requested a compatible version and the compatible versions must match. "
                              f"Accept={accept}, Content-Type={ctype}")})
        return accept_version

    def _authenticate(self, req: _Request) -> None:
        header = req.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        challenge = {"WWW-Authenticate": ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"',
                                          "ApiKey"]}
        uri = req.raw_path + ("?" + "&".join(f"{k}={v}" for k, v in req.params.items()) if req.params else "")
        if scheme.lower() == "apikey" and credentials:
            if credentials in self._api_keys:
                return
            raise EsError(401, "security_exception", "unable to authenticate with provided credentials and "
                          "anonymous access is not allowed for this request", headers=challenge)
        if scheme.lower() == "basic" and credentials:
            password: str | None
            try:
                user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", None
            if user in self._users and self._users[user] == password:
                return
            raise EsError(401, "security_exception", f"unable to authenticate user [{user}] for REST request [{uri}]",
                          headers=challenge)
        if header:
            raise EsError(401, "security_exception", "unable to authenticate with provided credentials and "
                          "anonymous access is not allowed for this request", headers=challenge)
        raise EsError(401, "security_exception", f"missing authentication credentials for REST request [{uri}]",
                      headers=challenge)

    # -- routing -------------------------------------------------------------------------------------------------

    def _route(self, req: _Request) -> tuple[int, Any]:
        m, s = req.method, req.segments
        match s:
            case []:
                return self._allow(req, ("GET", "HEAD"), set()) or (200, self._info())
            case ["_bulk"]:
                return self._allow(req, ("POST", "PUT"), self._BULK_PARAMS) or self._bulk(req, None)
            case [target, "_bulk"]:
                return self._allow(req, ("POST", "PUT"), self._BULK_PARAMS) or self._bulk(req, target)
            case ["_cluster", "health", *rest]:
                return self._allow(req, ("GET",), {"level", "wait_for_status", "timeout", "local",
                                                    "wait_for_active_shards", "wait_for_no_initializing_shards",
                                                    "wait_for_no_relocating_shards", "wait_for_nodes",
                                                    "wait_for_events", "master_timeout", "expand_wildcards"}) or (
                    200, self._health(rest[0] if rest else None))
            case ["_index_template", *rest] if len(rest) <= 1:
                return self._index_template(req, rest[0] if rest else None)
            case ["_component_template", *rest] if len(rest) <= 1:
                return self._component_template(req, rest[0] if rest else None)
            case ["_ilm", "policy", *rest] if len(rest) <= 1:
                return self._ilm(req, rest[0] if rest else None)
            case ["_ingest", "pipeline", *rest] if len(rest) <= 1:
                return self._pipeline(req, rest[0] if rest else None)
            case ["_data_stream", *rest] if len(rest) <= 1:
                return self._data_stream(req, rest[0] if rest else None)
            case ["_refresh"] | [_, "_refresh"]:
                return self._allow(req, ("GET", "POST"), {"ignore_unavailable", "allow_no_indices",
                                                          "expand_wildcards"}) or self._refresh(
                    s[0] if len(s) == 2 else "_all")
            case ["_search"] | [_, "_search"]:
                return self._allow(req, ("GET", "POST"), self._SEARCH_PARAMS) or self._search(
                    req, s[0] if len(s) == 2 else "_all")
            case ["_count"] | [_, "_count"]:
                return self._allow(req, ("GET", "POST"), {"q", "ignore_unavailable", "allow_no_indices",
                                                          "expand_wildcards", "routing", "preference"}) or (
                    self._count(req, s[0] if len(s) == 2 else "_all"))
            case [target, "_mapping" | "_mappings"]:
                return self._allow(req, ("GET",), {"ignore_unavailable", "allow_no_indices", "expand_wildcards",
                                                   "local", "master_timeout"}) or self._get_mapping(target)
            case [target, "_doc"]:
                return self._allow(req, ("POST",), self._DOC_PARAMS) or self._single(req, target, None, "index")
            case [target, "_doc", doc_id]:
                if m == "GET" or m == "HEAD":
                    return self._allow(req, ("GET", "HEAD"), {"realtime", "refresh", "routing", "preference",
                                                              "_source", "_source_includes", "_source_excludes",
                                                              "stored_fields", "version", "version_type"}) or (
                        self._get_doc(target, doc_id))
                if m == "DELETE":
                    return self._allow(req, ("DELETE",), self._DOC_PARAMS) or self._single(req, target, doc_id,
                                                                                           "delete")
                return self._allow(req, ("PUT", "POST"), self._DOC_PARAMS) or self._single(
                    req, target, doc_id, "create" if req.params.get("op_type") == "create" else "index")
            case [target, "_create", doc_id]:
                return self._allow(req, ("PUT", "POST"), self._DOC_PARAMS) or self._single(req, target, doc_id,
                                                                                          "create")
            case [target] if not target.startswith("_"):
                return self._index_api(req, target)
        if m in ("GET", "HEAD", "POST", "PUT", "DELETE"):
            raise _PlainError(400, "illegal_argument_exception",
                              f"no handler found for uri [{req.raw_path}] and method [{m}]")
        raise _PlainError(405, "illegal_argument_exception", f"Incorrect HTTP method for uri [{req.raw_path}]")

    _BULK_PARAMS: ClassVar[frozenset[str]] = frozenset({
        "pipeline", "refresh", "routing", "timeout", "wait_for_active_shards", "_source", "_source_includes",
        "_source_excludes", "require_alias", "require_data_stream", "list_executed_pipelines",
        "include_source_on_error"})
    _DOC_PARAMS: ClassVar[frozenset[str]] = frozenset({
        "pipeline", "refresh", "routing", "timeout", "wait_for_active_shards", "op_type", "if_seq_no",
        "if_primary_term", "version", "version_type", "require_alias", "require_data_stream",
        "include_source_on_error"})
    _SEARCH_PARAMS: ClassVar[frozenset[str]] = frozenset({
        "size", "from", "track_total_hits", "sort", "_source", "_source_includes", "_source_excludes", "q",
        "ignore_unavailable", "allow_no_indices", "expand_wildcards", "rest_total_hits_as_int", "timeout",
        "typed_keys", "seq_no_primary_term", "version", "preference", "routing", "request_cache",
        "allow_partial_search_results", "batched_reduce_size", "ccs_minimize_roundtrips", "search_type",
        "track_scores", "explain", "stored_fields", "docvalue_fields"})

    @staticmethod
    def _allow(req: _Request, methods: tuple[str, ...], params: Iterable[str]) -> None:
        """Wrong method -> 405; unknown query parameter -> 400, as the REST layer answers both."""
        if req.method not in methods:
            raise _method_not_allowed(req, methods)
        unknown = sorted(set(req.params) - _COMMON_PARAMS - set(params))
        if unknown:
            names = ", ".join(unknown)
            what = "parameter" if len(unknown) == 1 else "parameters"
            raise _illegal(f"request [{req.raw_path}] contains unrecognized {what}: [{names}]")

    # -- cluster -------------------------------------------------------------------------------------------------

    def _info(self) -> JSON:
        wire, index_compat = {9: ("8.18.0", "8.0.0"), 8: ("7.17.0", "7.0.0")}.get(
            self.major, (f"{self.major - 1}.0.0", f"{self.major - 1}.0.0"))
        return {
            "name": self.node_name,
            "cluster_name": self.cluster_name,
            "cluster_uuid": self.cluster_uuid,
            "version": {
                "number": self.version,
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "0" * 40,
                "build_date": "2025-07-01T00:00:00.000000000Z",
                "build_snapshot": False,
                "lucene_version": "10.2.2" if self.major >= 9 else "9.12.0",
                "minimum_wire_compatibility_version": wire,
                "minimum_index_compatibility_version": index_compat,
            },
            "tagline": "You Know, for Search",
        }

    def _health(self, target: str | None) -> JSON:
        with self._lock:
            indices = self._resolve(target) if target else list(self._indices.values())
            primaries = len(indices)
            unassigned = sum(i.replicas for i in indices)
        return {
            "cluster_name": self.cluster_name,
            "status": "yellow" if unassigned else "green",
            "timed_out": False,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": primaries,
            "active_shards": primaries,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": unassigned,
            "unassigned_primary_shards": 0,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0 if not unassigned else round(
                100.0 * primaries / (primaries + unassigned), 1),
        }

    # -- templates, policies, pipelines --------------------------------------------------------------------------

    def _index_template(self, req: _Request, name: str | None) -> tuple[int, Any]:
        if req.method in ("GET", "HEAD"):
            self._allow(req, ("GET", "HEAD"), {"local", "flat_settings", "master_timeout", "include_defaults"})
            with self._lock:
                found = self._select(self._index_templates, name, "index template")
                return 200, {"index_templates": [{"name": n, "index_template": copy.deepcopy(t)} for n, t in found]}
        if name is None:
            raise _method_not_allowed(req, ("GET",))
        if req.method == "DELETE":
            self._allow(req, ("DELETE",), {"master_timeout", "timeout"})
            with self._lock:
                if name not in self._index_templates:
                    raise EsError(404, "index_template_missing_exception", f"index_template [{name}] missing")
                users = sorted(ds.name for ds in self._streams.values() if ds.template == name)
                if users:
                    raise _illegal(f"unable to remove composable templates [{name}] as they are in use by a data "
                                   f"streams [{', '.join(users)}]")
                del self._index_templates[name]
            return 200, {"acknowledged": True}
        self._allow(req, ("PUT", "POST"), {"create", "master_timeout", "cause"})
        body = req.object()
        for key in body:
            if key not in _INDEX_TEMPLATE_FIELDS:
                start, _ = _locate(req.body.decode("utf-8", "replace"), [key])
                raise EsError(400, "x_content_parse_exception", f"[1:{start}] [index_template] unknown field [{key}]")
        if "index_patterns" not in body:
            raise _illegal("Required [index_patterns]")  # ConstructingObjectParser
        template = dict(body)
        template["index_patterns"] = _patterns(body["index_patterns"])
        priority = template.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool) or priority < 0:
            raise _validation_failed(["index template priority must be >= 0"])
        if "data_stream" in template:
            if not isinstance(template["data_stream"], dict):
                raise EsError(400, "x_content_parse_exception",
                              "[index_template] data_stream doesn't support values of type: "
                              f"{_token_name(template['data_stream'])}")
            template["data_stream"] = {"hidden": False, "allow_custom_routing": False, **template["data_stream"]}
        template.setdefault("composed_of", [])
        with self._lock:
            if _truthy(req.params.get("create")) and name in self._index_templates:
                raise _illegal(f"index template [{name}] already exists")
            ignorable = set(_patterns(template.get("ignore_missing_component_templates")))
            missing = [c for c in template["composed_of"] if c not in self._component_templates and c not in ignorable]
            if missing:
                raise EsError(400, "invalid_index_template_exception",
                              f"index_template [{name}] invalid, cause [index template [{name}] specifies component "
                              f"templates {_java_text(missing)} that do not exist]", extra={"name": name})
            for other, existing in self._index_templates.items():
                if other == name or existing.get("priority", 0) != priority:
                    continue
                overlap = [p for p in template["index_patterns"] for q in existing["index_patterns"]
                           if _simple_match(p, q.replace("*", "")) or _simple_match(q, p.replace("*", ""))]
                if overlap:
                    raise _illegal(
                        f"index template [{name}] has index patterns {_java_text(template['index_patterns'])} "
                        f"matching patterns from existing templates [{other}] with patterns ({other} => "
                        f"{_java_text(existing['index_patterns'])}) that have the same priority [{priority}], "
                        "multiple index templates may not match during index creation, please use a different "
                        "priority")
            self._index_templates[name] = template
        return 200, {"acknowledged": True}

    def _component_template(self, req: _Request, name: str | None) -> tuple[int, Any]:
        if req.method in ("GET", "HEAD"):
            self._allow(req, ("GET", "HEAD"), {"local", "flat_settings", "master_timeout", "include_defaults"})
            with self._lock:
                found = self._select(self._component_templates, name, "component template")
                return 200, {"component_templates": [{"name": n, "component_template": copy.deepcopy(t)}
                                                     for n, t in found]}
        if name is None:
            raise _method_not_allowed(req, ("GET",))
        if req.method == "DELETE":
            self._allow(req, ("DELETE",), {"master_timeout", "timeout"})
            with self._lock:
                if name not in self._component_templates:
                    raise EsError(404, "resource_not_found_exception", name)
                users = sorted(t for t, body in self._index_templates.items() if name in body.get("composed_of", []))
                if users:
                    raise _illegal(f"component templates [{name}] cannot be removed as they are still in use by "
                                   f"index templates [{', '.join(users)}]")
                del self._component_templates[name]
            return 200, {"acknowledged": True}
        self._allow(req, ("PUT", "POST"), {"create", "master_timeout", "cause"})
        body = req.object()
        for key in body:
            if key not in _COMPONENT_TEMPLATE_FIELDS:
                start, _ = _locate(req.body.decode("utf-8", "replace"), [key])
                raise EsError(400, "x_content_parse_exception",
                              f"[1:{start}] [component_template] unknown field [{key}]")
        if not isinstance(body.get("template"), dict):
            raise _illegal("Required [template]")  # ConstructingObjectParser
        with self._lock:
            if _truthy(req.params.get("create")) and name in self._component_templates:
                raise _illegal(f"component template [{name}] already exists")
            self._component_templates[name] = copy.deepcopy(body)
        return 200, {"acknowledged": True}

    @staticmethod
    def _select(store: Mapping[str, JSON], name: str | None, what: str) -> list[tuple[str, JSON]]:
        if name is None:
            return sorted(store.items())
        wanted = name.split(",")
        found = [(n, t) for n, t in sorted(store.items()) if any(_simple_match(w, n) for w in wanted)]
        if not found and not any("*" in w for w in wanted):
            raise EsError(404, "resource_not_found_exception", f"{what} matching [{name}] not found")
        return found

    def _ilm(self, req: _Request, name: str | None) -> tuple[int, Any]:
        if req.method == "GET":
            self._allow(req, ("GET",), {"master_timeout", "timeout"})
            with self._lock:
                names = sorted(self._policies) if name is None else [
                    n for n in sorted(self._policies) if any(_simple_match(w, n) for w in name.split(","))]
                if name is not None and not names:
                    raise EsError(404, "resource_not_found_exception",
                                  f"Lifecycle policy not found: {_java_text(name.split(','))}")
                return 200, {n: {**copy.deepcopy(self._policies[n]), "in_use_by": self._policy_users(n)}
                             for n in names}
        if name is None:
            raise _method_not_allowed(req, ("GET",))
        if req.method == "DELETE":
            self._allow(req, ("DELETE",), {"master_timeout", "timeout"})
            with self._lock:
                if name not in self._policies:
                    raise EsError(404, "resource_not_found_exception", f"Lifecycle policy not found: {name}")
                del self._policies[name]
            return 200, {"acknowledged": True}
        self._allow(req, ("PUT",), {"master_timeout", "timeout"})
        body = req.object()
        policy = body.get("policy")
        if not isinstance(policy, dict):
            raise _illegal("Required [policy]")
        if not isinstance(policy.get("phases"), dict):
            raise _illegal("Required [phases]")
        for phase in policy["phases"]:
            if phase not in ("hot", "warm", "cold", "frozen", "delete"):
                raise _illegal(f"Timeseries lifecycle does not support phase [{phase}]")
        with self._lock:
            previous = self._policies.get(name, {}).get("version", 0)
            self._policies[name] = {"version": previous + 1, "modified_date": _iso_millis(_now()),
                                    "policy": copy.deepcopy(policy)}
        return 200, {"acknowledged": True}

    def _policy_users(self, policy: str) -> JSON:
        indices = sorted(i.name for i in self._indices.values() if i.settings.get("index.lifecycle.name") == policy)
        streams = sorted({i.data_stream for i in self._indices.values()
                          if i.data_stream and i.settings.get("index.lifecycle.name") == policy})
        templates = []
        for tname in sorted(self._index_templates):
            if self._compose(tname)[1].get("index.lifecycle.name") == policy:
                templates.append(tname)
        return {"indices": indices, "data_streams": streams, "composable_templates": templates}

    def _pipeline(self, req: _Request, pipeline_id: str | None) -> tuple[int, Any]:
        if req.method == "GET":
            self._allow(req, ("GET",), {"master_timeout", "summary"})
            with self._lock:
                if pipeline_id is None:
                    return 200, copy.deepcopy(self._pipelines)
                found = {n: copy.deepcopy(p) for n, p in sorted(self._pipelines.items())
                         if any(_simple_match(w, n) for w in pipeline_id.split(","))}
                if not found:
                    raise _NotFoundEmpty(404, "resource_not_found_exception", pipeline_id)
                return 200, found
        if pipeline_id is None:
            raise _method_not_allowed(req, ("GET",))
        if req.method == "DELETE":
            self._allow(req, ("DELETE",), {"master_timeout", "timeout"})
            with self._lock:
                if pipeline_id not in self._pipelines:
                    raise EsError(404, "resource_not_found_exception", f"pipeline [{pipeline_id}] is missing")
                del self._pipelines[pipeline_id]
            return 200, {"acknowledged": True}
        self._allow(req, ("PUT",), {"master_timeout", "timeout", "if_version"})
        body = req.object()
        if "processors" not in body:
            raise EsError(400, "parse_exception", "[processors] required property is missing",
                          extra={"property_name": "processors"})
        if not isinstance(body["processors"], list):
            raise EsError(400, "parse_exception", "[processors] property isn't a list, but of type [" +
                          type(body["processors"]).__name__ + "]", extra={"property_name": "processors"})
        with self._lock:
            self._pipelines[pipeline_id] = copy.deepcopy(body)
        return 200, {"acknowledged": True}

    # -- indices and data streams --------------------------------------------------------------------------------

    def _compose(self, template_name: str) -> tuple[list[JSON], dict[str, Any]]:
        """Mappings (in merge order) and flat settings of an index template and its component templates."""
        template = self._index_templates[template_name]
        mappings: list[JSON] = []
        settings: dict[str, Any] = {}
        parts = [self._component_templates[c].get("template", {}) for c in template.get("composed_of", [])
                 if c in self._component_templates]
        parts.append(template.get("template") or {})
        for part in parts:
            if part.get("mappings"):
                mappings.append(part["mappings"])
            if part.get("settings"):
                settings.update(_flatten_settings(part["settings"]))
        return mappings, settings

    def _find_template(self, name: str) -> str | None:
        best: tuple[int, str] | None = None
        for tname, template in self._index_templates.items():
            if any(_simple_match(p, name) for p in template["index_patterns"]):
                priority = int(template.get("priority", 0))
                if best is None or priority > best[0]:
                    best = (priority, tname)
        return best[1] if best else None

    def _new_index(self, name: str, template: str | None, *, data_stream: str | None = None,
                   body: Mapping[str, Any] | None = None) -> _Index:
        mappings, settings = self._compose(template) if template else ([], {})
        if body:
            if body.get("mappings"):
                mappings.append(body["mappings"])
            settings.update(_flatten_settings(body.get("settings") or {}))
        if data_stream:
            # A data stream's @timestamp is always a date (DataStreamTimestampFieldMapper adds it when unmapped).
            mappings.insert(0, {"properties": {"@timestamp": {"type": "date"}}})
        settings.pop("index.number_of_shards", None)  # the emulator is one shard per index
        index = _Index(name, _Mapping(mappings, settings), settings, data_stream)
        self._indices[name] = index
        return index

    def _create_data_stream(self, name: str, template: str) -> _DataStream:
        created = _now()
        backing = f".ds-{name}-{created:%Y.%m.%d}-000001"
        index = self._new_index(backing, template, data_stream=name)
        stream = _DataStream(name, template, [index], created)
        self._streams[name] = stream
        return stream

    def _data_stream(self, req: _Request, name: str | None) -> tuple[int, Any]:
        if req.method == "GET":
            self._allow(req, ("GET",), {"expand_wildcards", "include_defaults", "master_timeout", "verbose"})
            with self._lock:
                if name is None:
                    names = sorted(self._streams)
                else:
                    names = []
                    for wanted in name.split(","):
                        hits = [n for n in sorted(self._streams) if _simple_match(wanted, n)]
                        if not hits and "*" not in wanted:
                            raise _index_not_found(wanted)
                        names += [h for h in hits if h not in names]
                return 200, {"data_streams": [self._streams[n].to_json(self._index_templates) for n in names]}
        if name is None:
            raise _method_not_allowed(req, ("GET",))
        if req.method == "DELETE":
            self._allow(req, ("DELETE",), {"expand_wildcards", "master_timeout"})
            with self._lock:
                names = [n for n in list(self._streams) if any(_simple_match(w, n) for w in name.split(","))]
                if not names and "*" not in name:
                    raise _index_not_found(name)
                for n in names:
                    for index in self._streams.pop(n).indices:
                        self._indices.pop(index.name, None)
            return 200, {"acknowledged": True}
        self._allow(req, ("PUT",), {"master_timeout", "timeout"})
        with self._lock:
            if name in self._streams:
                raise EsError(400, "resource_already_exists_exception", f"data_stream [{name}] already exists")
            template = self._find_template(name)
            if template is None or "data_stream" not in self._index_templates[template]:
                raise _illegal(f"no matching index template found for data stream [{name}]")
            problem = _invalid_index_name(name)
            if problem:
                raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}",
                              extra={"index_uuid": "_na_", "index": name})
            self._create_data_stream(name, template)
        return 200, {"acknowledged": True}

    def _index_api(self, req: _Request, name: str) -> tuple[int, Any]:
        if req.method == "HEAD":
            self._allow(req, ("HEAD",), {"allow_no_indices", "expand_wildcards", "ignore_unavailable", "local",
                                         "flat_settings", "include_defaults"})
            with self._lock:
                try:
                    found = self._resolve(name)
                except EsError:
                    return 404, None
                return (200 if found or "*" not in name else 404), None
        if req.method == "GET":
            self._allow(req, ("GET",), {"allow_no_indices", "expand_wildcards", "ignore_unavailable", "local",
                                        "flat_settings", "include_defaults", "master_timeout", "features"})
            with self._lock:
                return 200, {i.name: {"aliases": {}, "mappings": i.mapping.to_json(), "settings": i.settings_json(),
                                      **({"data_stream": i.data_stream} if i.data_stream else {})}
                             for i in self._resolve(name)}
        if req.method == "DELETE":
            self._allow(req, ("DELETE",), {"allow_no_indices", "expand_wildcards", "ignore_unavailable",
                                           "master_timeout", "timeout"})
            with self._lock:
                if name in self._streams:
                    raise _illegal(f"The provided expression [{name}] matches a data stream, specify the "
                                   "corresponding concrete indices instead.")
                targets = self._resolve(name)
                for index in targets:
                    if index.data_stream:
                        stream = self._streams[index.data_stream]
                        if stream.write_index is index:
                            raise _illegal(f"index [{index.name}] is the write index for data stream "
                                           f"[{stream.name}] and cannot be deleted")
                        stream.indices.remove(index)
                    del self._indices[index.name]
            return 200, {"acknowledged": True}
        self._allow(req, ("PUT",), {"wait_for_active_shards", "master_timeout", "timeout"})
        body = req.object(required=False)
        with self._lock:
            if name in self._indices or name in self._streams:
                uuid = self._indices[name].uuid if name in self._indices else "_na_"
                raise EsError(400, "resource_already_exists_exception", f"index [{name}/{uuid}] already exists",
                              extra={"index_uuid": uuid, "index": name})
            problem = _invalid_index_name(name)
            if problem:
                raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}",
                              extra={"index_uuid": "_na_", "index": name})
            template = self._find_template(name)
            if template and "data_stream" in self._index_templates[template]:
                raise _illegal(f"cannot create index with name [{name}], because it matches with template "
                               f"[{template}] that creates data streams only, use create data stream api instead")
            self._new_index(name, template, body=body)
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}

    def _resolve(self, expression: str | None) -> list[_Index]:
        """Concrete indices for an index expression (names, data streams, ``*`` wildcards, comma lists, _all)."""
        found: dict[str, _Index] = {}
        for part in (expression or "_all").split(","):
            if part in ("_all", "*"):
                hits = [i for i in self._indices.values() if not i.name.startswith(".") or i.data_stream]
                found.update((i.name, i) for i in hits)
                continue
            if "*" in part:
                for ds in self._streams.values():
                    if _simple_match(part, ds.name):
                        found.update((i.name, i) for i in ds.indices)
                for index in self._indices.values():
                    if not index.name.startswith(".") and _simple_match(part, index.name):
                        found[index.name] = index
                continue
            concrete = self._concrete(part)
            if not concrete:
                raise _index_not_found(part)
            found.update((i.name, i) for i in concrete)
        return list(found.values())

    def _get_mapping(self, target: str) -> tuple[int, Any]:
        with self._lock:
            return 200, {i.name: {"mappings": i.mapping.to_json()} for i in self._resolve(target)}

    def _refresh(self, target: str) -> tuple[int, Any]:
        with self._lock:
            indices = self._resolve(target)
            for index in indices:
                index.refresh()
        total = sum(1 + i.replicas for i in indices)
        return 200, {"_shards": {"total": total, "successful": len(indices), "failed": 0}}

    def _get_doc(self, target: str, doc_id: str) -> tuple[int, Any]:
        with self._lock:
            if target in self._streams:
                raise _illegal(f"The provided expression [{target}] matches a data stream, specify the "
                               "corresponding concrete indices instead.")
            index = self._indices.get(target)
            if index is None:
                raise _index_not_found(target)
            doc = index.docs.get(doc_id)
            if doc is None:
                return 404, {"_index": index.name, "_id": doc_id, "found": False}
            return 200, {"_index": index.name, "_id": doc_id, "_version": doc.version, "_seq_no": doc.seq_no,
                         "_primary_term": 1, "found": True, "_source": copy.deepcopy(doc.source)}

    # -- search --------------------------------------------------------------------------------------------------

    def _search_hits(self, req: _Request, target: str) -> tuple[JSON, list[tuple[StoredDocument, _Index]], int]:
        body = req.object(required=False)
        for key in ("aggs", "aggregations", "knn", "collapse", "suggest", "highlight", "rescore", "pit"):
            if key in body:
                raise _illegal(f"[emulator] [{key}] is not supported by the test emulator")
        query = body.get("query", {"match_all": {}})
        if "q" in req.params:
            field_name, _, value = req.params["q"].partition(":")
            query = {"match": {field_name: value}} if value else {"match_all": {}}
        with self._lock:
            indices = self._resolve(target)
            hits = [(doc, index) for index in indices for doc in index.searchable().values()
                    if _matches(query, doc, index.mapping)]
        return body, hits, len(indices)

    def _search(self, req: _Request, target: str) -> tuple[int, Any]:
        started = time.monotonic()
        body, hits, shards = self._search_hits(req, target)
        size = int(req.params.get("size") or body.get("size", 10))
        start = int(req.params.get("from") or body.get("from", 0))
        sort = body.get("sort") or (req.params["sort"].split(",") if "sort" in req.params else None)
        sort_values: dict[int, list[Any]] = {}
        if sort:
            for spec in reversed(_as_list(sort)):
                if isinstance(spec, str):
                    name, _, order = spec.partition(":")
                else:
                    name, order = next(iter(spec.items()))
                    order = order.get("order", "asc") if isinstance(order, dict) else order
                if name in ("_score", "_doc"):
                    continue

                def key(hit: tuple[StoredDocument, _Index], name: str = name) -> tuple[int, Any]:
                    values, ftype = _field_values(hit[0], name, hit[1].mapping)
                    converted = [k for k in (_compare_key(v, ftype) for v in values) if k is not None]
                    return (0, min(converted)) if converted else (1, 0)

                hits.sort(key=key, reverse=order == "desc")
        window = hits[start:start + size]
        if sort:
            for doc, index in window:
                keys = []
                for spec in _as_list(sort):
                    name = spec.partition(":")[0] if isinstance(spec, str) else next(iter(spec))
                    values = _field_values(doc, name, index.mapping)[0] if name not in ("_score", "_doc") else []
                    keys.append(values[0] if values else None)
                sort_values[id(doc)] = keys
        source_filter = body.get("_source", req.params.get("_source", True))
        out_hits = []
        for doc, index in window:
            hit: JSON = {"_index": index.name, "_id": doc.id, "_score": None if sort else 1.0}
            if source_filter not in (False, "false"):
                hit["_source"] = self._filter_source(doc.source, source_filter)
            if sort:
                hit["sort"] = sort_values[id(doc)]
            out_hits.append(hit)
        track = body.get("track_total_hits", req.params.get("track_total_hits", 10000))
        result_hits: JSON = {}
        total = len(hits)
        if track in (True, "true"):
            result_hits["total"] = {"value": total, "relation": "eq"}
        elif track not in (False, "false"):
            limit = int(track)
            result_hits["total"] = {"value": min(total, limit), "relation": "eq" if total <= limit else "gte"}
        result_hits["max_score"] = None if sort or not out_hits else 1.0
        result_hits["hits"] = out_hits
        return 200, {
            "took": int((time.monotonic() - started) * 1000),
            "timed_out": False,
            "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0},
            "hits": result_hits,
        }

    @staticmethod
    def _filter_source(source: JSON, spec: Any) -> JSON:
        if spec in (True, "true", None):
            return copy.deepcopy(source)
        includes = spec if isinstance(spec, list) else spec.get("includes", []) if isinstance(spec, dict) else (
            str(spec).split(","))
        out: JSON = {}
        for key, value in source.items():
            if any(_simple_match(p, key) or p.startswith(key + ".") or key.startswith(p + ".") for p in includes):
                out[key] = copy.deepcopy(value)
        return out

    def _count(self, req: _Request, target: str) -> tuple[int, Any]:
        _, hits, shards = self._search_hits(req, target)
        return 200, {"count": len(hits), "_shards": {"total": shards, "successful": shards, "skipped": 0,
                                                     "failed": 0}}

    # -- writes --------------------------------------------------------------------------------------------------

    def _bulk(self, req: _Request, target: str | None) -> tuple[int, Any]:
        started = time.monotonic()
        if not req.body:
            raise EsError(400, "parse_exception", "request body is required")
        ops = _parse_bulk(req.body, target, req.params.get("pipeline"))
        refresh = req.params.get("refresh", "false")
        if refresh not in ("", "true", "false", "wait_for"):
            raise _illegal(f"Unknown value for refresh: [{refresh}].")
        list_pipelines = _truthy(req.params.get("list_executed_pipelines"))
        items: list[JSON] = []
        touched: dict[str, _Index] = {}
        ingest = False
        with self._lock:
            for op in ops:
                outcome, index, ran = self._execute(op, list_pipelines)
                ingest = ingest or ran
                items.append({op.action: outcome})
                if index is not None:
                    touched[index.name] = index
            if refresh in ("", "true", "wait_for"):
                for index in touched.values():
                    index.refresh()
        if refresh in ("", "true"):
            for item in items:
                outcome = next(iter(item.values()))
                if "error" not in outcome:
                    outcome["forced_refresh"] = True
        response: JSON = {"errors": any("error" in next(iter(i.values())) for i in items),
                          "took": int((time.monotonic() - started) * 1000)}
        if ingest:
            response["ingest_took"] = 0
        response["items"] = items
        return 200, response

    def _single(self, req: _Request, target: str, doc_id: str | None, op_type: str) -> tuple[int, Any]:
        """Single-document APIs (``_doc``, ``_create``, DELETE ``_doc``) share the bulk item path."""
        if op_type == "delete":
            source = None
        else:
            req.object()  # the body must be a JSON object; the raw bytes are kept for error positions
            source = req.body
        op = _Op(1, "create" if op_type == "create" else op_type, {}, source, op_type, target, doc_id,
                 req.params.get("pipeline"))
        with self._lock:
            outcome, index, _ = self._execute(op, False)
            if index is not None and req.params.get("refresh") in ("", "true", "wait_for"):
                index.refresh()
        if "error" in outcome:
            error = outcome["error"]
            extra = {k: v for k, v in error.items() if k not in ("type", "reason", "caused_by")}
            raise EsError(outcome["status"], error["type"], error["reason"], extra=extra,
                          caused_by=error.get("caused_by"))
        status = outcome.pop("status")
        return status, outcome

    def _execute(self, op: _Op, list_pipelines: bool) -> tuple[JSON, _Index | None, bool]:
        """One bulk item, as TransportBulkAction and the shard would handle it. Runs under the lock."""
        name = str(op.index)

        def failure(error: EsError, index_name: str = name, doc_id: str | None = op.id) -> JSON:
            return {"_index": index_name, "_id": doc_id, "status": error.status, "error": error.cause()}

        stream = self._streams.get(name)
        index = stream.write_index if stream else self._indices.get(name)
        if stream is not None and op.op_type != "create":
            return failure(_illegal(_CREATE_ONLY)), None, False
        if index is not None and index.data_stream and stream is None:
            owner = index.data_stream
            if op.op_type == "create":
                return failure(_illegal(f"index request with op_type=create targeting backing indices is "
                                        f"disallowed, target corresponding data stream [{owner}] instead")), None, False
            if op.op_type == "index" and "if_seq_no" not in op.meta:
                return failure(_illegal(f"index request with op_type=index and no if_primary_term and if_seq_no set "
                                        f"targeting backing indices is disallowed, target corresponding data stream "
                                        f"[{owner}] instead")), None, False
        if index is None:
            if op.op_type == "delete":
                return failure(_index_not_found(name, "index_expression")), None, False
            problem = _invalid_index_name(name)
            if problem:
                return failure(EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}",
                                       extra={"index_uuid": "_na_", "index": name})), None, False
            template = self._find_template(name)
            if template and "data_stream" in self._index_templates[template]:
                if op.op_type != "create":
                    return failure(_illegal(_CREATE_ONLY)), None, False
                stream = self._create_data_stream(name, template)
                index = stream.write_index
            else:
                index = self._new_index(name, template)
        doc_id = op.id if op.id is not None else _uuid()  # update/delete without _id fail validation earlier

        if self._reject:
            return failure(self._reject.pop(0), index.name, doc_id), index, False

        def shard_error(status: int, error_type: str, reason: str) -> JSON:
            error = EsError(status, error_type, reason, extra={"index_uuid": index.uuid, "shard": "0",
                                                               "index": index.name})
            return failure(error, index.name, doc_id)

        if op.op_type == "delete":
            return self._delete(index, doc_id, shard_error), index, False
        if op.op_type == "update":
            return self._update(op, index, doc_id, shard_error, failure), index, False

        # index / create: ingest pipelines first (TransportBulkAction runs them before routing to the shard).
        chain = self._pipeline_chain(index, op.pipeline)
        for pipeline in chain:
            if pipeline not in self._pipelines:
                return failure(_illegal(f"pipeline with id [{pipeline}] does not exist"), index.name, doc_id), (
                    index), False
        raw = op.source or b""
        if not raw.strip():
            return failure(EsError(400, "document_parsing_exception", "failed to parse, document is empty"),
                           index.name, doc_id), index, bool(chain)
        try:
            source = json.loads(raw)
        except ValueError as exc:
            message = getattr(exc, "msg", str(exc))
            error = EsError(400, "document_parsing_exception", f"[1:{getattr(exc, 'colno', 1)}] failed to parse: "
                            f"{message}", caused_by={"type": "x_content_parse_exception",
                                                     "reason": f"[1:{getattr(exc, 'colno', 1)}] {message}"})
            return failure(error, index.name, doc_id), index, bool(chain)
        if not isinstance(source, dict):
            error = EsError(400, "document_parsing_exception", "[1:1] Malformed content, must start with an object")
            return failure(error, index.name, doc_id), index, bool(chain)
        if "logs@default-pipeline" in chain and "@timestamp" not in source:
            source["@timestamp"] = _now().isoformat(timespec="microseconds").replace("+00:00", "Z")
            raw = json.dumps(source).encode()

        try:
            ctx = self._parse_document(index, doc_id, source)
        except _DocFailure as exc:
            return failure(exc.to_error(raw), index.name, doc_id), index, bool(chain)

        existing = index.docs.get(doc_id)
        if existing is not None and op.op_type == "create":
            return shard_error(409, "version_conflict_engine_exception",
                               f"[{doc_id}]: version conflict, document already exists (current version "
                               f"[{existing.version}])"), index, bool(chain)
        conflict = self._seq_no_conflict(op.meta, existing, doc_id)
        if conflict:
            return shard_error(409, "version_conflict_engine_exception", conflict), index, bool(chain)
        index.mapping.fields.update(ctx.pending)
        version = existing.version + 1 if existing else index.tombstones.pop(doc_id, 0) + 1
        index.seq_no += 1
        index.docs[doc_id] = StoredDocument(index.name, doc_id, source, version, index.seq_no, tuple(chain),
                                            tuple(ctx.ignored))
        index.dirty = True
        index.last_write = time.monotonic()
        result = self._ok(index, doc_id, version, "updated" if existing else "created", 200 if existing else 201)
        if list_pipelines:
            result["executed_pipelines"] = list(chain)
        return result, index, bool(chain)

    @staticmethod
    def _seq_no_conflict(meta: Mapping[str, Any], existing: StoredDocument | None, doc_id: str) -> str | None:
        if "if_seq_no" not in meta and "if_primary_term" not in meta:
            return None
        want_seq, want_term = int(meta.get("if_seq_no", -2)), int(meta.get("if_primary_term", 0))
        if existing is None or existing.seq_no != want_seq or want_term != 1:
            current = f"current document has seqNo [{existing.seq_no}] and primary term [1]" if existing else (
                "document does not exist")
            return (f"[{doc_id}]: version conflict, required seqNo [{want_seq}], primary term [{want_term}]. "
                    f"{current}")
        return None

    def _pipeline_chain(self, index: _Index, requested: str | None) -> list[str]:
        """Request pipeline (or the index default, unless ``_none``), then the final pipeline."""
        chain: list[str] = []
        if requested == "_none":
            pass
        elif requested:
            chain.append(requested)
        elif index.settings.get("index.default_pipeline") not in (None, "_none"):
            chain.append(str(index.settings["index.default_pipeline"]))
        final = index.settings.get("index.final_pipeline")
        if final not in (None, "_none"):
            chain.append(str(final))
        return chain

    @staticmethod
    def _ok(index: _Index, doc_id: str, version: int, result: str, status: int) -> JSON:
        return {"_index": index.name, "_id": doc_id, "_version": version, "result": result,
                "_shards": {"total": 1 + index.replicas, "successful": 1, "failed": 0}, "_seq_no": index.seq_no,
                "_primary_term": 1, "status": status}

    def _delete(self, index: _Index, doc_id: str, shard_error: Callable[[int, str, str], JSON]) -> JSON:
        existing = index.docs.pop(doc_id, None)
        index.seq_no += 1
        index.dirty = True
        index.last_write = time.monotonic()
        if existing is None:
            version = index.tombstones.get(doc_id, 0) + 1
            return self._ok(index, doc_id, version, "not_found", 404)  # not a failure: "errors" stays false
        index.tombstones[doc_id] = existing.version + 1
        return self._ok(index, doc_id, existing.version + 1, "deleted", 200)

    def _update(self, op: _Op, index: _Index, doc_id: str, shard_error: Callable[[int, str, str], JSON],
                failure: Callable[..., JSON]) -> JSON:
        update = op.update or {}
        if "script" in update:
            return failure(_illegal("[emulator] scripted updates are not supported by the test emulator"),
                           index.name, doc_id)
        existing = index.docs.get(doc_id)
        doc = update.get("doc")
        if existing is None:
            if update.get("upsert") is not None:
                source = copy.deepcopy(update["upsert"])
            elif update.get("doc_as_upsert") and isinstance(doc, dict):
                source = copy.deepcopy(doc)
            else:
                return shard_error(404, "document_missing_exception", f"[{doc_id}]: document missing")
            result, status = "created", 201
        else:
            if not isinstance(doc, dict):
                return failure(_validation_failed(["script or doc is missing"]), index.name, doc_id)
            source = copy.deepcopy(existing.source)
            _deep_merge(source, doc)
            if update.get("detect_noop", True) and source == existing.source:
                return {"_index": index.name, "_id": doc_id, "_version": existing.version, "result": "noop",
                        "_shards": {"total": 0, "successful": 0, "failed": 0}, "_seq_no": existing.seq_no,
                        "_primary_term": 1, "status": 200}
            result, status = "updated", 200
        try:
            ctx = self._parse_document(index, doc_id, source)
        except _DocFailure as exc:
            return failure(exc.to_error(json.dumps(source)), index.name, doc_id)
        index.mapping.fields.update(ctx.pending)
        version = existing.version + 1 if existing else index.tombstones.pop(doc_id, 0) + 1
        index.seq_no += 1
        index.docs[doc_id] = StoredDocument(index.name, doc_id, source, version, index.seq_no, (), tuple(ctx.ignored))
        index.dirty = True
        index.last_write = time.monotonic()
        return self._ok(index, doc_id, version, result, status)

    # -- document parsing against the mapping --------------------------------------------------------------------

    def _parse_document(self, index: _Index, doc_id: str, source: JSON) -> _ParseCtx:
        """Check a document the way DocumentParser does; dynamic mapping updates are staged in ``ctx.pending`` and
        only applied when the write succeeds."""
        ctx = _ParseCtx(index, doc_id, index.mapping.fields)
        self._walk(source, "", index.mapping.dynamic, ctx)
        if index.data_stream:
            stamp = source.get("@timestamp")
            if isinstance(stamp, list):
                present = [v for v in stamp if v is not None]
                if len(present) > 1:
                    raise _DocFailure("document_parsing_exception", "failed to parse: data stream timestamp field "
                                      "[@timestamp] encountered multiple values", anchor="end", caused_by=(
                                          "illegal_argument_exception",
                                          "data stream timestamp field [@timestamp] encountered multiple values"))
                stamp = present[0] if present else None
            if stamp is None:
                # DataStreamTimestampFieldMapper.postParse, wrapped by DocumentParser ("[1:N] failed to parse: ...").
                raise _DocFailure("document_parsing_exception",
                                  "failed to parse: data stream timestamp field [@timestamp] is missing",
                                  anchor="end", caused_by=("illegal_argument_exception",
                                                           "data stream timestamp field [@timestamp] is missing"))
        return ctx

    def _walk(self, obj: dict[str, Any], prefix: str, dynamic: str, ctx: _ParseCtx) -> None:
        synthetic = type(obj) is _Dotted
        for key, value in obj.items():
            try:
                if "." in key or not key or key.isspace():
                    if not key:
                        raise _DocFailure("document_parsing_exception", "field name cannot be an empty string")
                    parts = key.split(".")
                    if any(not p for p in parts):
                        raise _DocFailure("document_parsing_exception", "object field starting or ending with a [.] "
                                          f"makes object resolution ambiguous: [{key}]")
                    if any(not p.strip() for p in parts):
                        raise _DocFailure("document_parsing_exception",
                                          f"object field cannot contain only whitespace: ['{key}']")
                    if len(parts) > 1:
                        nested: Any = value
                        for part in reversed(parts[1:]):
                            nested = _Dotted({part: nested})
                        self._field(prefix, parts[0], nested, dynamic, ctx)
                        continue
                self._field(prefix, key, value, dynamic, ctx)
            except _DocFailure as exc:
                if not synthetic:
                    exc.jpath.insert(0, key)
                raise

    def _field(self, prefix: str, name: str, value: Any, dynamic: str, ctx: _ParseCtx) -> None:
        if value is None:
            return
        path = prefix + name
        spec = ctx.fields.get(path) or ctx.pending.get(path)
        if spec is None:
            if dynamic == "strict":
                raise _DocFailure("strict_dynamic_mapping_exception", f"mapping set to strict, dynamic introduction "
                                  f"of [{name}] within [{prefix[:-1] or '_doc'}] is not allowed")
            if dynamic != "true":
                return  # dynamic: false / runtime - kept in _source, not indexed
            spec = self._dynamic_spec(path, name, value, ctx)
            if spec is None:
                return
            ctx.pending[path] = spec
        ftype = spec["type"]
        if ftype in _OBJECT_TYPES:
            if spec.get("enabled") is False:
                return
            inner = spec.get("dynamic", dynamic)
            self._object_value(path, name, value, inner, ctx)
            return
        if ftype in _OPAQUE_TYPES or (ftype in _ANY_SCALAR and type(value) in _SCALARS):
            return  # the common case, decided without a call
        self._leaf(path, spec, value, ctx)

    def _object_value(self, path: str, name: str, value: Any, dynamic: str, ctx: _ParseCtx) -> None:
        if isinstance(value, dict):
            self._walk(value, path + ".", dynamic, ctx)
            return
        if isinstance(value, list):
            for position, item in enumerate(value):
                try:
                    if item is not None:
                        self._object_value(path, name, item, dynamic, ctx)
                except _DocFailure as exc:
                    exc.jpath.insert(0, position)
                    raise
            return
        raise _DocFailure("document_parsing_exception", f"object mapping for [{path}] tried to parse field [{name}] "
                          "as object, but found a concrete value")

    def _leaf(self, path: str, spec: JSON, value: Any, ctx: _ParseCtx) -> None:
        if isinstance(value, list):
            for position, item in enumerate(value):
                try:
                    if item is not None:
                        self._leaf(path, spec, item, ctx)
                except _DocFailure as exc:
                    exc.jpath.insert(0, position)
                    raise
            return
        ftype = spec["type"]
        if isinstance(value, dict):
            problem: Problem = ("illegal_state_exception", "Can't get text on a START_OBJECT at 1:{start}")
        else:
            check = _CHECKS.get(ftype)
            if check is None or (check is _check_text and ftype != "constant_keyword"):
                return  # unknown types are accepted; keyword-like types take any scalar
            problem = check(value, spec)
            if problem is None and ftype == "constant_keyword":
                problem = self._constant_keyword(path, spec, value, ctx)
            if problem is None:
                return
        if (ftype in _IGNORE_MALFORMED_TYPES and not (ctx.index.data_stream and path == "@timestamp")
                and spec.get("ignore_malformed", ctx.index.mapping.ignore_malformed) in (True, "true")):
            ctx.ignored.append(path)  # ignore_malformed: the document is kept, the field goes to _ignored
            return
        preview = _java_text(value)
        raise _DocFailure("document_parsing_exception", f"failed to parse field [{path}] of type [{ftype}] in "
                          f"document with id '{ctx.doc_id}'. Preview of field's value: '{preview}'",
                          caused_by=problem, anchor="end" if isinstance(value, dict) else "start")

    @staticmethod
    def _constant_keyword(path: str, spec: JSON, value: Any, ctx: _ParseCtx) -> Problem:
        text = _java_text(value)
        if "value" not in spec:
            ctx.pending[path] = {**spec, "value": text}  # the first document sets the value
            return None
        if spec["value"] != text:
            return "illegal_argument_exception", (
                f"[constant_keyword] field [{path}] only accepts values that are equal to the value defined in the "
                f"mappings [{spec['value']}], but got [{text}]")
        return None

    def _dynamic_spec(self, path: str, name: str, value: Any, ctx: _ParseCtx) -> JSON | None:
        """Dynamic mapping: dynamic templates first, then the JSON type (string -> text+keyword, integer -> long,
        decimal -> float, string that looks like a date -> date when date_detection is on)."""
        sample = value
        while isinstance(sample, list):
            sample = next((item for item in sample if item is not None), None)
        if sample is None:
            return None
        mapping = ctx.index.mapping
        if isinstance(sample, dict):
            json_type = "object"
        elif isinstance(sample, bool):
            json_type = "boolean"
        elif isinstance(sample, int):
            json_type = "long"
        elif isinstance(sample, float):
            json_type = "double"
        else:
            json_type = "string"
            if mapping.numeric_detection and re.fullmatch(r"[+-]?\d+", sample):
                json_type = "long"
            elif mapping.numeric_detection and _check_float(sample, {}) is None:
                json_type = "double"
            elif mapping.date_detection and _DATE_DETECTION.fullmatch(sample) and _valid_iso(sample.replace("/", "-")):
                json_type = "date"
        template = mapping.find_template(path, name, json_type)
        if template is not None:
            return template
        spec: JSON = {"type": _DYNAMIC_DEFAULTS[json_type]}
        if json_type == "string":
            spec["fields"] = {"keyword": {"type": "keyword", "ignore_above": 256}}
        return spec


def _deep_merge(target: JSON, patch: Mapping[str, Any]) -> None:
    """Partial-document update semantics: objects merge recursively, everything else is replaced."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
