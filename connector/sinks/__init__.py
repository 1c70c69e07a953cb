"""Sinks: where events go. One module per sink type, registered by defining ``SINK`` (a Sink subclass).

Configuration entries (``sinks:`` in the YAML) are validated against the sink type's settings model, so a new
sink is one new file here and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from pydantic import ValidationError

from connector.catalog import format_validation_error
from connector.errors import ConfigError
from connector.sinks.base import Sink, SinkSettings

SinkClass = type[Sink]


@cache
def sink_types() -> dict[str, SinkClass]:
    found: dict[str, SinkClass] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_") or module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        sink = getattr(module, "SINK", None)
        if isinstance(sink, type) and issubclass(sink, Sink):
            found[sink.type_name] = sink
    return dict(sorted(found.items()))


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


def build_sink(settings: SinkSettings) -> Sink:
    return sink_types()[settings.type](settings)
