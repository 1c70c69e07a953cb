"""The Elasticsearch emulator, driven only through the official ``elasticsearch`` client.

The connector's own tests trust the emulator to refuse what a real cluster refuses; these tests pin that behaviour
(status codes, error types and reasons, per-item bulk results) so a lenient regression shows up here first.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, SerializationError
from elasticsearch import (
    ApiError,
    AuthenticationException,
    BadRequestError,
    Elasticsearch,
    NotFoundError,
    UnsupportedProductError,
    helpers,
)

from emulators.elasticsearch import ElasticsearchEmulator
from support.pki import Pki
from support.web import tls_context

STREAM = "logs-posture-default"
BACKING = re.compile(r"^\.ds-logs-posture-default-\d{4}\.\d{2}\.\d{2}-000001$")
STAMP = "2025-03-01T12:00:00.000Z"


@pytest.fixture
def emu() -> Iterator[ElasticsearchEmulator]:
    with ElasticsearchEmulator() as emulator:
        yield emulator
        assert emulator.server_errors == []


@pytest.fixture
def es(emu: ElasticsearchEmulator) -> Iterator[Elasticsearch]:
    client = Elasticsearch(emu.url, api_key="test-api-key", request_timeout=5)
    yield client
    client.close()


def finding(n: int, **extra: Any) -> dict[str, Any]:
    return {"@timestamp": STAMP, "event": {"kind": "state", "severity": 3}, "rule": {"id": f"R{n}"}, **extra}


def creates(count: int, index: str = STREAM, **extra: Any) -> list[dict[str, Any]]:
    return [{"_op_type": "create", "_index": index, "_id": f"doc-{n}", "_source": finding(n, **extra)}
            for n in range(count)]


def item_results(es: Elasticsearch, actions: list[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    """Per-item results from streaming_bulk, failures included."""
    return [info for _, info in helpers.streaming_bulk(es, actions, raise_on_error=False, **kwargs)]


def put_custom_template(es: Elasticsearch, *, priority: int = 501) -> None:
    es.cluster.put_component_template(name="posture@mappings", template={"mappings": {"properties": {
        "event": {"properties": {"severity": {"type": "long"}, "kind": {"type": "keyword"}}},
        "host.ip": {"type": "ip"},
        "observer": {"type": "object"},
        "labels": {"type": "flattened"},
    }}})
    es.indices.put_index_template(name="posture", index_patterns=["posture-*"], data_stream={},
                                  composed_of=["posture@mappings"], priority=priority,
                                  template={"settings": {"number_of_replicas": 0}})


# --- protocol: product check, content negotiation, authentication ------------------------------------------------


def test_every_answer_carries_the_product_header_and_mirrors_the_compatible_media_type(es: Elasticsearch) -> None:
    info = es.info()
    assert info["version"]["number"] == "9.1.0"
    assert info["tagline"] == "You Know, for Search"
    assert info.meta.headers["x-elastic-product"] == "Elasticsearch"
    assert info.meta.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=9"
    assert es.ping()
    with pytest.raises(NotFoundError) as missing:
        es.indices.get_index_template(name="nope")
    assert missing.value.meta.headers["x-elastic-product"] == "Elasticsearch"


def test_a_non_elasticsearch_answer_fails_the_clients_product_check(emu: ElasticsearchEmulator) -> None:
    emu.garbage_next(1, scope="any")
    with pytest.raises(UnsupportedProductError):
        Elasticsearch(emu.url, api_key="test-api-key").info()

    emu.garbage_next(1, content_type="application/json")
    with pytest.raises(SerializationError):
        Elasticsearch(emu.url, api_key="test-api-key").bulk(operations=[{"create": {"_index": STREAM}}, finding(1)])
    assert emu.documents(STREAM) == []


def test_a_9x_client_is_refused_by_an_8x_cluster() -> None:
    with ElasticsearchEmulator(version="8.17.0") as old, pytest.raises(BadRequestError) as refused:
        Elasticsearch(old.url, api_key="test-api-key").info()
    error = refused.value.body["error"]
    assert error["type"] == "media_type_header_exception"
    assert error["caused_by"]["reason"].startswith("Accept version must be either version 8 or 7, but found 9.")


def test_requests_without_valid_credentials_get_401_with_a_challenge(emu: ElasticsearchEmulator) -> None:
    with pytest.raises(AuthenticationException) as anonymous:
        Elasticsearch(emu.url).info()
    assert anonymous.value.status_code == 401
    assert anonymous.value.body["error"]["type"] == "security_exception"
    assert anonymous.value.body["error"]["reason"] == "missing authentication credentials for REST request [/]"
    assert "ApiKey" in anonymous.value.meta.headers["www-authenticate"]

    with pytest.raises(AuthenticationException) as wrong_key:
        Elasticsearch(emu.url, api_key="not-a-key").info()
    assert "unable to authenticate with provided credentials" in wrong_key.value.body["error"]["reason"]

    with pytest.raises(AuthenticationException) as wrong_password:
        Elasticsearch(emu.url, basic_auth=("elastic", "guess")).info()
    assert wrong_password.value.body["error"]["reason"] == "unable to authenticate user [elastic] for REST request [/]"

    assert Elasticsearch(emu.url, basic_auth=("elastic", "changeme-please")).info()["cluster_name"]
    encoded = base64.b64encode(b"test-api-key").decode()
    assert Elasticsearch(emu.url, api_key=encoded).ping()


def test_an_id_and_secret_pair_authenticates_as_the_client_encodes_it() -> None:
    with ElasticsearchEmulator(api_keys=["VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw"]) as emulator:
        client = Elasticsearch(emulator.url, api_key=("VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw"))
        assert client.ping()


def test_tls(pki: Pki) -> None:
    context = tls_context(pki.root.issue(["localhost"]))
    with ElasticsearchEmulator(tls=context) as emulator:
        assert emulator.url.startswith("https://127.0.0.1:")
        client = Elasticsearch(emulator.url, api_key="test-api-key", ca_certs=str(pki.bundle),
                               ssl_assert_hostname=False)
        assert client.info()["version"]["number"] == "9.1.0"


# --- data streams --------------------------------------------------------------------------------------------------


def test_the_builtin_logs_template_creates_the_data_stream_on_first_write(es: Elasticsearch,
                                                                          emu: ElasticsearchEmulator) -> None:
    assert "logs" in emu.index_templates
    ok, errors = helpers.bulk(es, creates(3), refresh=True)
    assert (ok, errors) == (3, [])

    stream = es.indices.get_data_stream(name=STREAM)["data_streams"][0]
    assert stream["template"] == "logs"
    assert stream["ilm_policy"] == "logs@lifecycle"
    assert BACKING.match(stream["indices"][0]["index_name"])
    assert list(emu.data_streams) == [STREAM]
    assert emu.ids(STREAM) == ["doc-0", "doc-1", "doc-2"]
    assert emu.documents(STREAM)[0] == finding(0)
    assert emu.stored(STREAM)[0].pipelines == ("logs@default-pipeline",)


def test_a_custom_template_above_priority_500_wins_and_its_mappings_apply(es: Elasticsearch,
                                                                          emu: ElasticsearchEmulator) -> None:
    es.indices.put_index_template(name="logs-posture", index_patterns=["logs-posture-*"], data_stream={},
                                  priority=501, composed_of=[],
                                  template={"mappings": {"properties": {"event.severity": {"type": "long"}}}})
    results = item_results(es, [
        {"_op_type": "create", "_index": STREAM, "_source": finding(1)},
        {"_op_type": "create", "_index": STREAM, "_source": finding(2, event={"severity": "abc"})},
    ])
    assert emu.data_streams[STREAM]["template"] == "logs-posture"
    assert results[0]["create"]["status"] == 201
    failed = results[1]["create"]
    assert failed["status"] == 400
    assert BACKING.match(failed["_index"])
    assert failed["error"]["type"] == "document_parsing_exception"
    assert re.fullmatch(r"\[1:\d+\] failed to parse field \[event\.severity\] of type \[long\] in document with id "
                        r"'[\w-]+'\. Preview of field's value: 'abc'", failed["error"]["reason"])
    assert failed["error"]["caused_by"] == {"type": "illegal_argument_exception", "reason": 'For input string: "abc"'}


def test_data_streams_accept_only_create(es: Elasticsearch) -> None:
    [result] = item_results(es, [{"_op_type": "index", "_index": STREAM, "_source": finding(1)}])
    assert result == {"index": {"_index": STREAM, "_id": None, "status": 400, "error": {
        "type": "illegal_argument_exception",
        "reason": "only write ops with an op_type of create are allowed in data streams"}}}


def test_a_document_without_timestamp_is_refused_unless_the_default_pipeline_fills_it(
        es: Elasticsearch, emu: ElasticsearchEmulator) -> None:
    put_custom_template(es)
    [refused] = item_results(es, [{"_op_type": "create", "_index": "posture-findings", "_source": {"a": 1}}])
    error = refused["create"]["error"]
    assert refused["create"]["status"] == 400
    assert error["type"] == "document_parsing_exception"
    assert error["reason"] == "[1:7] failed to parse: data stream timestamp field [@timestamp] is missing"
    assert error["caused_by"] == {"type": "illegal_argument_exception",
                                  "reason": "data stream timestamp field [@timestamp] is missing"}

    # logs-*-* runs logs@default-pipeline, which sets a missing @timestamp from the ingest time ...
    [accepted] = item_results(es, [{"_op_type": "create", "_index": STREAM, "_source": {"a": 1}}])
    assert accepted["create"]["status"] == 201
    stamp = emu.documents(STREAM)[0]["@timestamp"]
    assert abs(dt.datetime.fromisoformat(stamp) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    # ... unless the request names its own pipeline, which replaces the default one.
    es.ingest.put_pipeline(id="posture", processors=[])
    [bypassed] = item_results(es, [{"_op_type": "create", "_index": STREAM, "_source": {"a": 2}}], pipeline="posture")
    assert "is missing" in bypassed["create"]["error"]["reason"]


def test_a_replayed_bulk_conflicts_on_every_id(es: Elasticsearch, emu: ElasticsearchEmulator) -> None:
    assert helpers.bulk(es, creates(4)) == (4, [])
    replay = item_results(es, creates(4))
    assert [r["create"]["status"] for r in replay] == [409] * 4
    error = replay[0]["create"]["error"]
    assert error["type"] == "version_conflict_engine_exception"
    assert error["reason"] == "[doc-0]: version conflict, document already exists (current version [1])"
    assert error["shard"] == "0" and BACKING.match(error["index"]) and error["index_uuid"]
    assert len(emu.documents(STREAM)) == 4

    with pytest.raises(helpers.BulkIndexError):
        helpers.bulk(es, creates(1))
    ok, errors = helpers.bulk(es, creates(2), ignore_status=409)  # not raised, still reported
    assert ok == 0 and [e["create"]["status"] for e in errors] == [409, 409]


def test_values_that_do_not_fit_the_mapping_fail_per_item(es: Elasticsearch, emu: ElasticsearchEmulator) -> None:
    put_custom_template(es)
    index = "posture-findings"
    results = item_results(es, [
        {"_op_type": "create", "_index": index, "_id": "ok", "_source": finding(0, host={"ip": "10.0.0.1"})},
        {"_op_type": "create", "_index": index, "_id": "ip", "_source": finding(1, host={"ip": "not-an-ip"})},
        {"_op_type": "create", "_index": index, "_id": "kw", "_source": finding(2, event={"kind": {"x": 1}})},
        {"_op_type": "create", "_index": index, "_id": "obj", "_source": finding(3, observer="scanner")},
        {"_op_type": "create", "_index": index, "_id": "flat", "_source": finding(4, labels={"a": {"b": [1, "x"]}})},
        {"_op_type": "create", "_index": index, "_id": "dotted", "_source": {"@timestamp": STAMP,
                                                                              "event.severity": "high"}},
        {"_op_type": "create", "_index": index, "_id": "new", "_source": finding(5, score=1)},
        {"_op_type": "create", "_index": index, "_id": "conflict", "_source": finding(6, score="high")},
        {"_op_type": "create", "_index": index, "_id": "date", "_source": {"@timestamp": "yesterday"}},
    ])
    by_id = {r["create"]["_id"]: r["create"] for r in results}
    assert {i for i, r in by_id.items() if r["status"] == 201} == {"ok", "flat", "new"}
    assert by_id["ip"]["error"]["caused_by"]["reason"] == "'not-an-ip' is not an IP string literal."
    assert by_id["kw"]["error"]["reason"].endswith("of type [keyword] in document with id 'kw'. "
                                                   "Preview of field's value: '{x=1}'")
    assert "object mapping for [observer] tried to parse field [observer] as object, but found a concrete value" in (
        by_id["obj"]["error"]["reason"])
    assert "failed to parse field [event.severity] of type [long]" in by_id["dotted"]["error"]["reason"]
    # the first document mapped "score" dynamically as long; a later string no longer fits
    assert "failed to parse field [score] of type [long]" in by_id["conflict"]["error"]["reason"]
    assert "of type [date]" in by_id["date"]["error"]["reason"]
    assert emu.ids(index) == ["ok", "flat", "new"]
    mapping = next(iter(es.indices.get_mapping(index=index).values()))["mappings"]
    assert mapping["properties"]["score"] == {"type": "long"}


def test_the_logs_template_ignores_malformed_numbers_but_not_objects_in_keywords(es: Elasticsearch,
                                                                                   emu: ElasticsearchEmulator) -> None:
    results = item_results(es, [
        {"_op_type": "create", "_index": STREAM, "_source": finding(0, count=1, source={"ip": "10.1.1.1"})},
        {"_op_type": "create", "_index": STREAM, "_source": finding(1, count="many", source={"ip": "bad"})},
        {"_op_type": "create", "_index": STREAM, "_source": finding(2, rule={"id": {"nested": True}})},
    ])
    assert [r["create"]["status"] for r in results] == [201, 201, 400]
    assert sorted(emu.stored(STREAM)[1].ignored) == ["count", "source.ip"]
    assert "of type [keyword]" in results[2]["create"]["error"]["reason"]


# --- bulk body parsing ---------------------------------------------------------------------------------------------


def raw_bulk(es: Elasticsearch, body: bytes) -> dict[str, Any]:
    """Send bytes exactly as given: the client's NDJSON serializer would add the final newline itself."""
    headers = {"content-type": "application/json", "accept": "application/json"}
    return es.perform_request("POST", "/_bulk", headers=headers, body=body).body


