"""The Kibana posture dashboard's saved objects (mappings/elastic/kibana-dashboard.ndjson) hang together and read
fields the connector emits, so an import gives working panels rather than "field not found" errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from connector.core.errors import ConfigError
from connector.delivery.sinks.elasticsearch import assets as elastic
from connector.delivery.sinks.elasticsearch.dashboard import (
    DASHBOARD_ID,
    DATA_VIEW_ID,
    fields_used,
    lens_columns,
    saved_objects,
)

PATTERN = "logs-postern.findings-*"


def test_every_panel_reads_an_emitted_field_of_the_data_view() -> None:
    emitted = set(elastic.field_types())
    objects = saved_objects(PATTERN)
    used = fields_used(objects)
    assert {"postern.kpi.risk_score", "postern.drift.kind", "postern.certificate.days_left"} <= used
    assert used <= emitted, sorted(used - emitted)
    [data_view] = [obj for obj in objects if obj["type"] == "index-pattern"]
    assert data_view["id"] == DATA_VIEW_ID and data_view["attributes"]["title"] == PATTERN
    for lens in (obj for obj in objects if obj["type"] == "lens"):
        state = lens["attributes"]["state"]
        assert [ref["id"] for ref in lens["references"]] == [data_view["id"]]
        queried = set(re.findall(r"([a-z_@][\w.@]*) :", state["query"]["query"]))
        assert queried <= emitted, (lens["id"], sorted(queried - emitted))
        layer = state["datasourceStates"]["formBased"]["layers"]["layer1"]
        assert set(layer["columnOrder"]) == set(layer["columns"]) == set(lens_columns(lens))


def test_the_dashboard_references_each_panel_once_on_a_48_column_grid() -> None:
    objects = saved_objects(PATTERN)
    [dashboard] = [obj for obj in objects if obj["type"] == "dashboard"]
    assert dashboard["id"] == DASHBOARD_ID
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    names = {ref["name"]: ref["id"] for ref in dashboard["references"]}
    assert [names[panel["panelRefName"]] for panel in panels] == [obj["id"] for obj in objects
                                                                  if obj["type"] == "lens"]
    assert all(panel["gridData"]["x"] + panel["gridData"]["w"] <= 48 for panel in panels)
    cells = {(panel["gridData"]["x"], panel["gridData"]["y"]) for panel in panels}
    assert len(cells) == len(panels)  # no two panels at one place


def test_every_object_says_which_version_it_is_in() -> None:
    """Kibana migrates an imported object from the version it names, and one that names none from the oldest:
    Lens migrations written for older state can fail on 8.6+ state (``formBased``; elastic/kibana#166108), and
    the 8.0 multi-space conversion may give an object without ``coreMigrationVersion`` a new id outside the
    default space, so a second import would add a copy instead of overwriting."""
    for obj in saved_objects(PATTERN):
        assert tuple(map(int, obj["coreMigrationVersion"].split("."))) >= (8, 0, 0), obj["id"]
        if obj["type"] == "lens":
            assert obj["typeMigrationVersion"] == "8.6.0"  # formBased layers: the 8.6 shape


def test_the_data_view_follows_the_sinks_dataset() -> None:
    [data_view] = [obj for obj in saved_objects("logs-postern.acme-*") if obj["type"] == "index-pattern"]
    assert data_view["attributes"]["title"] == "logs-postern.acme-*"


def test_a_broken_dashboard_file_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "elastic").mkdir()
    (tmp_path / "elastic" / "kibana-dashboard.ndjson").write_text('{"type": "index-pattern"}\n{not json\n')
    with pytest.raises(ConfigError, match=r"kibana-dashboard.ndjson:2: not JSON"):
        saved_objects(PATTERN, tmp_path)
