"""The Kibana side of ``connector elastic setup --kibana URL``: the Webhook connector that calls the responder, the
Elastic Security detection rules that use it, and the posture dashboard.

Everything installed is data in ``mappings/elastic/`` (``detection-rules.ndjson``, ``kibana-dashboard.ndjson``) and
every step is idempotent, so a second run updates what the first created:

* the Webhook connector is found by name (``GET /api/actions/connectors``) and updated in place
  (``PUT /api/actions/connector/{id}``), else created (``POST /api/actions/connector``);
* the rules are imported with ``overwrite=true`` (keyed on their ``rule_id``), their Webhook action pointed at the
  connector's id, which the import API requires to exist already (it answers "connector is missing" otherwise);
* the saved objects are imported with ``overwrite=true`` (fixed object ids).

Kibana wants ``kbn-xsrf`` on every write. 429 (with its ``Retry-After``) and 5xx answers and transport errors are
retried with exponential backoff and jitter, a few times; anything else ends the setup with Kibana's own message.
"""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from connector.core.errors import ConfigError, ConnectorError
from connector.core.resources import mappings_dir
from connector.delivery.sinks.base import SetupStep
from connector.delivery.sinks.elasticsearch import dashboard

log = logging.getLogger(__name__)

CONNECTOR_NAME = "Postern responder"
CONNECTOR_PLACEHOLDER = "postern-responder"  # the action id in detection-rules.ndjson, replaced by the real one
RULES_FILE = "detection-rules.ndjson"
CALLBACK_PATH = "/v1/callbacks/elastic"
_RETRY_AFTER_CEILING = 60.0
_REQUIRED_RULE_FIELDS = ("rule_id", "name", "description", "type", "risk_score", "severity", "query", "index")


@dataclass(frozen=True)
class KibanaTarget:
    """Where Kibana is and how to sign in: an API key (``Authorization: ApiKey``) or a user and password."""

    url: str
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    space: str | None = None
    ca_bundle: Path | None = None
    verify_tls: bool = True
    timeout: float = 30.0
    attempts: int = 5


@dataclass(frozen=True)
class ResponderAuth:
    """What the responder's elastic source expects: a bearer token, or a user and password (basic)."""

    url: str  # the responder's callback URL as Kibana reaches it
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None


CONNECTOR_ID = "5f0e4a7c-3b1d-4c2e-9a8f-6d7b0c1e2f3a"  # a fixed UUID v4: Kibana accepts a v1 or v4 id of ours


class KibanaError(ConnectorError):
    """Kibana refused a request: the message has the method, path, status and Kibana's own error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KibanaClient:
    def __init__(self, target: KibanaTarget, *, initial_backoff: float = 0.5, max_backoff: float = 10.0) -> None:
        headers = {"kbn-xsrf": "postern", "Accept": "application/json", "User-Agent": "postern-connector"}
        auth: httpx.BasicAuth | None = None
        if target.api_key is not None:
            headers["Authorization"] = f"ApiKey {target.api_key.get_secret_value()}"
        elif target.username is not None and target.password is not None:
            auth = httpx.BasicAuth(target.username, target.password.get_secret_value())
        else:
            raise ConfigError("Kibana: give an API key, or a username and password")
        verify: ssl.SSLContext | bool = False
        if target.verify_tls:
            try:
                verify = ssl.create_default_context(cafile=str(target.ca_bundle) if target.ca_bundle else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"Kibana CA bundle {target.ca_bundle}: {exc}") from None
        base = target.url.rstrip("/") + (f"/s/{target.space}" if target.space and target.space != "default" else "")
        self.base = base
        self.target = target
        self._client = httpx.Client(base_url=base, headers=headers, auth=auth, timeout=target.timeout,
                                    verify=verify, follow_redirects=False)
        self._wait = wait_exponential_jitter(initial=initial_backoff, max=max_backoff)

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer of a 2xx; retries 429, 5xx and transport errors; raises KibanaError otherwise."""
        retrying = Retrying(stop=stop_after_attempt(self.target.attempts), wait=self._backoff,
                            retry=retry_if_exception_type(_Retryable), reraise=True,
                            before_sleep=lambda state: log.warning("Kibana %s %s: %s; retrying", method, path,
                                                                   state.outcome and state.outcome.exception()))
        try:
            return retrying(self._once, method, path, **kwargs)
        except _Retryable as exc:
            raise KibanaError(f"Kibana {method} {path}: {exc} (gave up after {self.target.attempts} attempts)") \
                from None

    def _backoff(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, _RETRY_AFTER_CEILING)
        return float(self._wait(state))

    def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            if _certificate_refused(exc):  # not transient: retrying cannot help
                raise KibanaError(f"Kibana {method} {path}: {exc} (give its CA with --kibana-ca-bundle)") from None
            raise _Retryable(f"cannot reach Kibana at {self.base}: {exc}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}: {_message(response)}", _retry_after(response))
        if response.status_code >= 300:
            hint = " (check the API key or user and password)" if response.status_code == 401 else ""
            raise KibanaError(f"Kibana {method} {path}: HTTP {response.status_code}: {_message(response)}{hint}",
                              response.status_code)
        try:
            return response.json()
        except ValueError:
            raise KibanaError(f"Kibana {method} {path}: HTTP {response.status_code}, but the answer is not JSON "
                              f"(is {self.target.url} Kibana?): {response.text[:200]!r}") from None


