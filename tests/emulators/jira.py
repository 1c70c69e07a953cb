"""A strict Jira emulator on 127.0.0.1: the few endpoints ``ticket.jira`` uses, as documented, in two flavours.

``cloud`` is Jira Cloud REST v3; ``datacenter`` is Jira Server / Data Center REST v2, which has no v3 (404).

Cloud sources, cited in comments by tag:
- [CREATE]  developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-post
- [ADF]     developer.atlassian.com/cloud/jira/platform/apis/document/structure/ (doc, version 1, content)
- [JQL]     .../api-group-issue-search/#api-rest-api-3-search-jql-get (the old /search is removed: 410)
- [COMMENT] .../api-group-issue-comments/#api-rest-api-3-issue-issueidorkey-comment-post
- [TRANS]   .../api-group-issues/#api-rest-api-3-issue-issueidorkey-transitions-get / -post
- [AUTH]    developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/ (email + API token)
- [RATE]    developer.atlassian.com/cloud/jira/platform/rate-limiting/ (429 with Retry-After)

Data Center sources (docs.atlassian.com/software/jira/docs/api/REST/latest/):
- [CREATE2]  POST /rest/api/2/issue: ``description`` is a string (wiki markup); an object is refused with
             "Operation value must be a string", as Jira answers any non-string for a text field
- [SEARCH2]  GET /rest/api/2/search?jql=: ``startAt``, ``maxResults``, ``total``, ``issues``
- [COMMENT2] POST /rest/api/2/issue/{key}/comment: ``body`` is a string
- [TRANS2]   GET / POST /rest/api/2/issue/{key}/transitions (204)
- [PAT]      confluence.atlassian.com/enterprise/using-personal-access-tokens-1026032365.html
             (``Authorization: Bearer <token>``, Jira 8.14+); 401 otherwise
- [RATE2]    confluence.atlassian.com/adminjiraserver/improving-instance-stability-with-rate-limiting-983794911.html
             (429 with Retry-After)

Search is eventually consistent [JQL]: an issue is found only ``search_lag`` seconds after it was created, so a
client that relies on search alone to avoid duplicates is caught creating two.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from support.waiting import wait_until

TRANSITIONS = [{"id": "11", "name": "To Do"}, {"id": "21", "name": "In Progress"}, {"id": "31", "name": "Done"}]


@dataclass
class Issue:
    id: str
    key: str
    fields: dict[str, Any]
    created: float
    status: str = "To Do"
    comments: list[dict[str, Any]] = field(default_factory=list)


def _errors(status: int, errors: dict[str, str] | None = None, messages: list[str] | None = None) -> JSONResponse:
    return JSONResponse({"errorMessages": messages or [], "errors": errors or {}}, status)


def _is_adf(value: Any) -> bool:
    """The top of an ADF document [ADF]: type doc, version 1, a content list of nodes with a type."""
    return (isinstance(value, dict) and value.get("type") == "doc" and value.get("version") == 1
            and isinstance(value.get("content"), list)
            and all(isinstance(node, dict) and isinstance(node.get("type"), str) for node in value["content"]))


class JiraEmulator:
    def __init__(self, *, flavour: str = "cloud", email: str = "bot@example.test",
                 api_token: str = "jira-api-token-0123456789", personal_access_token: str = "NDc4OTc2pat0123456789",
                 projects: tuple[str, ...] = ("SEC",), search_lag: float = 0.0,
                 tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: (certificate chain, key) to serve HTTPS, as a Data Center behind its own CA does."""
        if flavour not in {"cloud", "datacenter"}:
            raise ValueError(f"flavour: cloud or datacenter, not {flavour!r}")
        self.flavour, self.tls = flavour, tls
        self.email, self.api_token, self.personal_access_token = email, api_token, personal_access_token
        self.projects, self.search_lag = projects, search_lag
        self.issues: dict[str, Issue] = {}
        self.requests: list[tuple[str, str]] = []
        self.hosts: list[str] = []  # the Host header of each request
        self.faults: deque[int] = deque()  # statuses to answer next, one per request: 429, 500, 503
        self.retry_after = 1
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self.url = ""

    @property
    def api(self) -> str:
        return "/rest/api/3" if self.flavour == "cloud" else "/rest/api/2"

    @property
    def search_path(self) -> str:
        return "/rest/api/3/search/jql" if self.flavour == "cloud" else "/rest/api/2/search"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def __enter__(self) -> JiraEmulator:
        if self.flavour == "cloud":
            search = [Route("/rest/api/3/search/jql", self._search, methods=["GET"]),
                      Route("/rest/api/3/search", self._removed_search, methods=["GET", "POST"])]
        else:
            search = [Route("/rest/api/2/search", self._search, methods=["GET"])]
        app = Starlette(routes=[
            Route(f"{self.api}/issue", self._create, methods=["POST"]), *search,
            Route(f"{self.api}/issue/{{key}}/comment", self._comment, methods=["POST"]),
            Route(f"{self.api}/issue/{{key}}/transitions", self._transitions, methods=["GET", "POST"]),
        ])
        certfile, keyfile = self.tls or (None, None)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                                     access_log=False, lifespan="off",
                                                     ssl_certfile=certfile, ssl_keyfile=keyfile))
        thread = threading.Thread(target=self._server.run, name="jira-emulator", daemon=True)
        thread.start()
        wait_until(lambda: self._server is not None and self._server.started)
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def _gate(self, request: Request) -> Response | None:
        """Authentication [AUTH] [PAT], then an injected fault [RATE] [RATE2], for every request."""
        self.requests.append((request.method, request.url.path))
        self.hosts.append(request.headers.get("host", ""))
        if self.flavour == "cloud":
            expected = "Basic " + base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
        else:
            expected = f"Bearer {self.personal_access_token}"
        if request.headers.get("authorization") != expected:
            return Response("Client must be authenticated to access this resource.", 401,
                            media_type="text/plain")
        if self.faults:
            status = self.faults.popleft()
            headers = {"Retry-After": str(self.retry_after)} if status in {429, 503} else {}
            return _errors(status, messages=[f"injected {status}"]) if status != 429 else \
                JSONResponse({"errorMessages": ["Rate limit exceeded."]}, 429, headers=headers)
        return None

    async def _create(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _errors(400, messages=["Unexpected character in the JSON body."])
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return _errors(400, messages=["The request body must contain fields."])
        problems: dict[str, str] = {}
        project = fields.get("project")
        if not isinstance(project, dict) or project.get("key") not in self.projects:
            problems["project"] = "Specify a valid project ID or key"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            problems["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255 or "\n" in summary:
            problems["summary"] = "The summary must be a single line of at most 255 characters."
        issuetype = fields.get("issuetype")
        if not isinstance(issuetype, dict) or not (issuetype.get("name") or issuetype.get("id")):
            problems["issuetype"] = "Specify an issue type"
        if "description" in fields and self.flavour == "cloud" and not _is_adf(fields["description"]):
            problems["description"] = "Operation value must be an Atlassian Document (see the Atlassian Document " \
                                      "Format)"  # v3 takes ADF only; a plain string is a v2 habit [ADF]
        if "description" in fields and self.flavour == "datacenter" and not isinstance(fields["description"], str):
            problems["description"] = "Operation value must be a string"  # wiki markup; ADF is Cloud's [CREATE2]
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or any(not isinstance(label, str) or re.search(r"\s", label)
                                               for label in labels):
            problems["labels"] = "Labels cannot contain spaces."
        if problems:
            return _errors(400, problems)
        with self._lock:
            number = len(self.issues) + 1
            issue = Issue(str(10000 + number), f"{project['key']}-{number}", fields, time.monotonic())
            self.issues[issue.key] = issue
        return JSONResponse({"id": issue.id, "key": issue.key,
                             "self": f"{self.url}{self.api}/issue/{issue.id}"}, 201)

    async def _search(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        jql = request.query_params.get("jql", "")
        match = re.fullmatch(r'\s*labels\s*=\s*"?([^"\s]+)"?\s*(?:AND\s+statusCategory\s*!=\s*Done\s*)?', jql,
                             re.IGNORECASE)
        if match is None:
            return _errors(400, messages=[f"Error in the JQL Query: this emulator understands labels = X only: {jql}"])
        open_only = "statuscategory" in jql.lower()
        visible = time.monotonic() - self.search_lag
        found = [issue for issue in self.issues.values() if match.group(1) in issue.fields.get("labels", [])
                 and issue.created <= visible and not (open_only and issue.status == "Done")]
        issues = [{"id": issue.id, "key": issue.key, "fields": {"status": {"name": issue.status}}} for issue in found]
        if self.flavour == "datacenter":  # [SEARCH2]
            return JSONResponse({"startAt": 0, "maxResults": 50, "total": len(issues), "issues": issues})
        return JSONResponse({"issues": issues, "isLast": True})

    async def _removed_search(self, request: Request) -> Response:
        return _errors(410, messages=["The requested API has been removed. Please migrate to /rest/api/3/search/jql"])

    async def _comment(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        issue = self.issues.get(request.path_params["key"])
        if issue is None:
            return _errors(404, messages=["Issue does not exist or you do not have permission to see it."])
        body = await request.json()
        if self.flavour == "cloud" and not _is_adf(body.get("body")):
            return _errors(400, {"comment": "Comment body must be an Atlassian Document."})
        if self.flavour == "datacenter" and not isinstance(body.get("body"), str):  # wiki markup [COMMENT2]
            return _errors(400, messages=["Can not deserialize instance of java.lang.String out of START_OBJECT"])
        if self.flavour == "datacenter" and not body["body"].strip():
            return _errors(400, {"comment": "Comment body can not be empty!"})
        issue.comments.append(body["body"])
        return JSONResponse({"id": str(len(issue.comments))}, 201)

    async def _transitions(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        issue = self.issues.get(request.path_params["key"])
        if issue is None:
            return _errors(404, messages=["Issue does not exist or you do not have permission to see it."])
        if request.method == "GET":
            return JSONResponse({"transitions": TRANSITIONS})
        body = await request.json()
        chosen = next((t for t in TRANSITIONS if t["id"] == str(body.get("transition", {}).get("id"))), None)
        if chosen is None:
            return _errors(400, messages=["Transition id is not valid for this issue."])
        issue.status = chosen["name"]
        return Response(status_code=204)
