"""Value types shared by configuration models: durations (``15m``, ``7d``), sizes (``512MiB``) and secrets."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr

from connector.core.logsetup import register_secret

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> timedelta:
    """``90``, ``"500ms"``, ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"`` or ``"2w"``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 15m, 24h, 7d)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # pydantic reports ValueError with the field's location; OverflowError would escape it
        raise ValueError(f"duration {value!r} is out of range (at most 999999999 days)") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: Any) -> int:
    """``1048576``, ``"512MiB"``, ``"2GiB"`` (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if match is None:
        raise ValueError(f"not a size: {value!r} (use e.g. 512MiB, 2GiB)")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "")[:1].lower()]


ByteSize = Annotated[int, BeforeValidator(parse_size)]


def _resolve_secret(value: Any) -> SecretStr:
    """``{env: NAME}``, ``{file: PATH}`` or (discouraged) a literal; registered for redaction either way."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        resolved = value
    elif isinstance(value, dict) and set(value) == {"env"}:
        resolved = os.environ.get(str(value["env"]), "")
        if not resolved:
            raise ValueError(f"environment variable {value['env']} is not set")
    elif isinstance(value, dict) and set(value) == {"file"}:
        path = Path(str(value["file"]))
        try:
            resolved = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
        if not resolved:
            raise ValueError(f"secret file {path} is empty")
    else:
        raise ValueError("a secret is {env: VARIABLE} or {file: PATH}")
    register_secret(resolved)
    return SecretStr(resolved)


Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]
