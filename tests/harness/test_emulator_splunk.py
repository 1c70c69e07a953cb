"""The Splunk emulator is strict: driven by the real clients (httpx for HEC, splunklib for the management port), it
answers with Splunk's documented statuses, reply codes and body shapes, and its injected faults really happen.

If these tests pass, a connector test that passes against the emulator exercised the same wire behaviour Splunk has.
"""

from __future__ import annotations

import datetime as dt
import gzip
import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import splunklib.binding as binding
import splunklib.client as client
import splunklib.results as results
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulators.splunk import SplunkEmulator, SplunkSearchError

TOKEN = "11111111-2222-3333-4444-555555555555"
CHANNEL = "0aeb7d4a-1f5e-4b8e-9d6c-2f3a4b5c6d7e"
OTHER_CHANNEL = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
PASSWORD = "changeme-please"


@pytest.fixture
def emu() -> Iterator[SplunkEmulator]:
    with SplunkEmulator() as emulator:
        yield emulator


def hec(emulator: SplunkEmulator, **kwargs: Any) -> httpx.Client:
    headers = {"Authorization": f"Splunk {emulator.token}", **kwargs.pop("headers", {})}
    return httpx.Client(base_url=emulator.hec_url, headers=headers, timeout=5, **kwargs)


def post(emulator: SplunkEmulator, body: bytes | str, path: str = "/services/collector/event",
         **kwargs: Any) -> httpx.Response:
    with hec(emulator, headers=kwargs.pop("headers", {})) as session:
        return session.post(path, content=body, **kwargs)


def envelopes(*events: dict[str, Any], separator: str = "\n") -> str:
    return separator.join(json.dumps(event) for event in events)


def connect(emulator: SplunkEmulator, **kwargs: Any) -> client.Service:
    scheme = "https" if emulator.mgmt_url.startswith("https") else "http"
    options: dict[str, Any] = {"username": "admin", "password": PASSWORD, **kwargs}
    return client.connect(host="127.0.0.1", port=emulator.mgmt_port, scheme=scheme, **options)


def oneshot(service: client.Service, query: str, **params: Any) -> list[Any]:
    return list(results.JSONResultsReader(service.jobs.oneshot(query, output_mode="json", **params)))


# ---------------------------------------------------------------------------------------------------------------
# HEC: health, authentication, parsing
# ---------------------------------------------------------------------------------------------------------------


def test_health_reports_code_17_and_code_18_when_unhealthy(emu: SplunkEmulator) -> None:
    response = httpx.get(f"{emu.hec_url}/services/collector/health")
    assert (response.status_code, response.json()) == (200, {"text": "HEC is healthy", "code": 17})
    assert response.headers["content-type"].startswith("application/json")
    emu.healthy = False
    response = httpx.get(f"{emu.hec_url}/services/collector/health/1.0")
    assert (response.status_code, response.json()["code"]) == (503, 18)


@pytest.mark.parametrize(("authorization", "status", "code", "text"), [
    (None, 401, 2, "Token is required"),
    ("Bearer " + TOKEN, 401, 3, "Invalid authorization"),
    ("Splunk", 401, 3, "Invalid authorization"),
    ("Basic not-base64!", 401, 3, "Invalid authorization"),
    ("Splunk 00000000-0000-0000-0000-000000000000", 403, 4, "Invalid token"),
])
def test_authentication_failures_use_splunk_reply_codes(emu: SplunkEmulator, authorization: str | None,
                                                        status: int, code: int, text: str) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.post(f"{emu.hec_url}/services/collector/event", content='{"event":"x"}', headers=headers)
    assert (response.status_code, response.json()) == (status, {"text": text, "code": code})
    assert emu.events == []


