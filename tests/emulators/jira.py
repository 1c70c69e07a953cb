"""A strict Jira Cloud REST v3 emulator on 127.0.0.1: the few endpoints ``ticket.jira`` uses, as documented.

Sources, cited in comments by tag:
- [CREATE]  developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-post
- [ADF]     developer.atlassian.com/cloud/jira/platform/apis/document/structure/ (doc, version 1, content)
- [JQL]     .../api-group-issue-search/#api-rest-api-3-search-jql-get (the old /search is removed: 410)
- [COMMENT] .../api-group-issue-comments/#api-rest-api-3-issue-issueidorkey-comment-post
- [TRANS]   .../api-group-issues/#api-rest-api-3-issue-issueidorkey-transitions-get / -post
- [AUTH]    developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/ (email + API token)
- [RATE]    developer.atlassian.com/cloud/jira/platform/rate-limiting/ (429 with Retry-After)

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
    def __init__(self, *, email: str = "bot@example.test", api_token: str = "jira-api-token-0123456789",
                 projects: tuple[str, ...] = ("SEC",), search_lag: float = 0.0) -> None:
        self.email, self.api_token, self.projects, self.search_lag = email, api_token, projects, search_lag
        self.issues: dict[str, Issue] = {}
        self.requests: list[tuple[str, str]] = []
        self.faults: deque[int] = deque()  # statuses to answer next, one per request: 429, 500, 503
        self.retry_after = 1
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self.url = ""

    def __enter__(self) -> JiraEmulator:
        app = Starlette(routes=[
            Route("/rest/api/3/issue", self._create, methods=["POST"]),
            Route("/rest/api/3/search/jql", self._search, methods=["GET"]),
            Route("/rest/api/3/search", self._removed_search, methods=["GET", "POST"]),
            Route("/rest/api/3/issue/{key}/comment", self._comment, methods=["POST"]),
            Route("/rest/api/3/issue/{key}/transitions", self._transitions, methods=["GET", "POST"]),
        ])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                                     access_log=False, lifespan="off"))
        thread = threading.Thread(target=self._server.run, name="jira-emulator", daemon=True)
        thread.start()
        wait_until(lambda: self._server is not None and self._server.started)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def _gate(self, request: Request) -> Response | None:
        """Authentication [AUTH], then an injected fault [RATE], for every request."""
        self.requests.append((request.method, request.url.path))
        expected = base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
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
        if "description" in fields and not _is_adf(fields["description"]):
            problems["description"] = "Operation value must be an Atlassian Document (see the Atlassian Document " \
                                      "Format)"  # v3 takes ADF only; a plain string is a v2 habit [ADF]
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
                             "self": f"{self.url}/rest/api/3/issue/{issue.id}"}, 201)

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
        return JSONResponse({"issues": [{"id": issue.id, "key": issue.key,
                                         "fields": {"status": {"name": issue.status}}} for issue in found],
                             "isLast": True})

    async def _removed_search(self, request: Request) -> Response:
        return _errors(410, messages=["The requested API has been removed. Please migrate to /rest/api/3/search/jql"])

    async def _comment(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        issue = self.issues.get(request.path_params["key"])
        if issue is None:
            return _errors(404, messages=["Issue does not exist or you do not have permission to see it."])
        body = await request.json()
        if not _is_adf(body.get("body")):
            return _errors(400, {"comment": "Comment body must be an Atlassian Document."})
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
