"""A strict Kibana 8.x/9.x emulator on 127.0.0.1: the APIs ``connector elastic setup --kibana`` uses, as documented.

Kibana cannot run in the test environment, and a lenient fake would let the installer pass tests a real Kibana
fails. So this one refuses what Kibana refuses, with Kibana's error shape ``{"statusCode", "error", "message"}``.

Sources, cited in comments by tag (elastic.co/docs/api/doc/kibana/ unless said otherwise):
- [AUTH]     api keys and basic auth: ``Authorization: ApiKey <base64(id:key)>`` or ``Basic``; 401 otherwise
- [XSRF]     every POST, PUT, PATCH and DELETE needs ``kbn-xsrf`` (any value): 400 "Request must contain a kbn-xsrf
             header." (Kibana's ``xsrf`` http lifecycle handler)
- [SPACE]    ``/s/{space_id}/api/...`` addresses a space; objects of one space are invisible from another
- [CREATE]   POST /api/actions/connector[/{id}]: ``name``, ``connector_type_id`` required, ``config``, ``secrets``;
             unknown keys: "[request body.x]: definition for this key is missing"; an ``id`` must be a UUID v1 or
             v4, and one that exists is a 409 conflict
- [UPDATE]   PUT /api/actions/connector/{id}: ``name``, ``config``, ``secrets`` only (the type cannot change)
- [LIST]     GET /api/actions/connectors: every connector of the space, without secrets, with ``referenced_by_count``
- [WEBHOOK]  the .webhook type (kibana stack_connectors webhook/schema.ts, common/auth/schema.ts): config ``url``
             (must parse), ``method`` post|put|patch|get|delete, ``headers``, ``hasAuth`` (default true), ``authType``
             (null when hasAuth is false), ``certType``, ``ca``, ``verificationMode``; secrets ``user`` and
             ``password`` together, or ``crt`` and ``key``, or ``pfx``, or nothing
- [RULES]    POST /api/detection_engine/rules/_import?overwrite=: multipart/form-data, field ``file``, an .ndjson
             file; answers 200 with ``success``, ``success_count``, ``rules_count``, ``errors`` ({rule_id, error:
             {status_code, message}}) and the exceptions/action_connectors counters; an action whose connector does not
             exist fails its rule ("1 connector is missing. Connector id missing is: <id>"); an existing rule_id
             without overwrite is a 409 error of that rule
- [SO]       POST /api/saved_objects/_import?overwrite=: multipart ``file``; answers ``success``, ``successCount``,
             ``successResults``, ``errors`` ({id, type, error: {type: conflict|missing_references|unsupported_type}})
- [RATE]     429 with ``Retry-After``, and 503 "Kibana server is not ready yet" (plain text) while Kibana starts

Where a message could not be found in a public source it is marked "inferred".
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from support.waiting import wait_until

_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_WEBHOOK_CONFIG = {"url", "method", "headers", "hasAuth", "authType", "certType", "ca", "verificationMode",
                   "accessTokenUrl", "clientId", "scope", "additionalFields"}
_WEBHOOK_SECRETS = {"user", "password", "crt", "key", "pfx", "clientSecret"}
_AUTH_TYPES = {"webhook-authentication-basic", "webhook-authentication-ssl", "webhook-oauth2-client-credentials"}
_RULE_TYPES = {"query", "eql", "esql", "threshold", "threat_match", "machine_learning", "new_terms", "saved_query"}
_SEVERITIES = {"low", "medium", "high", "critical"}
_INTERVAL = re.compile(r"^\d+[smhd]$")
_SO_TYPES = {"index-pattern", "lens", "dashboard", "visualization", "search", "tag", "config"}
_NOT_READY = "Kibana server is not ready yet"  # [RATE]: what Kibana answers on every route while it starts


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
             415: "Unsupported Media Type", 429: "Too Many Requests", 500: "Internal Server Error"}
    return JSONResponse({"statusCode": status, "error": names.get(status, "Error"), "message": message}, status,
                        headers=headers)


@dataclass
class Connector:
    id: str
    space: str
    name: str
    connector_type_id: str
    config: dict[str, Any]
    secrets: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "connector_type_id": self.connector_type_id, "config": self.config,
                "is_preconfigured": False, "is_deprecated": False, "is_missing_secrets": False,
                "is_system_action": False}


@dataclass
class Space:
    connectors: dict[str, Connector] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)  # by rule_id
    saved_objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # by (type, id)


class KibanaEmulator:
    def __init__(self, *, api_keys: tuple[str, ...] = ("a2liYW5hLWtleS1pZDpraWJhbmEta2V5LXNlY3JldA==",),
                 users: dict[str, str] | None = None, spaces: tuple[str, ...] = ("default",),
                 tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: (certificate chain, key) to serve HTTPS, as Kibana with ``server.ssl`` does."""
        self.tls = tls
        self.api_keys = set(api_keys)
        self.users = users if users is not None else {"elastic": "changeme-please"}
        self.spaces = {name: Space() for name in spaces}
        self.requests: list[tuple[str, str]] = []  # method, path of every request, faults included
        self.faults: deque[tuple[int, int | None]] = deque()  # (status, Retry-After) answered next, one a request
        self.lost_creations = 0  # connector creations done, then answered 502 as a proxy losing the answer would
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def __enter__(self) -> KibanaEmulator:
        routes = []
        for prefix in ("", "/s/{space}"):
            routes += [
                Route(f"{prefix}/api/actions/connectors", self._list, methods=["GET"]),
                Route(f"{prefix}/api/actions/connector", self._create, methods=["POST"]),
                Route(f"{prefix}/api/actions/connector/{{id}}", self._create_or_update,
                      methods=["POST", "PUT", "GET"]),
                Route(f"{prefix}/api/detection_engine/rules/_import", self._import_rules, methods=["POST"]),
                Route(f"{prefix}/api/saved_objects/_import", self._import_objects, methods=["POST"]),
            ]
        certfile, keyfile = self.tls or (None, None)
        self._server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes), host="127.0.0.1", port=0,
                                                     log_config=None, access_log=False, lifespan="off",
                                                     ssl_certfile=certfile, ssl_keyfile=keyfile))
        threading.Thread(target=self._server.run, name="kibana-emulator", daemon=True).start()
        wait_until(lambda: self._server is not None and self._server.started)
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True

    # -- helpers for tests ---------------------------------------------------------------------------------------

    def space(self, name: str = "default") -> Space:
        return self.spaces[name]

    def fail_next(self, status: int, retry_after: int | None = None, times: int = 1) -> None:
        self.faults.extend([(status, retry_after)] * times)

    # -- the gate: faults, authentication, xsrf, space -------------------------------------------------------------

    def _gate(self, request: Request) -> tuple[Space | None, Response | None]:
        self.requests.append((request.method, request.url.path))
        if self.faults:
            status, retry_after = self.faults.popleft()
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            if status == 503:
                return None, PlainTextResponse(_NOT_READY, 503, headers=headers)
            return None, _error(status, f"injected {status}" if status != 429 else "Too Many Requests", headers)
        if not self._authenticated(request.headers.get("authorization", "")):  # [AUTH]
            return None, _error(401, "[security_exception\n\tRoot causes:\n\t\tsecurity_exception: unable to "
                                     "authenticate with provided credentials and anonymous access is not allowed "
                                     "for this request]: unable to authenticate with provided credentials and "
                                     "anonymous access is not allowed for this request")
        if request.method in _WRITES and "kbn-xsrf" not in request.headers:  # [XSRF]
            return None, _error(400, "Request must contain a kbn-xsrf header.")
        name = request.path_params.get("space", "default")
        if name not in self.spaces:  # [SPACE] (message inferred)
            return None, _error(404, f"Saved object [space/{name}] not found")
        return self.spaces[name], None

    def _authenticated(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme == "ApiKey":
            return value in self.api_keys
        if scheme == "Basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except ValueError:
                return False
            return self.users.get(user) == password and bool(user)
        return False

    async def _json(self, request: Request) -> tuple[Any, Response | None]:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return None, _error(415, "Unsupported Media Type")
        try:
            return json.loads(await request.body()), None
        except ValueError as exc:
            return None, _error(400, f"Invalid request payload JSON format: {exc}")

    # -- connectors [CREATE] [UPDATE] [LIST] [WEBHOOK] ------------------------------------------------------------

    async def _list(self, request: Request) -> Response:
        space, refused = self._gate(request)
        if refused is not None:
            return refused
        assert space is not None
        counts = {c: sum(1 for r in space.rules.values() for a in r.get("actions", []) if a.get("id") == c)
                  for c in space.connectors}
        return JSONResponse([{**c.public(), "referenced_by_count": counts[c.id]} for c in space.connectors.values()])

    async def _create(self, request: Request) -> Response:
        space, refused = self._gate(request)
        if refused is not None:
            return refused
        assert space is not None
        body, bad = await self._json(request)
        if bad is not None:
            return bad
        problem = _unknown_keys(body, {"name", "connector_type_id", "config", "secrets"}, "request body") \
            or _required(body, ("name", "connector_type_id"))
        if problem:
            return _error(400, problem)
        if body["connector_type_id"] != ".webhook":  # the only type this emulator knows (message inferred)
            return _error(400, f"Action type \"{body['connector_type_id']}\" is not registered.")
        config, secrets, problem = _webhook(body.get("config", {}), body.get("secrets", {}))
        if problem:
            return _error(400, problem)
        wanted = request.path_params.get("id")
        if wanted is not None and not _is_uuid_v1_or_v4(wanted):
            return _error(400, f"[request params.id]: ID must be a UUID v1 or v4, not {wanted!r}")
        with self._lock:
            if wanted is not None and wanted in space.connectors:
                return _error(409, f"Saved object [action/{wanted}] conflict")
            connector = Connector(wanted or str(uuid.uuid4()), request.path_params.get("space", "default"),
                                  body["name"], ".webhook", config, secrets)
            space.connectors[connector.id] = connector
            if self.lost_creations:
                self.lost_creations -= 1
                return _error(502, "Bad Gateway")
        return JSONResponse(connector.public())

    async def _create_or_update(self, request: Request) -> Response:
        return await (self._create(request) if request.method == "POST" else self._update(request))

    async def _update(self, request: Request) -> Response:
        space, refused = self._gate(request)
        if refused is not None:
            return refused
        assert space is not None
        connector = space.connectors.get(request.path_params["id"])
        if connector is None:
            return _error(404, f"Saved object [action/{request.path_params['id']}] not found")
        if request.method == "GET":
            return JSONResponse(connector.public())
        body, bad = await self._json(request)
        if bad is not None:
            return bad
        problem = _unknown_keys(body, {"name", "config", "secrets"}, "request body") or _required(body, ("name",))
        if problem:
            return _error(400, problem)
        config, secrets, problem = _webhook(body.get("config", {}), body.get("secrets", {}))
        if problem:
            return _error(400, problem)
        connector.name, connector.config, connector.secrets = body["name"], config, secrets
        return JSONResponse(connector.public())

    # -- detection rules [RULES] ------------------------------------------------------------------------------------

    async def _import_rules(self, request: Request) -> Response:
        space, refused = self._gate(request)
        if refused is not None:
            return refused
        assert space is not None
        lines, bad = await _ndjson_upload(request)
        if bad is not None:
            return bad
        overwrite = request.query_params.get("overwrite", "false") == "true"
        errors: list[dict[str, Any]] = []
        imported = 0
        for line in lines:
            try:
                rule = json.loads(line)
            except ValueError as exc:
                errors.append({"rule_id": "(unknown id)", "error": {"status_code": 400, "message": str(exc)}})
                continue
            rule_id = rule.get("rule_id", "(unknown id)") if isinstance(rule, dict) else "(unknown id)"
            status, message = self._check_rule(space, rule, overwrite)
            if status:
                errors.append({"rule_id": rule_id, "error": {"status_code": status, "message": message}})
                continue
            with self._lock:
                space.rules[rule_id] = {**rule, "id": space.rules.get(rule_id, {}).get("id", str(uuid.uuid4()))}
            imported += 1
        return JSONResponse({"success": not errors, "success_count": imported, "rules_count": len(lines),
                             "errors": errors, "exceptions_success": True, "exceptions_success_count": 0,
                             "exceptions_errors": [], "action_connectors_success": True,
                             "action_connectors_success_count": 0, "action_connectors_errors": [],
                             "action_connectors_warnings": []})

    @staticmethod
    def _check_rule(space: Space, rule: Any, overwrite: bool) -> tuple[int, str]:
        if not isinstance(rule, dict):
            return 400, "Expected an object"
        missing = [name for name in ("rule_id", "name", "description", "risk_score", "severity", "type")
                   if name not in rule]
        if missing:
            return 400, ", ".join(f"{name}: Required" for name in missing)
        problems = []
        if rule["type"] not in _RULE_TYPES:
            problems.append(f"type: Invalid literal value, received {rule['type']!r}")
        if rule["type"] == "query":
            if not isinstance(rule.get("query"), str):
                problems.append("query: Required")
            if rule.get("language", "kuery") not in ("kuery", "lucene"):
                problems.append("language: Invalid enum value")
        if rule["severity"] not in _SEVERITIES:
            problems.append("severity: Invalid enum value")
        if not isinstance(rule["risk_score"], int) or not 0 <= rule["risk_score"] <= 100:
            problems.append("risk_score: Number must be an integer between 0 and 100")
        if "index" in rule and (not isinstance(rule["index"], list)
                                or not all(isinstance(i, str) for i in rule["index"])):
            problems.append("index: Expected array of strings")
        for name in ("interval",):
            if name in rule and not _INTERVAL.match(str(rule[name])):
                problems.append(f"{name}: Invalid interval")
        for number, action in enumerate(rule.get("actions", [])):
            for key in ("group", "id", "action_type_id", "params"):
                if key not in action:
                    problems.append(f"actions.{number}.{key}: Required")
        if problems:
            return 400, ", ".join(problems)
        missing_connectors = sorted({a["id"] for a in rule.get("actions", []) if a["id"] not in space.connectors})
        if missing_connectors:
            count = len(missing_connectors)
            return 404, (f"{count} connector{'s are' if count > 1 else ' is'} missing. Connector id"
                         f"{'s' if count > 1 else ''} missing {'are' if count > 1 else 'is'}: "
                         f"{', '.join(missing_connectors)}")
        if rule["rule_id"] in space.rules and not overwrite:
            return 409, f'rule_id: "{rule["rule_id"]}" already exists'
        return 0, ""

    # -- saved objects [SO] -----------------------------------------------------------------------------------------

    async def _import_objects(self, request: Request) -> Response:
        space, refused = self._gate(request)
        if refused is not None:
            return refused
        assert space is not None
        overwrite = request.query_params.get("overwrite", "false") == "true"
        if overwrite and request.query_params.get("createNewCopies") == "true":
            return _error(400, "[request query]: cannot use [overwrite] with [createNewCopies]")
        lines, bad = await _ndjson_upload(request)
        if bad is not None:
            return bad
        objects = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError as exc:
                return _error(400, f"Unexpected token in JSON: {exc}")  # the whole import fails (inferred)
            if not isinstance(obj, dict) or not isinstance(obj.get("type"), str) or not isinstance(obj.get("id"), str):
                return _error(400, "Saved objects need a type and an id")  # inferred
            objects.append(obj)
        present = set(space.saved_objects) | {(o["type"], o["id"]) for o in objects}
        errors, results, accepted = [], [], []
        for obj in objects:
            key = (obj["type"], obj["id"])
            title = obj.get("attributes", {}).get("title")
            if obj["type"] not in _SO_TYPES:
                errors.append({"id": obj["id"], "type": obj["type"], "title": title, "meta": {"title": title},
                               "error": {"type": "unsupported_type"}})
                continue
            missing = [{"type": ref["type"], "id": ref["id"]} for ref in obj.get("references", [])
                       if (ref.get("type"), ref.get("id")) not in present]
            if missing:
                errors.append({"id": obj["id"], "type": obj["type"], "title": title, "meta": {"title": title},
                               "error": {"type": "missing_references", "references": missing}})
                continue
            if key in space.saved_objects and not overwrite:
                errors.append({"id": obj["id"], "type": obj["type"], "title": title, "meta": {"title": title},
                               "error": {"type": "conflict"}})
                continue
            results.append({"type": obj["type"], "id": obj["id"], "meta": {"title": title},
                            **({"overwrite": True} if key in space.saved_objects else {})})
            accepted.append(obj)
        with self._lock:  # the objects without errors are written; the others are reported [SO]
            for obj in accepted:
                space.saved_objects[(obj["type"], obj["id"])] = obj
        return JSONResponse({"success": not errors, "successCount": len(results), "successResults": results,
                             "errors": errors})


def _is_uuid_v1_or_v4(value: str) -> bool:
    try:
        return uuid.UUID(value).version in (1, 4) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _unknown_keys(body: Any, allowed: set[str], where: str) -> str:
    if not isinstance(body, dict):
        return f"[{where}]: expected a plain object value, but found [{type(body).__name__}] instead."
    unknown = sorted(set(body) - allowed)
    return f"[{where}.{unknown[0]}]: definition for this key is missing" if unknown else ""


def _required(body: dict[str, Any], names: tuple[str, ...]) -> str:
    for name in names:
        if not isinstance(body.get(name), str) or not body[name]:
            return f"[request body.{name}]: expected value of type [string] but got [{type(body.get(name)).__name__}]"
    return ""


def _webhook(config: Any, secrets: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
    """[WEBHOOK]: the config and secrets as Kibana stores them (defaults applied), or the validation message."""
    prefix = "error validating action type config: "
    problem = _unknown_keys(config, _WEBHOOK_CONFIG, "request body.config") \
        or _unknown_keys(secrets, _WEBHOOK_SECRETS, "request body.secrets")
    if problem:
        return {}, {}, problem
    if not isinstance(config.get("url"), str):
        return {}, {}, prefix + "[url]: expected value of type [string] but got [undefined]"
    parts = urlsplit(config["url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return {}, {}, (prefix + "error configuring webhook action: unable to parse url: TypeError: Invalid URL: "
                        + config["url"])
    method = config.get("method", "post")
    if method not in ("post", "put", "patch", "get", "delete"):
        return {}, {}, prefix + "[method]: types that failed validation"
    headers = config.get("headers")
    if headers is not None and (not isinstance(headers, dict)
                                or not all(isinstance(v, str) for v in headers.values())):
        return {}, {}, prefix + "[headers]: could not parse record value"
    has_auth = config.get("hasAuth", True)
    auth_type = config.get("authType")
    if auth_type is not None and auth_type not in _AUTH_TYPES:
        return {}, {}, prefix + "[authType]: types that failed validation"
    if auth_type and not has_auth:
        return {}, {}, (prefix + "error configuring webhook action: authType must be null or undefined if hasAuth "
                        "is false")
    given = {k for k, v in secrets.items() if v}
    if given not in ({"user", "password"}, {"crt", "key"}, {"crt", "key", "password"}, {"pfx"},
                     {"pfx", "password"}, {"clientSecret"}, set()):
        return {}, {}, ("error validating action type secrets: must specify one of the following schemas: user and "
                        "password; crt and key (with optional password); pfx (with optional password); or OAuth2 "
                        "client secret")
    if auth_type == "webhook-authentication-basic" and given != {"user", "password"}:  # inferred
        return {}, {}, "error validating action type secrets: basic authentication needs user and password"
    stored = {"url": config["url"], "method": method, "headers": headers, "hasAuth": has_auth,
              "authType": auth_type if has_auth else None,
              **{k: config[k] for k in ("certType", "ca", "verificationMode") if k in config}}
    return stored, dict(secrets), ""


async def _ndjson_upload(request: Request) -> tuple[list[str], Response | None]:
    """The lines of the multipart ``file`` field [RULES] [SO]; Kibana refuses other media types and extensions."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return [], _error(415, "Unsupported Media Type")
    raw = await request.body()
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    if not message.is_multipart():
        return [], _error(400, "Invalid multipart payload format")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") != "file":
            continue
        filename = str(part.get_filename() or "")
        if not filename.endswith(".ndjson"):
            return [], _error(400, f"Invalid file extension {filename[filename.rfind('.'):] or '(none)'}")
        payload = part.get_payload(decode=True)
        text = payload.decode() if isinstance(payload, bytes) else str(payload)
        return [line for line in text.splitlines() if line.strip()], None
    return [], _error(400, "[request body.file]: expected value of type [Stream] but got [undefined]")
