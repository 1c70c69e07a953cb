"""Elasticsearch assets: ECS-typed mappings for every field the connector emits, templates, ILM, pipeline.

The mappings component template is rendered from mappings/ecs.yaml (what we emit) and the ECS reference (how
ECS types it), so mappings never drift from the events. The rendered file is kept in mappings/elastic/ for
review; ``connector elastic setup`` installs the assets, and a test checks the kept file is current.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from connector.core.errors import ConfigError, ConnectorError
from connector.core.resources import mappings_dir
from connector.core.yamlio import load_yaml
from connector.delivery.sinks.base import SetupStep
from connector.normalise.assets import ASSET_ECS_FIELDS
from connector.normalise.audit import AUDIT_ECS_FIELDS
from connector.normalise.digest import DIGEST_ECS_FIELDS
from connector.normalise.drift import DRIFT_ECS_FIELDS
from connector.normalise.ecs import ecs_reference
from connector.normalise.kpi import KPI_ECS_FIELDS

MAPPINGS_TEMPLATE = "postern-findings-mappings"
SETTINGS_TEMPLATE = "postern-findings-settings"
INDEX_TEMPLATE = "postern-findings"
POLICY = "postern-findings"
PIPELINE = "postern-findings"
_NOT_INDEXED_TYPES = {"object", "nested"}


def field_types(directory: Path | None = None) -> dict[str, str]:
    """Every leaf field the ECS mapping can emit, with its Elasticsearch type."""
    root = directory or mappings_dir()
    spec = load_yaml(root / "ecs.yaml")
    custom = load_yaml(root / "elastic" / "custom-fields.yaml") or {}
    reference = ecs_reference(directory)
    namespace = str(spec["custom_namespace"])
    types: dict[str, str] = {"event.category": "keyword", "event.type": "keyword", "event.ingested": "date"}
    for stream_field in ("data_stream.type", "data_stream.dataset", "data_stream.namespace"):
        types[stream_field] = "constant_keyword"
    for target in spec["fields"]:
        if target.startswith(namespace + "."):
            if target not in custom:
                raise ConfigError(f"mappings/elastic/custom-fields.yaml: no type for {target}")
            types[target] = str(custom[target])
        elif target in reference and reference[target].type not in _NOT_INDEXED_TYPES:
            types[target] = reference[target].type
        else:  # a whole object, e.g. tls.server.x509 or dns.answers: every ECS field under it
            for name, field in reference.items():
                if name.startswith(target + "."):
                    types[name] = field.type
    types |= AUDIT_ECS_FIELDS | ASSET_ECS_FIELDS | DRIFT_ECS_FIELDS | KPI_ECS_FIELDS | DIGEST_ECS_FIELDS
    # the fields of the other event kinds (audit, asset, drift, kpi), which no mapping file targets
    types |= {name: str(kind) for name, kind in custom.items() if name not in types}
    return {name: kind for name, kind in sorted(types.items()) if kind not in _NOT_INDEXED_TYPES}


def render_mappings(types: dict[str, str]) -> dict[str, Any]:
    """The mappings component template for ``types`` (from field_types)."""
    properties: dict[str, Any] = {}
    for name, kind in types.items():
        node = properties
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        leaf: dict[str, Any] = {"type": kind}
        if kind == "keyword":
            leaf["ignore_above"] = 1024
        if kind == "date":
            leaf["format"] = "strict_date_optional_time||epoch_millis"
        node[parts[-1]] = leaf
    return {
        "template": {"mappings": {"dynamic": "false", "date_detection": False, "properties": properties}},
        "_meta": {"managed_by": "postern-connector", "ecs_version": "9.4.0",
                  "note": "rendered by `connector elastic render` from mappings/ecs.yaml; do not edit"},
    }


def rendered_path(directory: Path | None = None) -> Path:
    return (directory or mappings_dir()) / "elastic" / "component-mappings.json"


def write_rendered(directory: Path | None = None) -> tuple[Path, int]:
    """Write the rendered template next to the other assets; returns its path and how many fields it maps."""
    path = rendered_path(directory)
    types = field_types(directory)
    path.write_text(json.dumps(render_mappings(types), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path, len(types)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return value


def templates_installed(client: Elasticsearch) -> bool:
    return bool(client.indices.exists_index_template(name=INDEX_TEMPLATE))


def setup(client: Elasticsearch, data_stream: str, directory: Path | None = None) -> list[SetupStep]:
    """Install (or update) ILM policy, ingest pipeline, component and index templates; idempotent."""
    root = (directory or mappings_dir()) / "elastic"
    template = _load_json(root / "index-template.json")
    patterns = template.get("index_patterns", [])
    if not any(fnmatch.fnmatchcase(data_stream, pattern) for pattern in patterns):
        template["index_patterns"] = [*patterns, data_stream]
    steps = []
    try:
        client.ilm.put_lifecycle(name=POLICY, body=_load_json(root / "ilm-policy.json"))
        steps.append(SetupStep(f"ILM policy {POLICY}", "installed"))
        client.ingest.put_pipeline(id=PIPELINE, body=_load_json(root / "ingest-pipeline.json"))
        steps.append(SetupStep(f"ingest pipeline {PIPELINE}", "installed"))
        types = field_types(directory)
        client.cluster.put_component_template(name=MAPPINGS_TEMPLATE, body=render_mappings(types))
        steps.append(SetupStep(f"component template {MAPPINGS_TEMPLATE}", f"{len(types)} fields"))
        client.cluster.put_component_template(name=SETTINGS_TEMPLATE, body=_load_json(root / "component-settings.json"))
        steps.append(SetupStep(f"component template {SETTINGS_TEMPLATE}", "installed"))
        client.indices.put_index_template(name=INDEX_TEMPLATE, body=template)
        steps.append(SetupStep(f"index template {INDEX_TEMPLATE}",
                               f"priority {template.get('priority')}, data stream {data_stream}"))
    except (ApiError, TransportError) as exc:
        raise ConnectorError(f"elastic setup failed after {len(steps)} step(s): {exc}") from None
    return steps