def test_basic_auth_with_the_token_as_password_works_and_query_string_tokens_do_not(emu: SplunkEmulator) -> None:
    response = httpx.post(f"{emu.hec_url}/services/collector/event", content='{"event":"x"}',
                          auth=("anyone", TOKEN))
    assert response.json() == {"text": "Success", "code": 0}
    response = httpx.post(f"{emu.hec_url}/services/collector/event", content='{"event":"x"}',
                          params={"token": TOKEN})
    assert (response.status_code, response.json()["code"]) == (400, 16)
    assert len(emu.events) == 1


@pytest.mark.parametrize("path", ["/services/collector/event", "/services/collector", "/services/collector/event/1.0"])
@pytest.mark.parametrize("separator", ["", "\n", " \r\n\t "])
def test_concatenated_objects_are_one_batch_with_splunk_defaults(emu: SplunkEmulator, path: str,
                                                                  separator: str) -> None:
    body = envelopes({"event": {"a": 1}, "time": 1700000000.25, "fields": {"rule": "R1", "tags": ["x", 2]}},
                     {"event": "two", "host": "web-1", "source": "scanner", "sourcetype": "postern:finding",
                      "index": "main", "time": "1700000001"},
                     separator=separator)
    response = post(emu, body, path)
    assert (response.status_code, response.json()) == (200, {"text": "Success", "code": 0})
    first, second = emu.events
    assert first == {"index": "main", "host": "127.0.0.1", "source": "http:default", "sourcetype": "httpevent",
                     "time": 1700000000.25, "fields": {"rule": "R1", "tags": ["x", 2]}, "event": {"a": 1},
                     "channel": None}
    assert (second["host"], second["source"], second["sourcetype"], second["time"]) == (
        "web-1", "scanner", "postern:finding", 1700000001.0)
    assert emu.requests[-1].method == "POST" and emu.requests[-1].body == body.encode()


