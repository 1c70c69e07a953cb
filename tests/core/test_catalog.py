"""The rule catalog is data users edit: it must load, validate with clear errors, and match the checks' code."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from connector.core.catalog import load_catalog
from connector.core.errors import ConfigError
from connector.core.resources import mappings_dir
from connector.scan.checks import available_checks
from support.cli import connector


def test_every_rule_is_emitted_by_its_check_and_every_emitted_rule_is_catalogued(catalog) -> None:
    checks = available_checks()
    prefixes = "|".join(sorted({rule.id.split(".")[0] for rule in catalog}))
    rule_literal = re.compile(rf'"((?:{prefixes})\.[a-z0-9_.]+)"')
    for name, check in checks.items():
        source = Path(sys.modules[type(check).__module__].__file__ or "").read_text()
        emitted = {literal for literal in rule_literal.findall(source)
                   if not literal.endswith((".yaml", ".json", ".csv"))}  # data files named like their rules
        catalogued = {rule.id for rule in catalog.for_check(name)}
        assert catalogued, f"check {name} has no rules in the catalog"
        assert catalogued <= emitted | {"scan.error"}, f"{name}: catalogued but never emitted: {catalogued - emitted}"
        assert emitted <= catalogued, f"{name}: emitted but not catalogued: {emitted - catalogued}"
    assert {rule.check for rule in catalog} <= set(checks) | {"engine"}


def test_rules_map_to_compliance_controls(catalog) -> None:
    for rule in catalog:
        if rule.category in ("certificate", "tls") and rule.severity.value in ("high", "critical"):
            assert rule.compliance.pci_dss_4_0, f"{rule.id} should cite PCI DSS 4.0 requirement 4.2.1"
    assert "pci_dss_4_0:4.2.1" in catalog["cert.expired"].compliance.flattened()


def write_catalog(tmp_path: Path, text: str) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "custom.yaml").write_text(text)
    return rules


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  - id: Bad Id\n", "rules.0.id"),
        ("rules:\n  - {id: a.b, title: Title, description: long enough text, severity: urgent, category: tls,"
         " check: tls, remediation: long enough text}\n", "rules.0.severity"),
        ("rules:\n  - {id: a.b, title: Title, description: long enough text, severity: low, category: tls,"
         " check: tls, remediation: long enough text, compliance: {sox: [x]}}\n", "rules.0.compliance.sox"),
        ("nothing: here\n", "rules: Field required"),
    ],
)
def test_invalid_catalog_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_catalog(write_catalog(tmp_path, text))
    assert message in str(raised.value)
    assert "custom.yaml" in str(raised.value)


def test_duplicate_rule_ids_across_files_are_rejected(tmp_path: Path) -> None:
    rules = write_catalog(tmp_path, (mappings_dir() / "rules" / "tls.yaml").read_text())
    (rules / "again.yaml").write_text((mappings_dir() / "rules" / "tls.yaml").read_text())
    with pytest.raises(ConfigError, match="is defined in both"):
        load_catalog(rules)


def test_rules_command_lists_the_catalog_as_json(catalog) -> None:
    done = connector("rules", "--format", "json")
    listed = json.loads(done.stdout)
    assert [rule["id"] for rule in listed] == [rule.id for rule in catalog]
    expired = next(rule for rule in listed if rule["id"] == "cert.expired")
    assert expired["severity"] == "critical" and "4.2.1" in expired["compliance"]["pci_dss_4_0"]


def test_rules_table_shows_every_rule() -> None:
    done = connector("rules", "--category", "tls")
    assert "tls.cipher.export" in done.stdout and "cert.expired" not in done.stdout
