"""Checks, one module each (named after the check). A module registers its check by defining ``CHECK``."""

from __future__ import annotations

from functools import cache
from typing import Any, TypeGuard

from connector.core.registry import discover
from connector.scan.checks.base import AnyCheck, Check

__all__ = ["AnyCheck", "Check", "available_checks"]


def _is_check(value: object) -> TypeGuard[AnyCheck]:
    return isinstance(value, Check)


def _name(check: Check[Any, Any]) -> str:
    return check.name


@cache
def available_checks() -> dict[str, AnyCheck]:
    return discover(__name__, "CHECK", _is_check, _name)