def test_a_bulk_body_must_end_with_a_newline(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as refused:
        raw_bulk(es, b'{"create":{"_index":"logs-a-b"}}\n{"@timestamp":"2025-01-01"}')
    assert refused.value.body["error"]["type"] == "illegal_argument_exception"
    assert refused.value.body["error"]["reason"] == "The bulk request must be terminated by a newline [\\n]"
    assert raw_bulk(es, b'{"create":{"_index":"logs-a-b"}}\n{"@timestamp":"2025-01-01"}\n')["errors"] is False


@pytest.mark.parametrize(("body", "error_type", "reason"), [
    (b'{"create":{"_index":"logs-a-b"}\n{}\n', "x_content_parse_exception", None),
    (b'{"upsert":{"_index":"logs-a-b"}}\n{}\n', "illegal_argument_exception",
     "Malformed action/metadata line [1], expected field [create], [delete], [index] or [update] but found [upsert]"),
    (b'{"index":{},"extra":1}\n{}\n', "illegal_argument_exception",
     "Malformed action/metadata line [1], expected END_OBJECT but found [FIELD_NAME]"),
    (b'{"index":{"_index":"a","_type":"doc"}}\n{}\n', "illegal_argument_exception",
     "Action/metadata line [1] contains an unknown parameter [_type]"),
    (b'{"create":{"_index":"logs-a-b"}}\n', "action_request_validation_exception",
     "Validation Failed: 1: no requests added;"),
    (b'{"delete":{"_index":"a"}}\n', "action_request_validation_exception", "Validation Failed: 1: id is missing;"),
    (b'{"create":{}}\n{}\n', "action_request_validation_exception", "Validation Failed: 1: index is missing;"),
])
def test_malformed_bulk_bodies_fail_as_a_whole(es: Elasticsearch, body: bytes, error_type: str,
                                               reason: str | None) -> None:
    with pytest.raises(BadRequestError) as refused:
        raw_bulk(es, body)
    assert refused.value.body["error"]["type"] == error_type
    assert refused.value.body["status"] == 400
    if reason is not None:
        assert refused.value.body["error"]["reason"] == reason


def test_index_update_and_delete_on_a_regular_index(es: Elasticsearch, emu: ElasticsearchEmulator) -> None:
    response = es.bulk(operations=[
        {"index": {"_index": "posture-latest", "_id": "a"}}, {"status": "fail", "n": 1},
        {"index": {"_index": "posture-latest", "_id": "a"}}, {"status": "pass", "n": 1},
        {"update": {"_index": "posture-latest", "_id": "a"}}, {"doc": {"n": 2}},
        {"update": {"_index": "posture-latest", "_id": "b"}}, {"doc": {"n": 1}},
        {"delete": {"_index": "posture-latest", "_id": "zzz"}},
        {"delete": {"_index": "missing-index", "_id": "zzz"}},
    ])
    items = [next(iter(i.values())) for i in response["items"]]
    assert [(i["status"], i.get("result")) for i in items] == [
        (201, "created"), (200, "updated"), (200, "updated"), (404, None), (404, "not_found"), (404, None)]
    assert [i["_version"] for i in items[:3]] == [1, 2, 3]
    assert items[3]["error"]["type"] == "document_missing_exception"
    assert items[5]["error"]["type"] == "index_not_found_exception"
    assert emu.documents("posture-latest") == [{"status": "pass", "n": 2}]
    assert es.get(index="posture-latest", id="a")["_source"] == {"status": "pass", "n": 2}


def test_filter_path_trims_the_bulk_response(es: Elasticsearch) -> None:
    helpers.bulk(es, creates(1))
    response = es.bulk(operations=[{"create": {"_index": STREAM, "_id": "doc-0"}}, finding(0),
                                   {"create": {"_index": STREAM, "_id": "new"}}, finding(1)],
                       filter_path="errors,items.*.error.type")
    assert response.body == {"errors": True, "items": [{"create": {"error": {
        "type": "version_conflict_engine_exception"}}}]}


# --- faults --------------------------------------------------------------------------------------------------------


def test_rejected_items_are_retried_by_streaming_bulk(es: Elasticsearch, emu: ElasticsearchEmulator) -> None:
    emu.reject_items(3)
    results = list(helpers.streaming_bulk(es, creates(10), chunk_size=10, max_retries=2, initial_backoff=0.01,
                                          raise_on_error=False))
    assert all(ok for ok, _ in results)
    assert len(results) == 10
    assert emu.bulk_requests == 2  # the first request, then one retry carrying only the 3 rejected items
    assert sorted(emu.ids(STREAM)) == sorted(f"doc-{n}" for n in range(10))

    emu.reject_items(1)
    [(ok, info)] = helpers.streaming_bulk(es, creates(1, index="logs-other-default"), raise_on_error=False)
    assert not ok
    assert info["create"]["status"] == 429
    assert info["create"]["error"]["type"] == "es_rejected_execution_exception"


def test_whole_request_failures_surface_after_the_transports_retries(emu: ElasticsearchEmulator) -> None:
    no_retries = Elasticsearch(emu.url, api_key="test-api-key", max_retries=0)
    emu.fail_next(1, 503)
    with pytest.raises(ApiError) as unavailable:
        helpers.bulk(no_retries, creates(2))
    assert unavailable.value.status_code == 503
    assert unavailable.value.body["error"]["type"] == "cluster_block_exception"

    emu.fail_next(2, 429)
    retrying = Elasticsearch(emu.url, api_key="test-api-key")  # retries 429/502/503/504 up to 3 times
    assert helpers.bulk(retrying, creates(2)) == (2, [])
    assert emu.bulk_requests == 1 + 3


def test_dropped_and_slow_answers(emu: ElasticsearchEmulator) -> None:
    client = Elasticsearch(emu.url, api_key="test-api-key", max_retries=0, request_timeout=0.3)
    emu.drop_next(1)
    with pytest.raises(TransportConnectionError):
        helpers.bulk(client, creates(1))
    assert emu.documents(STREAM) == []

    emu.drop_next(1)
    retrying = Elasticsearch(emu.url, api_key="test-api-key")  # a dropped connection is retried
    assert helpers.bulk(retrying, creates(1)) == (1, [])
    assert emu.bulk_requests == 3

    emu.delay = 0.5
    started = time.monotonic()
    with pytest.raises(ConnectionTimeout):
        helpers.bulk(client, creates(1, index="logs-slow-default"))
    assert time.monotonic() - started < 0.5
    emu.delay = 0.0
    # As on a real cluster, the client giving up does not cancel the write.
    deadline = time.monotonic() + 2
    while not emu.ids("logs-slow-default") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.ids("logs-slow-default") == ["doc-0"]


def test_down_and_up_keep_the_port_and_the_data(es: Elasticsearch, emu: ElasticsearchEmulator) -> None:
    helpers.bulk(es, creates(2))
    port = emu.port
    emu.down()
    client = Elasticsearch(emu.url, api_key="test-api-key", max_retries=0)
    with pytest.raises(TransportConnectionError):
        client.info()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    emu.up()
    assert emu.port == port
    assert client.count(index=STREAM, query={"match_all": {}})["count"] in (0, 2)  # near-real-time
    es.indices.refresh(index=STREAM)
    assert client.count(index=STREAM)["count"] == 2


# --- templates, policies, pipelines ------------------------------------------------------------------------------


def test_templates_policies_and_pipelines_round_trip(es: Elasticsearch, emu: ElasticsearchEmulator) -> None:
    put_custom_template(es)
    assert es.cluster.exists_component_template(name="posture@mappings")
    assert es.indices.exists_index_template(name="posture")
    assert not es.indices.exists_index_template(name="absent")
    stored = es.indices.get_index_template(name="posture")["index_templates"][0]["index_template"]
    assert stored["index_patterns"] == ["posture-*"] and stored["priority"] == 501
    assert emu.component_templates["posture@mappings"]["template"]["mappings"]["properties"]["labels"] == {
        "type": "flattened"}

    policy = {"phases": {"hot": {"actions": {"rollover": {"max_age": "1d"}}}, "delete": {
        "min_age": "30d", "actions": {"delete": {}}}}}
    assert es.ilm.put_lifecycle(name="posture", policy=policy)["acknowledged"]
    assert es.ilm.get_lifecycle(name="posture")["posture"]["policy"] == policy
    assert emu.ilm_policies["posture"] == policy
    assert es.ingest.put_pipeline(id="posture", processors=[{"set": {"field": "a", "value": 1}}])["acknowledged"]
    assert es.ingest.get_pipeline(id="posture")["posture"]["processors"][0]["set"]["field"] == "a"
    assert "posture" in emu.pipelines

    es.indices.delete_index_template(name="posture")
    assert "posture" not in emu.index_templates


def test_template_policy_and_pipeline_errors(es: Elasticsearch) -> None:
    with pytest.raises(NotFoundError) as missing_template:
        es.indices.get_index_template(name="absent")
    not_found = {"type": "resource_not_found_exception", "reason": "index template matching [absent] not found"}
    assert missing_template.value.body == {"error": {"root_cause": [not_found], **not_found}, "status": 404}
    with pytest.raises(NotFoundError) as missing_delete:
        es.indices.delete_index_template(name="absent")
    assert missing_delete.value.body["error"]["type"] == "index_template_missing_exception"
    with pytest.raises(NotFoundError):
        es.cluster.get_component_template(name="absent")
    with pytest.raises(NotFoundError) as missing_policy:
        es.ilm.get_lifecycle(name="absent")
    assert missing_policy.value.body["error"]["reason"] == "Lifecycle policy not found: [absent]"
    with pytest.raises(NotFoundError) as missing_pipeline:
        es.ingest.get_pipeline(id="absent")
    assert missing_pipeline.value.body == {}

    with pytest.raises(BadRequestError) as unknown_component:
        es.indices.put_index_template(name="x", index_patterns=["x-*"], composed_of=["absent@mappings"])
    assert unknown_component.value.body["error"]["type"] == "invalid_index_template_exception"
    assert "specifies component templates [absent@mappings] that do not exist" in (
        unknown_component.value.body["error"]["reason"])
    with pytest.raises(BadRequestError) as no_patterns:
        es.indices.put_index_template(name="x", template={})
    assert no_patterns.value.body["error"]["reason"] == "Required [index_patterns]"
    with pytest.raises(BadRequestError) as same_priority:
        es.indices.put_index_template(name="mine", index_patterns=["logs-*-*"], priority=100, data_stream={})
    assert "that have the same priority [100]" in same_priority.value.body["error"]["reason"]
    with pytest.raises(BadRequestError) as no_processors:
        es.ingest.put_pipeline(id="x", description="nothing")
    assert no_processors.value.body["error"]["reason"] == "[processors] required property is missing"
    with pytest.raises(BadRequestError):
        es.indices.create(index=STREAM)  # matches a data-stream-only template

    [unknown_pipeline] = item_results(es, creates(1), pipeline="absent")
    assert unknown_pipeline["create"]["error"]["reason"] == "pipeline with id [absent] does not exist"


# --- search ------------------------------------------------------------------------------------------------------


def test_search_is_near_real_time_and_supports_the_common_queries(es: Elasticsearch) -> None:
    actions = creates(5)
    actions[1]["_source"]["event"]["severity"] = 7
    actions[2]["_source"]["host.name"] = "web-1"  # a literal dotted key
    helpers.bulk(es, actions)
    assert es.count(index=STREAM)["count"] == 0  # not refreshed yet, like a real shard
    es.indices.refresh(index=STREAM)

    assert es.count(index=STREAM)["count"] == 5
    hits = es.search(index="logs-*", query={"term": {"event.severity": 7}})["hits"]
    assert hits["total"] == {"value": 1, "relation": "eq"}
    assert hits["hits"][0]["_id"] == "doc-1" and BACKING.match(hits["hits"][0]["_index"])
    assert es.search(index=STREAM, query={"term": {"host.name": "web-1"}})["hits"]["hits"][0]["_id"] == "doc-2"
    terms = es.search(index=STREAM, query={"terms": {"rule.id": ["R3", "R4"]}}, sort=[{"rule.id": "desc"}])
    assert [h["_id"] for h in terms["hits"]["hits"]] == ["doc-4", "doc-3"]
    capped = es.search(index=STREAM, size=2, track_total_hits=3, query={"match_all": {}})["hits"]
    assert len(capped["hits"]) == 2 and capped["total"] == {"value": 3, "relation": "gte"}
    assert "total" not in es.search(index=STREAM, track_total_hits=False)["hits"]
    with pytest.raises(NotFoundError) as missing:
        es.search(index="nope")
    assert missing.value.body["error"]["type"] == "index_not_found_exception"


def test_a_benchmark_sized_load_stays_fast(es: Elasticsearch, emu: ElasticsearchEmulator) -> None:
    started = time.monotonic()
    ok, errors = helpers.bulk(es, creates(5000), chunk_size=500)
    elapsed = time.monotonic() - started
    assert (ok, errors) == (5000, [])
    assert emu.bulk_requests == 10
    assert elapsed < 2.0, f"5000 documents took {elapsed:.2f}s"
