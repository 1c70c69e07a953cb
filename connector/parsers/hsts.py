"""Strict-Transport-Security parsing as user agents do it (RFC 6797, section 6.1 and 8.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

ONE_YEAR = 31_536_000
_MAX_AGE_DIGITS = 18  # ~3e10 years: beyond it every value means "for ever"

_DIRECTIVE = re.compile(r'^\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;"]*))?\s*$')


@dataclass(frozen=True)
class Hsts:
    max_age: int
    include_subdomains: bool
    preload: bool


class HstsError(ValueError):
    """The header would be ignored by a browser; the message says why."""


def parse_hsts(header_values: list[str]) -> Hsts:
    """Parse the first STS header (UAs ignore later ones); raises HstsError if a browser would ignore it."""
    if not header_values:
        raise HstsError("no Strict-Transport-Security header")
    directives: dict[str, str | None] = {}
    for raw in header_values[0].split(";"):
        if not raw.strip():
            continue
        match = _DIRECTIVE.match(raw)
        if match is None:
            raise HstsError(f"malformed directive {raw.strip()!r}")
        name = match.group(1).lower()
        if name in directives:
            raise HstsError(f"directive {name!r} appears twice")
        value = match.group(2)
        if value is not None and value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        directives[name] = value
    if "max-age" not in directives:
        raise HstsError("max-age directive is missing")
    max_age = directives["max-age"] or ""
    if not re.fullmatch(r"[0-9]+", max_age):  # ASCII digits only: str.isdigit() also accepts "²", which int() refuses
        raise HstsError(f"max-age {max_age!r} is not a number of seconds")
    significant = max_age.lstrip("0") or "0"
    # More digits than any date needs: clamp, as browsers clamp long max-ages (int() refuses thousands of digits,
    # and the evidence must stay a 64-bit integer for orjson and Elasticsearch longs)
    seconds = int(significant) if len(significant) <= _MAX_AGE_DIGITS else 10**_MAX_AGE_DIGITS - 1
    return Hsts(seconds, "includesubdomains" in directives, "preload" in directives)