def _certificate_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _message(response: httpx.Response) -> str:
    """Kibana's error body ``{"statusCode", "error", "message"}`` as one line, or the start of whatever came."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        message = " ".join(str(body["message"]).split())  # Elasticsearch's root causes come with tabs and newlines
        return f"{body.get('error', response.reason_phrase)}: {message}"[:1000]
    return json.dumps(body)[:1000]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


# -- the Webhook connector -----------------------------------------------------------------------------------


def connector_body(responder: ResponderAuth) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config`` and ``secrets`` of the Webhook connector for the responder's elastic source.

    Basic credentials go in ``secrets`` (Kibana stores them encrypted); a bearer token can only travel as a
    header of ``config.headers``, which Kibana stores in the connector's (unencrypted) configuration.
    """
    config: dict[str, Any] = {"url": responder.url, "method": "post",
                              "headers": {"Content-Type": "application/json"}}
    secrets: dict[str, Any] = {}
    if responder.username is not None and responder.password is not None:
        config |= {"hasAuth": True, "authType": "webhook-authentication-basic"}
        secrets = {"user": responder.username, "password": responder.password.get_secret_value()}
    else:
        config |= {"hasAuth": False, "authType": None}
        if responder.token is not None:
            config["headers"]["Authorization"] = f"Bearer {responder.token.get_secret_value()}"
    return config, secrets


def ensure_connector(client: KibanaClient, responder: ResponderAuth, name: str = CONNECTOR_NAME) -> tuple[str, str]:
    """The id of the Webhook connector named ``name``, updated to call the responder, or created; and what was done."""
    config, secrets = connector_body(responder)
    existing = client.request("GET", "/api/actions/connectors")
    if not isinstance(existing, list):
        raise KibanaError("Kibana GET /api/actions/connectors: expected a list of connectors")
    matching = [c for c in existing if isinstance(c, dict) and not c.get("is_preconfigured")
                and (c.get("id") == CONNECTOR_ID
                     or (c.get("name") == name and c.get("connector_type_id") == ".webhook"))]
    matching.sort(key=lambda c: c.get("id") != CONNECTOR_ID)  # ours first, then one an earlier version created
    if len(matching) > 1:
        log.warning("several Webhook connectors named %r; updating %s", name, matching[0].get("id"))
    update = {"name": name, "config": config, "secrets": secrets}
    if matching:
        connector_id = str(matching[0]["id"])
        client.request("PUT", f"/api/actions/connector/{connector_id}", json=update)
        return connector_id, "updated"
    try:
        # under our own id, so a create retried after a lost answer (a 5xx, a timeout) meets 409, not a twin
        created = client.request("POST", f"/api/actions/connector/{CONNECTOR_ID}",
                                 json={**update, "connector_type_id": ".webhook"})
    except KibanaError as exc:
        if exc.status != 409:
            raise
        client.request("PUT", f"/api/actions/connector/{CONNECTOR_ID}", json=update)
        return CONNECTOR_ID, "updated"
    if not isinstance(created, dict) or created.get("id") != CONNECTOR_ID:
        raise KibanaError(f"Kibana POST /api/actions/connector/{CONNECTOR_ID}: the answer has another or no id")
    return CONNECTOR_ID, "created"


# -- detection rules -----------------------------------------------------------------------------------------


