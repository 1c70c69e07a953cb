"""``connector elastic setup --kibana URL`` as an Elastic user runs it, against the strict Kibana emulator: the
Webhook connector calls the responder with the secret its elastic source expects, the detection rules fire on the
finding transitions and call that connector, the dashboard arrives, and a second run updates instead of adding."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from connector.delivery.sinks.elasticsearch import assets as elastic
from connector.delivery.sinks.elasticsearch import kibana
from connector.delivery.sinks.elasticsearch.kibana import CONNECTOR_ID
from connector.respond.callbacks import KibanaWebhook
from emulators.elasticsearch import ElasticsearchEmulator
from emulators.kibana import KibanaEmulator
from support.cli import connector
from support.pki import Pki

API_KEY = "a2liYW5hLWtleS1pZDpraWJhbmEta2V5LXNlY3JldA=="  # base64("kibana-key-id:kibana-key-secret")
TOKEN = "kibana-callback-token-0123456789"
ENV = {"KIBANA_KEY": API_KEY, "POSTERN_KIBANA_TOKEN": TOKEN, "ES_KEY": "test-api-key"}
SHIPPED_RULES = Path(__file__).parents[2] / "mappings" / "elastic" / kibana.RULES_FILE


def write_config(tmp_path: Path, es_url: str = "http://127.0.0.1:9", *, source: dict[str, Any] | None = None,
                 dataset: str = "postern.findings") -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "assets": [{"host": "shop.example.test"}],
        "state_dir": str(tmp_path / "state"),
        "sinks": [{"type": "elasticsearch", "hosts": [es_url], "api_key": {"env": "ES_KEY"}, "dataset": dataset}],
        "respond": {"host": "10.0.0.5", "port": 8443, "sources": [source or {
            "name": "kibana", "kind": "elastic", "auth": "bearer", "secret": {"env": "POSTERN_KIBANA_TOKEN"}}]},
    }))
    return config


def setup(config: Path, kibana_url: str, *extra: str, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    return connector("elastic", "setup", "-c", str(config), "--kibana", kibana_url, "--api-key-env", "KIBANA_KEY",
                     *extra, env={**ENV, **(env or {})})


def test_setup_installs_the_connector_the_rules_and_the_dashboard(tmp_path: Path) -> None:
    with ElasticsearchEmulator() as cluster, KibanaEmulator() as kibana_:
        done = setup(write_config(tmp_path, cluster.url), kibana_.url,
                     "--responder-url", "https://postern.corp.example:8443")
        assert done.returncode == 0, done.stderr
        assert "index template postern-findings" in done.stdout  # the Elasticsearch part ran too
        space = kibana_.space()
        [hook] = space.connectors.values()
        assert hook.name == kibana.CONNECTOR_NAME and hook.connector_type_id == ".webhook"
        assert hook.config["url"] == "https://postern.corp.example:8443/v1/callbacks/elastic"
        assert hook.config["headers"]["Authorization"] == f"Bearer {TOKEN}" and hook.config["hasAuth"] is False
        shipped = {json.loads(line)["rule_id"] for line in SHIPPED_RULES.read_text().splitlines() if line.strip()}
        assert set(space.rules) == shipped and len(shipped) == 6
        for rule in space.rules.values():
            assert rule["index"] == ["logs-postern.findings-*"] and rule["enabled"] is True
            assert [(a["id"], a["action_type_id"]) for a in rule["actions"]] == [(hook.id, ".webhook")]
        kinds = {kind for kind, _ in space.saved_objects}
        assert kinds == {"index-pattern", "lens", "dashboard"}
        assert space.saved_objects[("index-pattern", "postern-events")]["attributes"]["title"] == \
            "logs-postern.findings-*"
        assert f"({hook.id}): created" in done.stdout and "6 imported" in done.stdout


def test_a_second_run_updates_the_connector_instead_of_adding_one(tmp_path: Path) -> None:
    with KibanaEmulator() as kibana_:
        config = write_config(tmp_path)
        first = setup(config, kibana_.url, "--kibana-only")
        assert first.returncode == 0, first.stderr
        [created] = kibana_.space().connectors
        second = setup(config, kibana_.url, "--kibana-only", "--responder-url", "https://other.example:9443",
                       env={"POSTERN_KIBANA_TOKEN": "rotated-token-9876543210"})
        assert second.returncode == 0, second.stderr
        space = kibana_.space()
        assert list(space.connectors) == [created] and "updated" in second.stdout
        hook = space.connectors[created]
        assert hook.config["url"] == "https://other.example:9443/v1/callbacks/elastic"
        assert hook.config["headers"]["Authorization"] == "Bearer rotated-token-9876543210"
        assert len(space.rules) == 6 and len(space.saved_objects) == 12
        assert ("PUT", f"/api/actions/connector/{created}") in kibana_.requests


def test_a_creation_whose_answer_was_lost_is_retried_into_one_connector(tmp_path: Path) -> None:
    with KibanaEmulator() as kibana_:
        kibana_.lost_creations = 1  # created, but the answer never arrives: the retry must not make a twin
        done = setup(write_config(tmp_path), kibana_.url, "--kibana-only")
        assert done.returncode == 0, done.stderr
        assert list(kibana_.space().connectors) == [CONNECTOR_ID]
        assert [request for request in kibana_.requests if request[1].startswith("/api/actions/connector/")] == [
            ("POST", f"/api/actions/connector/{CONNECTOR_ID}"), ("POST", f"/api/actions/connector/{CONNECTOR_ID}"),
            ("PUT", f"/api/actions/connector/{CONNECTOR_ID}")]


def test_the_default_responder_url_is_the_receivers_own_address(tmp_path: Path) -> None:
    with KibanaEmulator() as kibana_:
        assert setup(write_config(tmp_path), kibana_.url, "--kibana-only").returncode == 0
        [hook] = kibana_.space().connectors.values()
        assert hook.config["url"] == "http://10.0.0.5:8443/v1/callbacks/elastic"


def test_a_basic_auth_source_gets_encrypted_connector_secrets(tmp_path: Path) -> None:
    source = {"name": "kibana", "kind": "elastic", "auth": "basic", "username": "kibana-hook",
              "secret": {"env": "POSTERN_KIBANA_TOKEN"}}
    with KibanaEmulator(spaces=("default", "security")) as kibana_:
        done = setup(write_config(tmp_path, source=source, dataset="postern.acme"), kibana_.url, "--kibana-only",
                     "--space", "security", "--disable-rules")
        assert done.returncode == 0, done.stderr
        assert not kibana_.space().connectors  # nothing in the default space
        space = kibana_.space("security")
        [hook] = space.connectors.values()
        assert hook.config["hasAuth"] is True and hook.config["authType"] == "webhook-authentication-basic"
        assert hook.secrets == {"user": "kibana-hook", "password": TOKEN}
        assert "Authorization" not in (hook.config["headers"] or {})
        assert all(rule["enabled"] is False and rule["index"] == ["logs-postern.acme-*"]
                   for rule in space.rules.values())
        assert space.saved_objects[("index-pattern", "postern-events")]["attributes"]["title"] == "logs-postern.acme-*"


def test_kibana_behind_its_own_ca_is_verified_with_the_ca_bundle(tmp_path: Path, pki: Pki) -> None:
    chain = pki.intermediate.issue(["127.0.0.1"]).write(tmp_path, "kibana")
    with KibanaEmulator(tls=chain) as kibana_:
        config = write_config(tmp_path)
        untrusted = setup(config, kibana_.url, "--kibana-only")
        assert untrusted.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr
        trusted = setup(config, kibana_.url, "--kibana-only", "--kibana-ca-bundle", str(pki.bundle))
        assert trusted.returncode == 0, trusted.stderr
        assert len(kibana_.space().connectors) == 1


def test_a_wrong_api_key_is_one_clear_line_and_exit_code_2(tmp_path: Path) -> None:
    with KibanaEmulator() as kibana_:
        done = setup(write_config(tmp_path), kibana_.url, "--kibana-only", env={"KIBANA_KEY": "d3Jvbmc6a2V5"})
        assert done.returncode == 2, done.stdout + done.stderr
        assert "HTTP 401" in done.stderr and "unable to authenticate" in done.stderr
        assert "GET /api/actions/connectors" in done.stderr and "Traceback" not in done.stderr
        assert not kibana_.space().connectors


def test_kibana_starting_up_is_waited_for_and_a_429_honoured(tmp_path: Path) -> None:
    with KibanaEmulator() as kibana_:
        kibana_.fail_next(503, times=2)
        kibana_.fail_next(429, retry_after=1)
        done = setup(write_config(tmp_path), kibana_.url, "--kibana-only")
        assert done.returncode == 0, done.stderr
        assert len(kibana_.space().connectors) == 1 and len(kibana_.space().rules) == 6
        assert kibana_.requests[:4] == [("GET", "/api/actions/connectors")] * 4


def test_kibana_that_stays_down_is_reported_with_its_answer(tmp_path: Path) -> None:
    with KibanaEmulator() as kibana_:
        kibana_.fail_next(503, times=20)
        done = setup(write_config(tmp_path), kibana_.url, "--kibana-only")
        assert done.returncode == 2
        assert "HTTP 503" in done.stderr and "Kibana server is not ready yet" in done.stderr
        assert "gave up after 5 attempts" in done.stderr and "Traceback" not in done.stderr


def test_a_configuration_without_an_elastic_source_is_refused_before_kibana_is_called(tmp_path: Path) -> None:
    source = {"name": "ta", "kind": "splunk", "auth": "signature", "secret": "whsec_" + "A" * 32}
    with KibanaEmulator() as kibana_:
        done = setup(write_config(tmp_path, source=source), kibana_.url, "--kibana-only")
        assert done.returncode == 2 and "kind elastic" in done.stderr
        assert kibana_.requests == []


# -- the emulator is as strict as Kibana ----------------------------------------------------------------------


def test_the_emulator_refuses_writes_without_kbn_xsrf_and_bad_connector_bodies() -> None:
    with KibanaEmulator() as kibana_:
        auth = {"Authorization": f"ApiKey {API_KEY}"}
        body = {"name": "x", "connector_type_id": ".webhook", "config": {"url": "https://h.example/"}, "secrets": {}}
        refused = httpx.post(f"{kibana_.url}/api/actions/connector", json=body, headers=auth)
        assert refused.status_code == 400 and "kbn-xsrf" in refused.json()["message"]
        xsrf = {**auth, "kbn-xsrf": "true"}
        bad_url = httpx.post(f"{kibana_.url}/api/actions/connector", headers=xsrf,
                             json={**body, "config": {"url": "not a url"}})
        assert bad_url.status_code == 400 and "unable to parse url" in bad_url.json()["message"]
        half_basic = httpx.post(f"{kibana_.url}/api/actions/connector", headers=xsrf,
                                json={**body, "secrets": {"user": "u"}})
        assert half_basic.status_code == 400 and "must specify one of" in half_basic.json()["message"]
        assert httpx.get(f"{kibana_.url}/api/actions/connectors").status_code == 401
        rule = {"rule_id": "r", "name": "n", "description": "d", "type": "query", "query": "*", "risk_score": 1,
                "severity": "low", "actions": [{"group": "default", "id": "nope", "action_type_id": ".webhook",
                                                "params": {}}]}
        answer = httpx.post(f"{kibana_.url}/api/detection_engine/rules/_import", headers=xsrf,
                            files={"file": ("r.ndjson", json.dumps(rule) + "\n{broken\n")}).json()
        assert answer["success"] is False and answer["rules_count"] == 2
        assert [e["error"]["status_code"] for e in answer["errors"]] == [404, 400]
        assert "Connector id missing is: nope" in answer["errors"][0]["error"]["message"]


# -- the shipped rules: what they query and what they send ----------------------------------------------------


def shipped_rules() -> list[dict[str, Any]]:
    return kibana.detection_rules("connector-id", "logs-postern.findings-*")


def kql_fields(query: str) -> set[str]:
    return set(re.findall(r"([A-Za-z_@][\w.@]*)\s*(?::|<=|>=|<|>)", query))


def test_every_rule_queries_fields_the_connector_emits_and_keys_on_transitions() -> None:
    emitted = set(elastic.field_types())
    rules = {rule["rule_id"]: rule for rule in shipped_rules()}
    for rule in rules.values():
        fields = kql_fields(rule["query"])
        assert fields and fields <= emitted, (rule["rule_id"], sorted(fields - emitted))
        assert rule["language"] == "kuery" and rule["type"] == "query"
    values = " ".join(rule["query"] for rule in rules.values())
    assert {"finding-opened", "finding-reopened", "finding-changed", "digest-daily"} <= set(
        re.findall(r'"([a-z-]+)"', values))
    # a resolution calls back only for the playbook that closes the ticket (after a confirming rescan)
    assert [rule_id for rule_id, rule in rules.items() if "finding-resolved" in rule["query"]] == \
        ["postern-finding-resolved"]
    assert "postern.certificate.days_left <= 14" in rules["postern-certificate-expiring-14d"]["query"]


def test_the_splunk_searches_and_the_kibana_rules_cover_the_same_cases() -> None:
    searches = Path(__file__).parents[2] / "mappings" / "splunk" / "TA-postern" / "default" / "savedsearches.conf"
    splunk = {name.removeprefix("Postern - ") for name in re.findall(r"^\[(.+)\]$", searches.read_text(), re.M)}
    assert {rule["name"].removeprefix("Postern - ") for rule in shipped_rules()} == splunk


def render(template: str, variables: dict[str, Any]) -> str:
    """Mustache as Kibana's Webhook connector renders a body: ``{{x}}`` JSON-escaped, ``{{{x}}}`` raw,
    ``.asJSON`` the value as JSON."""
    def value(path: str) -> Any:
        as_json = path.endswith(".asJSON")
        node: Any = variables
        for part in path.removesuffix(".asJSON").split("."):
            node = node[part]
        return json.dumps(node) if as_json else node

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):
            return str(value(match.group(1)))
        return json.dumps(str(value(match.group(2))))[1:-1]

    return re.sub(r"\{\{\{([\w.]+)\}\}\}|\{\{([\w.]+)\}\}", substitute, template)


def test_each_rule_action_renders_to_a_body_the_responder_accepts() -> None:
    alert = {"postern.fingerprint": "c0" * 16, "rule.id": "cert.expiring_soon", "message": 'say "hi"\n',
             "kibana.alert.uuid": "6b4e"}
    variables = {"rule": {"id": "3c1f0d", "name": 'Postern - "quoted"'}, "alert": {"id": "a1", "uuid": "6b4e"},
                 "date": "2026-12-08T00:00:00.000Z", "context": {"alerts": [alert]}}
    for rule in shipped_rules():
        [action] = rule["actions"]
        assert action["id"] == "connector-id" and action["frequency"]["summary"] is False  # one call per alert
        body = KibanaWebhook.model_validate_json(render(action["params"]["body"], variables))
        assert body.rule.name == 'Postern - "quoted"' and body.rows() == [alert]
        assert body.dedup_key() == "3c1f0d:6b4e:2026-12-08T00:00:00.000Z"


def test_the_emulator_imports_saved_objects_as_kibana_answers() -> None:
    with KibanaEmulator() as kibana_:
        headers = {"Authorization": f"ApiKey {API_KEY}", "kbn-xsrf": "true"}
        lens = {"type": "lens", "id": "p", "attributes": {"title": "P"},
                "references": [{"type": "index-pattern", "id": "absent", "name": "layer"}]}
        view = {"type": "index-pattern", "id": "v", "attributes": {"title": "logs-*"}, "references": []}

        def upload(*objects: dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
            ndjson = "".join(json.dumps(obj) + "\n" for obj in objects)
            return httpx.post(f"{kibana_.url}/api/saved_objects/_import", headers=headers,
                              params={"overwrite": str(overwrite).lower()},
                              files={"file": ("export.ndjson", ndjson)}).json()

        missing = upload(lens)
        assert missing["success"] is False and missing["errors"][0]["error"] == {
            "type": "missing_references", "references": [{"type": "index-pattern", "id": "absent"}]}
        assert upload(view) == {"success": True, "successCount": 1, "errors": [],
                                "successResults": [{"type": "index-pattern", "id": "v", "meta": {"title": "logs-*"}}]}
        assert upload(view)["errors"][0]["error"] == {"type": "conflict"}
        assert upload(view, overwrite=True)["successResults"][0]["overwrite"] is True
        wrong = httpx.post(f"{kibana_.url}/api/saved_objects/_import", headers=headers,
                           files={"file": ("export.json", "{}")})
        assert wrong.status_code == 400 and "Invalid file extension" in wrong.json()["message"]


def custom_mappings(tmp_path: Path) -> Path:
    directory = tmp_path / "mappings"
    shutil.copytree(Path(__file__).parents[2] / "mappings", directory)
    return directory


def test_a_panel_kibana_cannot_resolve_is_named_in_the_error(tmp_path: Path) -> None:
    mappings = custom_mappings(tmp_path)
    path = mappings / "elastic" / "kibana-dashboard.ndjson"
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    objects[1]["references"][0]["id"] = "renamed-view"
    path.write_text("".join(json.dumps(obj) + "\n" for obj in objects))
    config = write_config(tmp_path)
    document = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**document, "mappings_dir": str(mappings)}))
    with KibanaEmulator() as kibana_:
        done = setup(config, kibana_.url, "--kibana-only")
        assert done.returncode == 2, done.stdout
        assert "after 2 step(s)" in done.stderr and "missing_references index-pattern/renamed-view" in done.stderr
        assert ("lens", objects[1]["id"]) not in kibana_.space().saved_objects
        assert len(kibana_.space().saved_objects) == len(objects) - 1  # the others are imported all the same


def test_a_rule_file_missing_a_field_fails_before_kibana_changes(tmp_path: Path) -> None:
    mappings = custom_mappings(tmp_path)
    path = mappings / "elastic" / kibana.RULES_FILE
    rules = [json.loads(line) for line in path.read_text().splitlines()]
    del rules[2]["query"]
    path.write_text("".join(json.dumps(rule) + "\n" for rule in rules))
    config = write_config(tmp_path)
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "mappings_dir": str(mappings)}))
    with KibanaEmulator() as kibana_:
        done = setup(config, kibana_.url, "--kibana-only")
        assert done.returncode == 2 and "detection-rules.ndjson: rule 3: missing query" in done.stderr
        assert kibana_.requests == []