def test_gzip_bodies_are_inflated_and_recorded_inflated(emu: SplunkEmulator) -> None:
    body = envelopes({"event": "zipped"}, {"event": "again"}).encode()
    response = post(emu, gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert response.json()["code"] == 0
    assert [event["event"] for event in emu.events] == ["zipped", "again"]
    assert emu.requests[-1].body == body and emu.requests[-1].headers["content-encoding"] == "gzip"


def test_deflate_and_broken_gzip_are_refused(emu: SplunkEmulator) -> None:
    response = post(emu, zlib.compress(b'{"event":"x"}'), headers={"Content-Encoding": "deflate"})
    assert response.status_code == 415
    response = post(emu, b'{"event":"x"}', headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400 and "gzip" in response.text
    assert emu.events == []


def test_an_invalid_event_in_the_middle_keeps_the_events_before_it(emu: SplunkEmulator) -> None:
    body = envelopes({"event": "e0"}, {"event": "e1"}, {"host": "no event"}, {"event": "e3"})
    response = post(emu, body)
    assert (response.status_code, response.json()) == (
        400, {"text": "Event field is required", "code": 12, "invalid-event-number": 2})
    assert [event["event"] for event in emu.events] == ["e0", "e1"]


@pytest.mark.parametrize(("body", "status", "code", "number", "indexed"), [
    ("", 400, 5, None, 0),
    ("  \n\t ", 400, 5, None, 0),
    ('[{"event": "in an array"}]', 400, 6, 0, 0),
    ('"just a string"', 400, 6, 0, 0),
    ('{"event": "ok"}{"event": ', 400, 6, 1, 1),
    ('{"event": "ok"} not json', 400, 6, 1, 1),
    ('{"event": NaN}', 400, 6, 0, 0),
    ('{"event": "x", "time": "yesterday"}', 400, 6, 0, 0),
    ('{"event": "x", "time": true}', 400, 6, 0, 0),
    ('{"event": "x", "index": "nonexistent"}', 400, 7, 0, 0),
    ('{"event": "ok"}{"event": "x", "index": "other"}', 400, 7, 1, 1),
    ('{"sourcetype": "x"}', 400, 12, 0, 0),
    ('{"event": ""}', 400, 13, 0, 0),
    ('{"event": null}', 400, 13, 0, 0),
    ('{"event": "x", "fields": {"nested": {"a": 1}}}', 400, 15, 0, 0),
    ('{"event": "x", "fields": {"list": [{"a": 1}]}}', 400, 15, 0, 0),
    ('{"event": "x", "fields": ["not", "an", "object"]}', 400, 15, 0, 0),
])
def test_malformed_batches_get_the_documented_reply_code(body: str, status: int, code: int, number: int | None,
                                                         indexed: int) -> None:
    # "other" exists but the token may not write to it: that is code 7 too
    with SplunkEmulator(indexes=("main", "other")) as emulator:
        emulator.hec_inputs["default"]["indexes"] = ["main"]
        response = post(emulator, body)
        reply = response.json()
        assert (response.status_code, reply["code"]) == (status, code)
        assert reply.get("invalid-event-number") == number
        assert len(emulator.events) == indexed


def test_unknown_hec_paths_and_methods_are_404(emu: SplunkEmulator) -> None:
    with hec(emu) as session:
        assert session.post("/services/collector/nothing", content='{"event":"x"}').status_code == 404
        assert session.get("/services/collector/event").status_code == 404


def test_raw_endpoint_needs_a_channel_and_splits_lines(emu: SplunkEmulator) -> None:
    with hec(emu) as session:
        response = session.post("/services/collector/raw", content="line one\n")
        assert (response.status_code, response.json()["code"]) == (400, 10)
        response = session.post("/services/collector/raw", content="line one\r\n\nline two\n",
                                params={"channel": CHANNEL, "sourcetype": "raw:test", "host": "h1",
                                        "time": "1700000000.5"})
        assert response.json() == {"text": "Success", "code": 0}
    assert [(e["event"], e["sourcetype"], e["host"], e["time"], e["channel"]) for e in emu.events] == [
        ("line one", "raw:test", "h1", 1700000000.5, CHANNEL), ("line two", "raw:test", "h1", 1700000000.5, CHANNEL)]


def test_oversized_bodies_are_refused_with_413() -> None:
    with SplunkEmulator(max_content_length=1024) as small:
        response = post(small, envelopes(*({"event": "x" * 100} for _ in range(20))))
        assert response.status_code == 413 and "too large" in response.text
        assert small.events == []
        assert post(small, '{"event": "fits"}').json()["code"] == 0
        assert "main" in connect(small).indexes, "the HEC limit does not apply to the management port"


# ---------------------------------------------------------------------------------------------------------------
# HEC: indexer acknowledgement
# ---------------------------------------------------------------------------------------------------------------


def test_ack_tokens_need_a_valid_channel() -> None:
    with SplunkEmulator(ack=True) as emulator:
        response = post(emulator, '{"event":"x"}')
        assert (response.status_code, response.json()) == (400, {"text": "Data channel is missing", "code": 10})
        response = post(emulator, '{"event":"x"}', headers={"X-Splunk-Request-Channel": "not-a-guid"})
        assert (response.status_code, response.json()) == (400, {"text": "Invalid data channel", "code": 11})
        assert emulator.events == []


def test_ack_ids_count_per_channel_and_are_acknowledged(emu: SplunkEmulator) -> None:
    with SplunkEmulator(ack=True) as emulator, hec(emulator) as session:
        ids = [session.post("/services/collector/event", content='{"event":"x"}',
                            headers={"X-Splunk-Request-Channel": CHANNEL}).json()["ackId"] for _ in range(2)]
        other = session.post("/services/collector/event", content='{"event":"y"}',
                             params={"channel": OTHER_CHANNEL}).json()
        assert ids == [0, 1] and other == {"text": "Success", "code": 0, "ackId": 0}
        response = session.post("/services/collector/ack", params={"channel": CHANNEL}, json={"acks": [0, 1, 7]})
        assert response.json() == {"acks": {"0": True, "1": True, "7": False}}
        assert emulator.acked(CHANNEL) == {0, 1} and emulator.events[0]["channel"] == CHANNEL
        assert session.post("/services/collector/ack", json={"acks": [0]}).json()["code"] == 10
        assert session.post("/services/collector/ack", params={"channel": CHANNEL},
                            json=[0]).json()["code"] == 6
    # a token without useACK: the ack endpoint is refused
    response = post(emu, '{"acks": [0]}', "/services/collector/ack", params={"channel": CHANNEL})
    assert (response.status_code, response.json()) == (400, {"text": "ACK is disabled", "code": 14})
    assert "ackId" not in post(emu, '{"event":"x"}').json()


def test_ack_after_delays_acknowledgement_and_lost_acks_stay_false() -> None:
    with SplunkEmulator(ack=True) as emulator, hec(emulator, headers={"X-Splunk-Request-Channel": CHANNEL}) as session:
        emulator.ack_after = 0.3
        ack_id = session.post("/services/collector/event", content='{"event":"x"}').json()["ackId"]
        assert len(emulator.events) == 1, "indexed at once, acknowledged later"
        query = {"params": {"channel": CHANNEL}, "json": {"acks": [ack_id]}}
        assert session.post("/services/collector/ack", **query).json() == {"acks": {"0": False}}
        time.sleep(0.35)
        assert session.post("/services/collector/ack", **query).json() == {"acks": {"0": True}}

        pending = session.post("/services/collector/event", content='{"event":"x"}').json()["ackId"]
        emulator.lose_acks()
        later = session.post("/services/collector/event", content='{"event":"x"}').json()["ackId"]
        time.sleep(0.35)
        reply = session.post("/services/collector/ack", params={"channel": CHANNEL},
                             json={"acks": [0, pending, later]}).json()
        assert reply == {"acks": {"0": True, "1": False, "2": False}}
        assert emulator.acked(CHANNEL) == {0}


# ---------------------------------------------------------------------------------------------------------------
# HEC: fault injection and transport
# ---------------------------------------------------------------------------------------------------------------


def test_faults_apply_fifo_to_data_posts_only(emu: SplunkEmulator) -> None:
    emu.fail_next(2, 503, 9, "Server is busy")
    emu.garbage_next(1)
    with hec(emu) as session:
        assert session.get("/services/collector/health").json()["code"] == 17, "health is not a data post"
        replies = [session.post("/services/collector/event", content='{"event":"x"}') for _ in range(4)]
    assert [(r.status_code, r.json()) for r in replies[:2]] == [(503, {"text": "Server is busy", "code": 9})] * 2
    assert replies[2].status_code == 200 and replies[2].text == "<html>proxy error</html>"
    with pytest.raises(ValueError):
        replies[2].json()
    assert replies[3].json()["code"] == 0
    assert len(emu.events) == 1 and len(emu.requests) == 5


def test_drop_next_hangs_up_without_an_answer(emu: SplunkEmulator) -> None:
    emu.drop_next(1)
    with hec(emu) as session:
        with pytest.raises(httpx.RemoteProtocolError):
            session.post("/services/collector/event", content='{"event":"lost"}')
        assert session.post("/services/collector/event", content='{"event":"kept"}').json()["code"] == 0
    assert [event["event"] for event in emu.events] == ["kept"]
    assert emu.requests[0].body == b'{"event":"lost"}', "the request was read before hanging up"


def test_delay_slows_every_post(emu: SplunkEmulator) -> None:
    emu.delay = 0.3
    started = time.monotonic()
    assert post(emu, '{"event":"slow"}').json()["code"] == 0
    assert time.monotonic() - started >= 0.3


def test_down_refuses_connections_and_up_listens_on_the_same_port(emu: SplunkEmulator) -> None:
    port = emu.hec_port
    with hec(emu) as session:
        assert session.post("/services/collector/event", content='{"event":"before"}').json()["code"] == 0
        emu.down()
        with pytest.raises(httpx.TransportError):
            session.post("/services/collector/event", content='{"event":"during"}')
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{emu.hec_url}/services/collector/health")
        emu.up()
        assert emu.hec_port == port
        assert session.post("/services/collector/event", content='{"event":"after"}').json()["code"] == 0
    assert [event["event"] for event in emu.events] == ["before", "after"]


def test_keep_alive_and_concurrent_clients(emu: SplunkEmulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", emu.hec_port, timeout=5)
    for number in range(3):  # three requests on one socket
        connection.request("POST", "/services/collector/event", body=f'{{"event":{number}}}',
                           headers={"Authorization": f"Splunk {TOKEN}"})
        response = connection.getresponse()
        assert json.loads(response.read()) == {"text": "Success", "code": 0}
        assert response.getheader("Connection") != "close"
    connection.close()

    def sender(worker: int) -> None:
        with hec(emu) as session:
            for number in range(20):
                body = envelopes({"event": {"worker": worker, "n": number}}, {"event": "pair"})
                assert session.post("/services/collector/event", content=body).json()["code"] == 0

    threads = [threading.Thread(target=sender, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(emu.events) == 3 + 8 * 20 * 2


def test_batches_of_500_are_fast(emu: SplunkEmulator) -> None:
    batch = envelopes(*({"event": {"n": n, "postern": {"scan_id": "bench"}}, "fields": {"rule": "R"}}
                        for n in range(500))).encode()
    started = time.monotonic()
    with hec(emu) as session:
        for _ in range(20):
            assert session.post("/services/collector/event", content=batch).json()["code"] == 0
    assert len(emu.events) == 10_000
    assert time.monotonic() - started < 1.5
    assert emu.search("search index=main postern.scan_id=bench | stats count") == [{"count": "10000"}]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "splunk-emulator")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "splunk.crt", folder / "splunk.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_on_both_ports(tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    trust = ssl.create_default_context(cafile=str(cert_path))
    with SplunkEmulator(tls=server) as emulator:
        assert emulator.hec_url.startswith("https://") and emulator.mgmt_url.startswith("https://")
        with hec(emulator, verify=trust) as session:
            assert session.post("/services/collector/event", content='{"event":"tls"}').json()["code"] == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{emulator.hec_url}/services/collector/health")  # not trusted by default
        service = connect(emulator, verify=True, context=trust)
        assert oneshot(service, "search index=main tls | stats count") == [{"count": "1"}]
        with pytest.raises(ConnectionResetError):  # plain HTTP to a TLS port: a reset, or a hang-up
            plain = http.client.HTTPConnection("127.0.0.1", emulator.hec_port, timeout=5)
            plain.request("GET", "/services/collector/health")
            plain.getresponse()


# ---------------------------------------------------------------------------------------------------------------
# Management port through splunklib
# ---------------------------------------------------------------------------------------------------------------


def test_login_server_info_and_authentication_failures(emu: SplunkEmulator) -> None:
    service = connect(emu)
    info = service.info
    assert info["version"] == "9.4.1" and service.splunk_version >= (9, 0, 2)
    with pytest.raises(binding.AuthenticationError) as failed:
        connect(emu, password="wrong")
    assert failed.value.status == 401 and "Login failed" in str(failed.value)
    anonymous = client.Service(host="127.0.0.1", port=emu.mgmt_port, scheme="http")
    with pytest.raises(binding.AuthenticationError):
        anonymous.get("/services/server/info")
    with pytest.raises(binding.HTTPError) as missing:
        service.get("/services/no/such/endpoint")
    assert missing.value.status == 404


def test_session_keys_bearer_tokens_and_basic_auth(emu: SplunkEmulator) -> None:
    key = binding.connect(host="127.0.0.1", port=emu.mgmt_port, scheme="http", username="admin",
                          password=PASSWORD).token.removeprefix("Splunk ")
    assert "main" in client.Service(host="127.0.0.1", port=emu.mgmt_port, scheme="http", token=key).indexes
    assert "main" in connect(emu, basic=True).indexes
    with pytest.raises(binding.AuthenticationError):
        client.connect(host="127.0.0.1", port=emu.mgmt_port, scheme="http", splunkToken="anything").indexes.list()
    with SplunkEmulator(bearer_token="jwt-for-tests") as emulator:
        service = client.connect(host="127.0.0.1", port=emulator.mgmt_port, scheme="http",
                                 splunkToken="jwt-for-tests")
        assert [index.name for index in service.indexes] == ["main"]


def test_indexes_are_created_listed_and_conflict_on_duplicates(emu: SplunkEmulator) -> None:
    service = connect(emu)
    created = service.indexes.create("postern")
    assert created.name == "postern" and created["datatype"] == "event"
    assert "postern" in service.indexes and "postern" in emu.indexes
    assert sorted(index.name for index in service.indexes) == ["main", "postern"]
    with pytest.raises(binding.HTTPError) as duplicate:
        service.indexes.create("postern")
    assert duplicate.value.status == 409 and "already exists" in str(duplicate.value)
    with pytest.raises(binding.HTTPError) as invalid:
        service.indexes.create("_Bad Name")
    assert invalid.value.status == 400
    with pytest.raises(KeyError):
        service.indexes["absent"]
    assert "absent" not in service.indexes
    service.indexes.delete("postern")
    assert "postern" not in emu.indexes


def test_a_created_http_input_has_a_token_that_works_for_hec(emu: SplunkEmulator) -> None:
    service = connect(emu)
    service.indexes.create("postern")
    created = service.inputs.create("postern", "http", index="postern", indexes="postern",
                                    sourcetype="postern:finding")
    token = created["token"]
    assert created.kind == "http" and created.name == "http://postern"
    assert emu.hec_inputs["postern"]["token"] == token
    assert ("http://postern", "http") in [(item.name, item.kind) for item in service.inputs.list("http")]
    assert "http://postern" in [item.name for item in service.inputs]

    with httpx.Client(base_url=emu.hec_url, headers={"Authorization": f"Splunk {token}"}, timeout=5) as session:
        assert session.post("/services/collector/event", content='{"event":"routed"}').json()["code"] == 0
        refused = session.post("/services/collector/event", content='{"event":"x","index":"main"}')
        assert (refused.status_code, refused.json()["code"]) == (400, 7), "main is not in the token's indexes"
    assert [(e["index"], e["sourcetype"], e["source"]) for e in emu.events] == [
        ("postern", "postern:finding", "http:postern")]

    with pytest.raises(binding.HTTPError) as duplicate:
        service.inputs.create("postern", "http")
    assert duplicate.value.status == 409
    with pytest.raises(binding.HTTPError) as unknown_index:
        service.inputs.create("broken", "http", index="nope")
    assert unknown_index.value.status == 400


def test_http_inputs_with_ack_and_disabled_tokens(emu: SplunkEmulator) -> None:
    service = connect(emu)
    acked = service.inputs.create("acked", "http", useACK="1")
    assert acked["useACK"] == "1"
    token = acked["token"]
    with httpx.Client(base_url=emu.hec_url, headers={"Authorization": f"Splunk {token}"}, timeout=5) as session:
        assert session.post("/services/collector/event", content='{"event":"x"}').json()["code"] == 10
        reply = session.post("/services/collector/event", content='{"event":"x"}',
                             headers={"X-Splunk-Request-Channel": CHANNEL}).json()
        assert reply == {"text": "Success", "code": 0, "ackId": 0}
        acked.disable()
        assert emu.hec_inputs["acked"]["disabled"] is True
        refused = session.post("/services/collector/event", content='{"event":"x"}',
                               headers={"X-Splunk-Request-Channel": CHANNEL})
        assert (refused.status_code, refused.json()) == (403, {"text": "Token disabled", "code": 1})


def test_oneshot_search_counts_and_filters_on_dotted_event_paths(emu: SplunkEmulator) -> None:
    body = envelopes(
        {"event": {"event": {"id": "a-1"}, "postern": {"scan_id": "abc", "tags": ["tls", "cert"]}},
         "sourcetype": "postern:finding", "time": 1700000000, "fields": {"rule": "TLS-01"}},
        {"event": {"event": {"id": "a-2"}, "postern": {"scan_id": "abc"}}, "sourcetype": "postern:finding",
         "time": 1700000010},
        {"event": {"event": {"id": "a-2"}, "postern": {"scan_id": "other"}}, "sourcetype": "postern:finding",
         "time": 1700000020},
        {"event": "plain text finding", "sourcetype": "other"},
    )
    assert post(emu, body).json()["code"] == 0
    service = connect(emu)
    assert oneshot(service, "search index=main sourcetype=postern:finding postern.scan_id=abc | stats count") == [
        {"count": "2"}]
    assert oneshot(service, 'search index=main postern.scan_id="ab*" event.id=a-2 | stats count') == [
        {"count": "1"}]
    assert oneshot(service, "search index=main sourcetype=postern:* | stats dc(event.id) as ids") == [{"ids": "2"}]
    assert oneshot(service, "search index=main rule=TLS-01 postern.tags{}=cert | table event.id rule") == [
        {"event.id": "a-1", "rule": "TLS-01"}]
    assert oneshot(service, "search index=main NOT sourcetype=other | stats count by postern.scan_id") == [
        {"postern.scan_id": "abc", "count": "2"}, {"postern.scan_id": "other", "count": "1"}]
    assert oneshot(service, "search sourcetype=other finding | stats count") == [{"count": "1"}], "main by default"
    assert oneshot(service, "search index=postern | stats count") == [{"count": "0"}]

    newest, *_ = oneshot(service, "search index=main sourcetype=postern:finding")
    assert json.loads(newest["_raw"]) == {"event": {"id": "a-2"}, "postern": {"scan_id": "other"}}
    assert (newest["_time"], newest["sourcetype"], newest["postern.scan_id"]) == (
        "2023-11-14T22:13:40.000+00:00", "postern:finding", "other")
    assert len(oneshot(service, "search index=main", count=2)) == 2
    assert emu.search("search index=main postern.scan_id=abc | stats count") == [{"count": "2"}]


@pytest.mark.parametrize(("query", "message"), [
    ("index=main | stats count", "Unknown search command 'index'"),
    ("search index=main | eval x=1", "Error in 'eval' command"),
    ("search index=main | frobnicate", "Unknown search command 'frobnicate'"),
    ("search index=main a OR b", "only implicitly ANDed"),
    ("search index=main | stats avg(x)", "does not support 'avg'"),
    ("| makeresults", "Error in 'makeresults' command"),
])
def test_unsupported_spl_is_a_400_not_empty_results(emu: SplunkEmulator, query: str, message: str) -> None:
    service = connect(emu)
    with pytest.raises(binding.HTTPError) as failed:
        service.jobs.oneshot(query, output_mode="json")
    assert failed.value.status == 400
    assert message in json.loads(failed.value.body)["messages"][0]["text"]
    with pytest.raises(SplunkSearchError, match=re.escape(message)):
        emu.search(query)


def test_xml_results_for_splunklib_results_reader(emu: SplunkEmulator) -> None:
    post(emu, envelopes({"event": {"k": "v<&>"}}, {"event": "two"}))
    service = connect(emu)
    with pytest.warns(DeprecationWarning):
        reader = results.ResultsReader(service.jobs.oneshot("search index=main | table k host"))
    rows = [dict(row) for row in reader if isinstance(row, dict)]
    assert rows == [{"host": "127.0.0.1"}, {"k": "v<&>", "host": "127.0.0.1"}]
    assert emu.internal_errors == []


def test_the_management_port_stays_up_when_hec_goes_down(emu: SplunkEmulator) -> None:
    service = connect(emu)
    emu.down()
    assert "main" in service.indexes
    emu.down(management=True)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", emu.mgmt_port), timeout=2)
    emu.up()
    assert "main" in connect(emu).indexes