def detection_rules(connector_id: str, index_pattern: str, directory: Path | None = None, *,
                    enabled: bool = True) -> list[dict[str, Any]]:
    """The shipped rules, reading ``index_pattern``, their Webhook action pointed at ``connector_id``."""
    path = (directory or mappings_dir()) / "elastic" / RULES_FILE
    rules = dashboard.read_ndjson(path)
    for number, rule in enumerate(rules, 1):
        missing = [name for name in _REQUIRED_RULE_FIELDS if name not in rule]
        if missing:
            raise ConfigError(f"{path}: rule {number}: missing {', '.join(missing)}")
        rule["index"] = [index_pattern]
        rule["enabled"] = enabled
        for action in rule.get("actions", []):
            if action.get("id") == CONNECTOR_PLACEHOLDER:
                action["id"] = connector_id
    return rules


def import_rules(client: KibanaClient, rules: list[dict[str, Any]]) -> str:
    answer = client.request("POST", "/api/detection_engine/rules/_import", params={"overwrite": "true"},
                            files={"file": ("postern-rules.ndjson", dashboard.to_ndjson(rules),
                                            "application/x-ndjson")})
    errors = (answer.get("errors") or []) if isinstance(answer, dict) else ["unexpected answer"]
    if errors or not (isinstance(answer, dict) and answer.get("success")):
        raise KibanaError(f"Kibana refused {len(errors)} of {len(rules)} detection rule(s): "
                          + "; ".join(_import_error(error) for error in errors))
    return f"{answer.get('success_count', len(rules))} imported"


def _import_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)[:300]
    detail = error.get("error", {})
    message = detail.get("message") if isinstance(detail, dict) else detail
    return f"{error.get('rule_id') or error.get('id') or '?'}: {message or error}"[:300]


# -- saved objects -------------------------------------------------------------------------------------------


def import_saved_objects(client: KibanaClient, objects: list[dict[str, Any]]) -> str:
    answer = client.request("POST", "/api/saved_objects/_import", params={"overwrite": "true"},
                            files={"file": ("postern-dashboard.ndjson", dashboard.to_ndjson(objects),
                                            "application/x-ndjson")})
    if not isinstance(answer, dict):
        raise KibanaError("Kibana POST /api/saved_objects/_import: unexpected answer")
    errors = answer.get("errors") or []
    if errors or not answer.get("success"):
        problems = "; ".join(_object_error(error) for error in errors)
        raise KibanaError(f"Kibana refused {len(errors)} of {len(objects)} saved object(s): {problems}")
    return f"{answer.get('successCount', len(objects))} objects imported"


def _object_error(error: Any) -> str:
    """``{type, id, error: {type: conflict|missing_references|unsupported_type|unknown, ...}}`` in a few words."""
    if not isinstance(error, dict):
        return str(error)[:300]
    found = error.get("error")
    detail: dict[str, Any] = found if isinstance(found, dict) else {}
    reason = str(detail.get("type", "?"))
    if detail.get("references"):
        reason += " " + ", ".join(f"{ref.get('type')}/{ref.get('id')}" for ref in detail["references"])
    if detail.get("message"):
        reason += f" ({detail['message']})"
    return f"{error.get('type')} {error.get('id')}: {reason}"[:300]


# -- all of it -----------------------------------------------------------------------------------------------


def setup(target: KibanaTarget, responder: ResponderAuth, index_pattern: str, directory: Path | None = None, *,
          enable_rules: bool = True, client: KibanaClient | None = None) -> list[SetupStep]:
    """Install (or update) the Webhook connector, the detection rules and the dashboard; idempotent."""
    # read and check the data first: a broken file should fail before anything changes in Kibana
    detection_rules(CONNECTOR_PLACEHOLDER, index_pattern, directory)
    objects = dashboard.saved_objects(index_pattern, directory)
    kibana = client or KibanaClient(target)
    steps: list[SetupStep] = []
    try:
        connector_id, done = ensure_connector(kibana, responder)
        steps.append(SetupStep(f"Kibana Webhook connector {CONNECTOR_NAME!r} ({connector_id})",
                               f"{done}, calls {responder.url}"))
        rules = detection_rules(connector_id, index_pattern, directory, enabled=enable_rules)
        outcome = import_rules(kibana, rules)
        state = "enabled" if enable_rules else "disabled"
        steps.append(SetupStep(f"Kibana detection rules ({len(rules)}, {state})", outcome))
        steps.append(SetupStep(f"Kibana dashboard {dashboard.DASHBOARD_ID}", import_saved_objects(kibana, objects)))
    except KibanaError as exc:
        raise KibanaError(f"Kibana setup failed after {len(steps)} step(s): {exc}") from None
    finally:
        if client is None:
            kibana.close()
    return steps
