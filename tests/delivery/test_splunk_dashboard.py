"""The TA's posture dashboard reads fields the connector emits: every postern.* field in its searches is one the
events carry (the Elasticsearch field list is built from the same encoders), and every CIM field is one props.conf
defines, so no panel is silently empty."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from connector.delivery.sinks.elasticsearch import assets as elastic

TA = Path(__file__).parents[2] / "mappings" / "splunk" / "TA-postern"
DASHBOARD = TA / "default" / "data" / "ui" / "views" / "postern_posture.xml"
CIM_FIELDS = {"dest", "dest_port", "signature_id", "severity", "ssl_issuer_common_name"}


def queries() -> list[str]:
    return [node.text or "" for node in ElementTree.parse(DASHBOARD).iter("query")]


def test_every_panel_queries_fields_the_events_carry() -> None:
    emitted = set(elastic.field_types())
    tokens = {token for query in queries() for token in re.findall(r"(?<![=\w.])[\w.*]+", query)}  # not values
    named = {token for token in tokens if token.startswith(("postern.", "event.", "rule.")) and "*" not in token}
    assert {"postern.kpi.risk_score", "postern.kpi.open.critical", "postern.drift.kind"} <= named
    assert named <= emitted, sorted(named - emitted)
    wildcards = {name for query in queries() for name in re.findall(r"postern\.kpi\.compliance\.\*\.score", query)}
    assert wildcards and all(f"postern.kpi.compliance.{f}.score" in emitted for f in ("pci_dss_4_0", "soc2"))


def test_the_cim_fields_it_uses_are_defined_by_the_ta() -> None:
    props = (TA / "default" / "props.conf").read_text()
    defined = set(re.findall(r"^EVAL-([a-z_]+) =", props, re.MULTILINE))
    used = {name for name in CIM_FIELDS if any(re.search(rf"\b{name}\b", query) for query in queries())}
    assert used == CIM_FIELDS and used <= defined, sorted(used - defined)
