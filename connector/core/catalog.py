"""The rule catalog: what each rule means, how bad it is, how to fix it, and which controls it maps to.

Rules are data (``mappings/rules/*.yaml``) so users can read, tune and extend them without touching code; this
module validates them at load and says exactly which file and field is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from connector.core.errors import ConfigError, format_validation_error
from connector.core.model import Severity
from connector.core.resources import mappings_dir
from connector.core.yamlio import load_yaml

RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")]
Control = Annotated[str, StringConstraints(min_length=1, max_length=80)]


class Compliance(BaseModel):
    """Controls a failing rule is evidence against; empty where a framework has nothing specific."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pci_dss_4_0: tuple[Control, ...] = ()
    soc2: tuple[Control, ...] = ()
    iso27001_2022: tuple[Control, ...] = ()
    hipaa: tuple[Control, ...] = ()
    gdpr: tuple[Control, ...] = ()
    cis_v8: tuple[Control, ...] = ()

    def flattened(self) -> list[str]:
        """``framework:control`` strings, the form SIEM users filter on."""
        return [f"{name}:{control}" for name, controls in self if isinstance(controls, tuple) for control in controls]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RuleId
    title: str = Field(min_length=3, max_length=200)
    description: str = Field(min_length=10)
    severity: Severity
    category: str = Field(pattern=r"^[a-z_]+$")
    check: str = Field(pattern=r"^[a-z_]+$")
    remediation: str = Field(min_length=10)
    references: tuple[AnyHttpUrl, ...] = ()
    compliance: Compliance = Compliance()
    tags: tuple[str, ...] = ()


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule]


@dataclass(frozen=True)
class Catalog:
    name: str
    version: str
    rules: dict[str, Rule]

    def __getitem__(self, rule_id: str) -> Rule:
        return self.rules[rule_id]

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self.rules

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules.values())

    def __len__(self) -> int:
        return len(self.rules)

    def for_check(self, check: str) -> list[Rule]:
        return [rule for rule in self if rule.check == check]


CATALOG_NAME = "postern-core"
CATALOG_VERSION = "2026.11"


def load_catalog(directory: Path | None = None) -> Catalog:
    """Load every ``*.yaml`` under ``directory`` (default: the shipped ``mappings/rules``)."""
    root = directory or mappings_dir() / "rules"
    files = sorted(root.glob("*.yaml"))
    if not files:
        raise ConfigError(f"rule catalog: no *.yaml files in {root}")
    rules: dict[str, Rule] = {}
    origin: dict[str, Path] = {}
    for path in files:
        try:
            parsed = CatalogFile.model_validate(load_yaml(path))
        except ValidationError as exc:
            raise ConfigError(f"rule catalog {path}: {format_validation_error(exc)}") from None
        for rule in parsed.rules:
            if rule.id in rules:
                raise ConfigError(f"rule catalog: {rule.id} is defined in both {origin[rule.id]} and {path}")
            rules[rule.id] = rule
            origin[rule.id] = path
    return Catalog(CATALOG_NAME, CATALOG_VERSION, rules)
