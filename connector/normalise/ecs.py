"""Findings to ECS documents, as ``mappings/ecs.yaml`` says, validated against the ECS field definitions."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from connector.core.errors import ConfigError
from connector.core.resources import mappings_dir
from connector.normalise.fieldmap import FieldRule, compile_document, compile_fields


@dataclass(frozen=True)
class EcsField:
    name: str
    type: str
    array: bool
    allowed: frozenset[str]


@cache
def ecs_reference(directory: Path | None = None) -> dict[str, EcsField]:
    """ECS 9.4 field definitions plus the posture-findings fields, from ``mappings/reference``."""
    root = (directory or mappings_dir()) / "reference"
    fields: dict[str, EcsField] = {}
    for name in ("ecs-fields.csv", "cspm-findings-fields.csv"):
        with (root / name).open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                allowed = frozenset(filter(None, (row.get("allowed_values") or "").split(";")))
                fields[row["field"]] = EcsField(row["field"], row["type"], row.get("normalize") == "array", allowed)
    return fields


@cache
def ecs_expected_types(directory: Path | None = None) -> dict[str, frozenset[str]]:
    root = (directory or mappings_dir()) / "reference"
    with (root / "ecs-categorization.csv").open(encoding="utf-8") as handle:
        return {row["category"]: frozenset(row["expected_types"].split(";")) for row in csv.DictReader(handle)}


@dataclass(frozen=True)
class Categorisation:
    category: tuple[str, ...]
    type: tuple[str, ...]


class EcsEncoder:
    def __init__(self, spec: dict[str, Any], where: str, directory: Path | None = None) -> None:
        self.version = str(spec.get("ecs_version") or "")
        self.namespace = str(spec.get("custom_namespace") or "")
        if not self.version or not self.namespace:
            raise ConfigError(f"{where}: ecs_version and custom_namespace are required")
        lookups = spec.get("lookups") or {}
        self.fields: list[FieldRule] = compile_fields(spec.get("fields") or {}, lookups, where)
        self.categories = _categories(spec.get("categories") or {}, where, directory)
        self._build = compile_document(self.fields)
        reference = ecs_reference(directory)
        for rule in self.fields:
            if not self._known(rule.target, reference):
                raise ConfigError(
                    f"{where}: {rule.target} is not an ECS 9.4 field, a posture-findings field, "
                    f"nor under the custom namespace {self.namespace}."
                )

    def _known(self, target: str, reference: dict[str, EcsField]) -> bool:
        if target in reference or target.startswith(self.namespace + "."):
            return True
        return any(name.startswith(target + ".") for name in reference)  # a whole object, e.g. tls.server.x509

    def encode(self, context: dict[str, Any]) -> dict[str, Any]:
        document = self._build(context)
        categorisation = self.categories.get(context["rule"]["category"])
        if categorisation is not None:
            event = document.setdefault("event", {})
            event["category"] = list(categorisation.category)
            event["type"] = list(categorisation.type)
        return document

    def check_rule_categories(self, categories: set[str], where: str) -> None:
        missing = sorted(categories - self.categories.keys())
        if missing:
            raise ConfigError(f"{where}: no ECS categorisation for rule categories {missing}")


def _categories(spec: dict[str, Any], where: str, directory: Path | None) -> dict[str, Categorisation]:
    expected = ecs_expected_types(directory)
    result = {}
    for name, entry in spec.items():
        categories = tuple((entry or {}).get("category") or ())
        types = tuple((entry or {}).get("type") or ())
        for category in categories:
            if category not in expected:
                raise ConfigError(f"{where}: categories.{name}: {category!r} is not an ECS event.category")
            wrong = [kind for kind in types if kind not in expected[category]]
            if wrong:
                raise ConfigError(
                    f"{where}: categories.{name}: event.type {wrong} not expected with event.category {category}"
                    f" (expected: {sorted(expected[category])})"
                )
        if not categories or not types:
            raise ConfigError(f"{where}: categories.{name} needs a category and a type list")
        result[name] = Categorisation(categories, types)
    return result
