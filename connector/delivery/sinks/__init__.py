"""Sinks: where events go. One module per sink type, registered by defining ``SINK`` (a Sink subclass).

Configuration entries (``sinks:`` in the YAML) are validated against the sink type's settings model, so a new
sink is one new module (or a package exporting ``SINK``, when it brings its own SIEM-side setup) here.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeGuard

from pydantic import ValidationError

from connector.core.errors import ConfigError, format_validation_error
from connector.core.registry import discover
from connector.delivery.sinks.base import Sink, SinkSettings

SinkClass = type[Sink[Any]]


def _is_sink(value: object) -> TypeGuard[SinkClass]:
    return isinstance(value, type) and issubclass(value, Sink)


def _type_name(sink: SinkClass) -> str:
    return sink.type_name


@cache
def sink_types() -> dict[str, SinkClass]:
    return discover(__name__, "SINK", _is_sink, _type_name)


def parse_sink(entry: Any, where: str) -> SinkSettings:
    """Validate one ``sinks:`` entry against its type's settings; errors name the entry and field."""
    if not isinstance(entry, dict) or "type" not in entry:
        raise ConfigError(f"{where}: each sink needs a type ({', '.join(sink_types())})")
    sink = sink_types().get(str(entry["type"]))
    if sink is None:
        raise ConfigError(f"{where}.type: unknown sink type {entry['type']!r} (known: {', '.join(sink_types())})")
    try:
        return sink.settings_model.model_validate(entry)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {format_validation_error(exc)}") from None


def build_sink(settings: SinkSettings) -> Sink[Any]:
    return sink_types()[settings.type](settings)
