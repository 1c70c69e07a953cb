"""Checks, one module each. A module registers its check by defining ``CHECK``; nothing else needs editing."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from connector.checks.base import AnyCheck, Check, ScanContext, ScanSettings

__all__ = ["AnyCheck", "Check", "ScanContext", "ScanSettings", "available_checks"]


@cache
def available_checks() -> dict[str, AnyCheck]:
    found: dict[str, AnyCheck] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_") or module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        check = getattr(module, "CHECK", None)
        if isinstance(check, Check):
            if check.name in found:
                raise RuntimeError(f"two checks are named {check.name!r}")
            found[check.name] = check
    return dict(sorted(found.items()))
