"""Findings to CEF:0 lines, as ``mappings/cef.yaml`` says, with exact header and extension escaping."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connector.core.errors import ConfigError
from connector.normalise.fieldmap import TRANSFORMS, Getter, compile_source, is_empty

_HEADER_KEYS = ("vendor", "product", "version", "signature_id", "name", "severity")
_KEY = re.compile(r"^[A-Za-z0-9]+$")
_LABELLED = re.compile(r"^(cs[1-6]|cn[1-3]|cfp[1-4]|c6a[1-4]|deviceCustomDate[12]|flexString[12]|flexNumber[12])$")


# C0 and C1 controls (NUL, VT, FF, NEL, ...), DEL and the Unicode line and paragraph separators: receivers split
# lines or truncate at some of them and CEF has no escape for them, so they become spaces. So do lone surrogates
# (JSON's "\ud800" decodes to one), which no UTF-8 line can carry. TAB stays: it splits nothing, and rsyslog and
# ArcSight keep it.
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def escape_header(value: Any) -> str:
    """Header fields: backslash and pipe are escaped; a header has no line breaks: CR LF and controls become spaces."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return _UNSAFE.sub(" ", text.replace("\r\n", " "))


def escape_extension(value: Any) -> str:
    """Extension values: backslash, equals sign, CR and LF are escaped, other controls become spaces; pipes stay."""
    text = str(value).replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")
    return _UNSAFE.sub(" ", text)


@dataclass(frozen=True)
class _ExtensionField:
    key: str
    get: Getter
    label: str | None
    max: int | None


class CefEncoder:
    def __init__(self, spec: dict[str, Any], where: str) -> None:
        lookups = spec.get("lookups") or {}
        header = spec.get("header") or {}
        missing = [key for key in _HEADER_KEYS if key not in header]
        if missing:
            raise ConfigError(f"{where}: header needs {missing}")
        self.header = [compile_source(header[key], lookups, f"{where}: header.{key}") for key in _HEADER_KEYS]
        self.extension: list[_ExtensionField] = []
        for key, raw in (spec.get("extension") or {}).items():
            if not _KEY.match(str(key)):
                raise ConfigError(f"{where}: extension key {key!r} must be alphanumeric")
            label = max_length = None
            entry = raw
            if isinstance(raw, dict):
                entry = dict(raw)
                label = entry.pop("label", None)
                max_length = entry.pop("max", None)
            if label is not None and not _LABELLED.match(str(key)):
                raise ConfigError(f"{where}: extension {key}: only custom keys (cs1, cn1, ...) take a label")
            self.extension.append(
                _ExtensionField(str(key), compile_source(entry, lookups, f"{where}: extension.{key}"), label,
                                int(max_length) if max_length else None)
            )

    def encode(self, context: dict[str, Any]) -> str:
        vendor, product, version, signature, name, severity = (get(context) for get in self.header)
        parts = []
        for field in self.extension:
            value = field.get(context)
            if is_empty(value):
                continue
            if isinstance(value, list | tuple):
                value = TRANSFORMS["join"](value)
            elif isinstance(value, dict):
                value = TRANSFORMS["json"](value)
            text = str(value)
            if field.max is not None and len(text) > field.max:
                text = text[: field.max]
            if field.label is not None:
                parts.append(f"{field.key}Label={escape_extension(field.label)}")
            parts.append(f"{field.key}={escape_extension(text)}")
        head = "|".join(
            escape_header("" if item is None else item)
            for item in (vendor, product, version, signature, name, severity)
        )
        return f"CEF:0|{head}|{' '.join(parts)}"
