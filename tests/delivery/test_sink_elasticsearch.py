"""Elasticsearch delivery through the spool, against the strict emulator, driven by the official client:
data stream writes with deterministic ids, idempotent re-sends, per-item retries and dead letters, setup."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from connector.core.errors import ConfigError
from connector.delivery.sinks import build_sink, parse_sink
from connector.delivery.sinks.elasticsearch import assets as elastic
from connector.delivery.sinks.elasticsearch.sink import ElasticsearchSink
from emulators.elasticsearch import ElasticsearchEmulator
from support.cli import connector
from support.delivery import make_pipeline, ship

STREAM = "logs-postern.findings-default"


def es(emulator: ElasticsearchEmulator, **extra: object) -> dict[str, object]:
    return {"type": "elasticsearch", "hosts": [emulator.url], "api_key": "test-api-key", **extra}


def setup_assets(emulator: ElasticsearchEmulator, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "setup.yaml"
    config.write_text(yaml.safe_dump({"assets": [{"host": "a.test"}], "state_dir": str(tmp_path / "setup-state"),
                                      "sinks": [es(emulator)]}))
    return connector("elastic", "setup", "-c", str(config))


def test_setup_installs_templates_policy_and_pipeline_idempotently(tmp_path: Path) -> None:
    with ElasticsearchEmulator() as cluster:
        first = setup_assets(cluster, tmp_path)
        second = setup_assets(cluster, tmp_path)
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        assert "index template postern-findings: priority 501" in first.stdout
        assert set(cluster.component_templates) >= {"postern-findings-mappings", "postern-findings-settings"}
        template = cluster.index_templates["postern-findings"]
        assert template["index_patterns"] == ["logs-postern.findings-*"] and "data_stream" in template
        assert "postern-findings" in cluster.ilm_policies and "postern-findings" in cluster.pipelines


def test_events_land_in_the_data_stream_with_their_event_id_and_ecs_types(tmp_path: Path, catalog,
                                                                          scanned) -> None:
    with ElasticsearchEmulator() as cluster:
        assert setup_assets(cluster, tmp_path).returncode == 0
        assert ship(make_pipeline(tmp_path, catalog, [es(cluster, batch_events=20)]), scanned) == {
            "elasticsearch": 0}
        assert sorted(cluster.ids(STREAM)) == sorted(f.event_id for f in scanned)
        assert STREAM in cluster.data_streams
        document = cluster.documents(STREAM)[0]
        assert document["data_stream"] == {"type": "logs", "dataset": "postern.findings", "namespace": "default"}
        assert document["event"]["kind"] == "state" and "@timestamp" in document
        stored = cluster.stored(STREAM)[0]
        assert "postern-findings" in str(stored)  # the template's default pipeline ran
        client = Elasticsearch(cluster.url, api_key="test-api-key")
        client.indices.refresh(index=STREAM)
        failing = client.count(index=STREAM, query={"term": {"result.evaluation": "failed"}})["count"]
        assert failing == sum(1 for f in scanned if f.status.value == "fail")


def test_resending_the_same_events_is_a_no_op(tmp_path: Path, catalog, scanned) -> None:
    with ElasticsearchEmulator() as cluster:
        assert ship(make_pipeline(tmp_path / "one", catalog, [es(cluster)]), scanned) == {"elasticsearch": 0}
        stored = cluster.stored(STREAM)
        left = ship(make_pipeline(tmp_path / "two", catalog, [es(cluster)]), scanned)  # all 409 this time
        assert left == {"elasticsearch": 0}
        assert cluster.stored(STREAM) == stored and len(cluster.ids(STREAM)) == len(scanned)
        status = make_pipeline(tmp_path / "two", catalog, [es(cluster)]).spool.status().sinks[0]
        assert status.dead_letters == 0 and status.delivered == len(scanned)


@pytest.mark.parametrize("fault", ["items429", "request503", "drop", "garbage", "slow"])
def test_transient_failures_are_retried_until_every_document_is_stored(fault: str, tmp_path: Path, catalog,
                                                                       scanned) -> None:
    with ElasticsearchEmulator() as cluster:
        if fault == "items429":
            cluster.reject_items(25)
        elif fault == "request503":
            cluster.fail_next(2, 503)
        elif fault == "drop":
            cluster.drop_next(2)
        elif fault == "garbage":
            cluster.garbage_next(1, content_type="application/json")
        else:
            cluster.delay = 0.2
        left = ship(make_pipeline(tmp_path, catalog, [es(cluster, batch_events=30)]), scanned)
        assert left == {"elasticsearch": 0}
        assert cluster.pending_faults() == 0  # every injected fault was met and survived
        assert sorted(cluster.ids(STREAM)) == sorted(f.event_id for f in scanned)  # each exactly once


def test_mapping_errors_become_dead_letters_and_the_rest_is_stored(tmp_path: Path, catalog, scanned) -> None:
    """A field typed differently from what we send (tls.cipher as ip) fails only the events carrying it."""
    with ElasticsearchEmulator() as cluster:
        assert setup_assets(cluster, tmp_path).returncode == 0
        client = Elasticsearch(cluster.url, api_key="test-api-key")
        mappings = cluster.component_templates["postern-findings-mappings"]
        mappings["template"]["mappings"]["properties"]["tls"]["properties"]["cipher"] = {"type": "ip"}
        client.cluster.put_component_template(name="postern-findings-mappings", body=mappings)
        assert ship(make_pipeline(tmp_path, catalog, [es(cluster)]), scanned) == {"elasticsearch": 0}
        carrying = {f.event_id for f in scanned if f.observed.get("tls", {}).get("cipher")}
        assert carrying and set(cluster.ids(STREAM)) == {f.event_id for f in scanned} - carrying
        spool = make_pipeline(tmp_path, catalog, [es(cluster)]).spool
        letters = spool.dead_letters()
        assert {event_id for _, _, event_id, _, _ in letters} == carrying
        assert all("document_parsing_exception" in reason and "HTTP 400" in reason for *_, reason, _ in letters)


def test_wrong_credentials_keep_every_event(tmp_path: Path, catalog, scanned) -> None:
    with ElasticsearchEmulator() as cluster:
        left = ship(make_pipeline(tmp_path, catalog, [es(cluster, api_key="wrong")]), scanned, timeout=1.0)
        assert left == {"elasticsearch": len(scanned)} and cluster.ids(STREAM) == []
        basic = {"type": "elasticsearch", "hosts": [cluster.url], "username": "elastic",
                 "password": "changeme-please"}
        assert ship(make_pipeline(tmp_path, catalog, [basic]), []) == {"elasticsearch": 0}
        assert len(cluster.ids(STREAM)) == len(scanned)  # the kept events, delivered once fixed


def test_cloud_id_points_the_client_at_the_encoded_deployment() -> None:
    cloud_id = "deployment:" + base64.b64encode(b"es.example.com:9243$abc123$def456").decode()
    settings = parse_sink({"type": "elasticsearch", "cloud_id": cloud_id, "api_key": "key"}, "sinks.0")
    sink = build_sink(settings)
    assert isinstance(sink, ElasticsearchSink)
    node = sink.client.transport.node_pool.get()
    assert (node.config.scheme, node.config.host, node.config.port) == ("https", "abc123.es.example.com", 9243)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "elasticsearch", "api_key": "k"}, "give either hosts or cloud_id"),
        ({"type": "elasticsearch", "hosts": ["http://x:9200"]}, "give api_key, or username and password"),
        ({"type": "elasticsearch", "hosts": ["http://x:9200"], "api_key": "k", "namespace": "Prod-1"},
         "lower case letters"),
        ({"type": "elasticsearch", "hosts": ["http://x:9200"], "api_key": {"env": "NO_SUCH_VARIABLE_HERE"}},
         "environment variable NO_SUCH_VARIABLE_HERE is not set"),
    ],
)
def test_invalid_sink_configuration_is_explained(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_sink(entry, "sinks.0")


def test_missing_templates_are_installed_before_the_first_document(tmp_path: Path, catalog, scanned) -> None:
    with ElasticsearchEmulator() as cluster:
        assert "postern-findings" not in cluster.index_templates
        assert ship(make_pipeline(tmp_path, catalog, [es(cluster)]), scanned) == {"elasticsearch": 0}
        assert "postern-findings" in cluster.index_templates
        assert "postern-findings" in str(cluster.stored(STREAM)[0])  # mapped and piped by our template


def test_a_request_over_the_size_limit_is_split_and_a_lone_oversized_event_dead_lettered(tmp_path: Path, catalog,
                                                                                         scanned) -> None:
    with ElasticsearchEmulator() as cluster:
        assert setup_assets(cluster, tmp_path).returncode == 0
        sizes = sorted(len(finding.model_dump_json()) for finding in scanned)
        cluster.max_content_length = sizes[-1] * 4  # a few documents per request, the largest alone still fits
        assert ship(make_pipeline(tmp_path, catalog, [es(cluster)]), scanned) == {"elasticsearch": 0}
        assert sorted(cluster.ids(STREAM)) == sorted(f.event_id for f in scanned)
        cluster.max_content_length = 200  # now no document fits
        again = [f.model_copy(update={"scan_id": "second"}) for f in scanned[:3]]
        assert ship(make_pipeline(tmp_path, catalog, [es(cluster)]), again) == {"elasticsearch": 0}
        letters = make_pipeline(tmp_path, catalog, [es(cluster)]).spool.dead_letters()
        assert len(letters) == 3 and all("HTTP 413" in reason for *_, reason, _ in letters)


def test_a_closed_write_index_keeps_the_events_instead_of_dead_lettering_them(tmp_path: Path, catalog,
                                                                              scanned) -> None:
    """A 400 about the index, not the document (someone closed the backing index): wait, do not discard."""
    with ElasticsearchEmulator() as cluster:
        cluster.reject_items(len(scanned), status=400, error_type="index_closed_exception", reason="closed")
        assert ship(make_pipeline(tmp_path, catalog, [es(cluster)]), scanned) == {"elasticsearch": 0}
        assert sorted(cluster.ids(STREAM)) == sorted(f.event_id for f in scanned)
        assert make_pipeline(tmp_path, catalog, [es(cluster)]).spool.dead_letters() == []


def test_the_mappings_template_kept_in_mappings_elastic_is_current() -> None:
    """`connector elastic render` was run after the last edit of mappings/ecs.yaml or custom-fields.yaml."""
    kept = json.loads(elastic.rendered_path().read_text(encoding="utf-8"))
    assert kept == elastic.render_mappings(elastic.field_types())
