"""Validation of ECS documents against the ECS 9.4 field definitions kept in mappings/reference/."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from connector.normalise.ecs import ecs_reference

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def leaves(document: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, value) of every leaf; arrays of objects (dns.answers) contribute each object's leaves."""
    out = []
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(leaves(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            out.append((name, value))
            for item in value:
                out.extend(leaves(item, name + "."))
        else:
            out.append((name, value))
    return out


def assert_ecs_valid(document: dict[str, Any]) -> None:
    reference = ecs_reference()
    for name, value in leaves(document):
        if name.startswith("postern."):
            continue
        assert name in reference, f"{name} is not an ECS 9.4 or posture-findings field"
        field = reference[name]
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            assert field.array or field.type in ("keyword", "wildcard"), f"{name} is not an array field"
        for item in values:
            if field.type in ("object", "nested"):
                assert isinstance(item, dict), f"{name}={item!r} should be an object"
            elif field.type in ("keyword", "constant_keyword", "wildcard", "match_only_text", "text"):
                assert isinstance(item, str), f"{name}={item!r} should be a string"
            elif field.type == "long":
                assert isinstance(item, int) and not isinstance(item, bool), f"{name}={item!r} should be a long"
            elif field.type == "float":
                assert isinstance(item, int | float), f"{name}={item!r} should be a number"
            elif field.type == "date":
                assert isinstance(item, str) and ISO.match(item), f"{name}={item!r} should be an ISO 8601 date"
            elif field.type == "ip":
                ipaddress.ip_address(item)
            elif field.type == "boolean":
                assert isinstance(item, bool)
            if field.allowed:
                assert item in field.allowed, f"{name}={item!r} is not an allowed ECS value"
