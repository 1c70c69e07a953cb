"""The Kibana posture dashboard's saved objects hang together and read fields the connector emits, so an import
gives working panels rather than "field not found" errors."""

from __future__ import annotations

import json
import re

from connector.delivery.sinks.elasticsearch import assets as elastic
from connector.delivery.sinks.elasticsearch.dashboard import DASHBOARD_ID, fields_used, saved_objects


def test_every_panel_reads_an_emitted_field_of_the_data_view() -> None:
    emitted = set(elastic.field_types())
    assert fields_used() <= emitted, sorted(fields_used() - emitted)
    objects = saved_objects("logs-postern.findings-*")
    [data_view] = [obj for obj in objects if obj["type"] == "index-pattern"]
    assert data_view["attributes"]["title"] == "logs-postern.findings-*"
    for lens in (obj for obj in objects if obj["type"] == "lens"):
        state = lens["attributes"]["state"]
        assert [ref["id"] for ref in lens["references"]] == [data_view["id"]]
        queried = set(re.findall(r"([a-z_@][\w.@]*) :", state["query"]["query"]))
        assert queried <= emitted, (lens["id"], sorted(queried - emitted))
        layer = state["datasourceStates"]["formBased"]["layers"]["layer1"]
        assert set(layer["columnOrder"]) == set(layer["columns"])


def test_the_dashboard_references_each_panel_once_on_a_48_column_grid() -> None:
    objects = saved_objects("logs-postern.findings-*")
    [dashboard] = [obj for obj in objects if obj["type"] == "dashboard"]
    assert dashboard["id"] == DASHBOARD_ID
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    names = {ref["name"]: ref["id"] for ref in dashboard["references"]}
    assert [names[panel["panelRefName"]] for panel in panels] == [obj["id"] for obj in objects
                                                                  if obj["type"] == "lens"]
    assert all(panel["gridData"]["x"] + panel["gridData"]["w"] <= 48 for panel in panels)
    cells = {(panel["gridData"]["x"], panel["gridData"]["y"]) for panel in panels}
    assert len(cells) == len(panels)  # no two panels at one place
