"""Strict emulators of the ServiceNow Table API and the GitHub Issues API, on 127.0.0.1.

- ServiceNow (docs.servicenow.com "Table API", POST/GET/PATCH /api/now/table/{table}): Basic auth (401
  ``{"error": {"message": "User Not Authenticated"}}``), ``{"result": {...}}`` bodies, 201 with a Location header,
  sysparm_query with ``^`` joins; ``correlation_id`` is not unique.
- GitHub (docs.github.com/rest/issues/issues, /rest/search/search#search-issues-and-pull-requests): a Bearer token,
  ``X-GitHub-Api-Version``; labels are dropped silently when the token cannot push (``can_label``); secondary rate
  limits answer 403 with ``retry-after``; 410 when issues are disabled.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections import deque
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from support.waiting import wait_until


class _Emulator:
    name = "emulator"

    def __init__(self) -> None:
        self.faults: deque[int] = deque()
        self._server: uvicorn.Server | None = None
        self.url = ""

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self._server = uvicorn.Server(uvicorn.Config(Starlette(routes=self.routes()), host="127.0.0.1", port=0,
                                                     log_config=None, access_log=False, lifespan="off"))
        threading.Thread(target=self._server.run, name=self.name, daemon=True).start()
        wait_until(lambda: self._server is not None and self._server.started)
        self.url = f"http://127.0.0.1:{self._server.servers[0].sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True


class ServiceNowEmulator(_Emulator):
    name = "servicenow-emulator"

    def __init__(self, username: str = "postern.bot", password: str = "snow-password-123") -> None:
        super().__init__()
        self.username, self.password = username, password
        self.incidents: dict[str, dict[str, Any]] = {}

    def routes(self) -> list[Route]:
        return [Route("/api/now/table/incident", self._collection, methods=["GET", "POST"]),
                Route("/api/now/table/incident/{sys_id}", self._record, methods=["GET", "PATCH"])]

    def _refused(self, request: Request) -> Response | None:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": {"message": "User Not Authenticated",
                                           "detail": "Required to provide Auth information"}, "status": "failure"}, 401)
        if self.faults:
            status = self.faults.popleft()
            return JSONResponse({"error": {"message": "injected"}}, status,
                                headers={"Retry-After": "5"} if status in {429, 503} else None)
        return None

    async def _collection(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        if request.method == "GET":
            terms = dict(term.split("=", 1) for term in request.query_params.get("sysparm_query", "").split("^")
                         if "=" in term)
            matched = [record for record in self.incidents.values()
                       if all(str(record.get(field)) == value for field, value in terms.items())]
            limit = int(request.query_params.get("sysparm_limit", "10000"))
            return JSONResponse({"result": matched[:limit]})
        body = await request.json()
        if not isinstance(body, dict) or not body.get("short_description"):
            return JSONResponse({"error": {"message": "Mandatory field short_description is empty"},
                                 "status": "failure"}, 400)
        sys_id = uuid.uuid4().hex
        record = {**{key: str(value) for key, value in body.items()}, "sys_id": sys_id,
                  "number": f"INC{len(self.incidents) + 1:07d}", "active": "true", "state": "1"}
        self.incidents[sys_id] = record
        location = f"{self.url}/api/now/table/incident/{sys_id}"
        return JSONResponse({"result": record}, 201, headers={"Location": location})

    async def _record(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        record = self.incidents.get(request.path_params["sys_id"])
        if record is None:
            return JSONResponse({"error": {"message": "No Record found"}, "status": "failure"}, 404)
        if request.method == "PATCH":
            record.update({key: str(value) for key, value in (await request.json()).items()})
            if record.get("state") in {"6", "7"}:
                record["active"] = "false"
        return JSONResponse({"result": record})


class GitHubEmulator(_Emulator):
    name = "github-emulator"

    def __init__(self, repository: str = "acme/security", token: str = "ghp_emulatortoken0123456789",
                 can_label: bool = True) -> None:
        super().__init__()
        self.repository, self.token, self.can_label = repository, token, can_label
        self.issues: dict[int, dict[str, Any]] = {}

    def routes(self) -> list[Route]:
        base = f"/repos/{self.repository}/issues"
        return [Route("/search/issues", self._search, methods=["GET"]), Route(base, self._create, methods=["POST"]),
                Route(base + "/{number:int}", self._update, methods=["PATCH"]),
                Route(base + "/{number:int}/comments", self._comment, methods=["POST"])]

    def _refused(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
                                401)
        if self.faults:
            status = self.faults.popleft()
            return JSONResponse({"message": "You have exceeded a secondary rate limit."}, status,
                                headers={"retry-after": "7"} if status in {403, 429} else None)
        return None

    async def _search(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        words = request.query_params.get("q", "").split()
        labels = [word.removeprefix("label:") for word in words if word.startswith("label:")]
        open_only = "is:open" in words
        items = [issue for issue in self.issues.values()
                 if all(label in [item["name"] for item in issue["labels"]] for label in labels)
                 and (not open_only or issue["state"] == "open")]
        return JSONResponse({"total_count": len(items), "incomplete_results": False, "items": items})

    async def _create(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await request.json()
        if not isinstance(body, dict) or not body.get("title"):
            return JSONResponse({"message": "Validation Failed", "errors": [
                {"resource": "Issue", "code": "missing_field", "field": "title"}]}, 422)
        number = len(self.issues) + 1
        labels = [{"name": name} for name in body.get("labels", [])] if self.can_label else []
        self.issues[number] = {"number": number, "title": body["title"], "body": body.get("body"),
                               "labels": labels, "state": "open", "comments": []}
        return JSONResponse(self.issues[number], 201)

    async def _update(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        issue = self.issues.get(request.path_params["number"])
        if issue is None:
            return JSONResponse({"message": "Not Found"}, 404)
        issue.update({key: value for key, value in (await request.json()).items() if key in {"state", "title"}})
        return JSONResponse(issue)

    async def _comment(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        issue = self.issues.get(request.path_params["number"])
        if issue is None:
            return JSONResponse({"message": "Not Found"}, 404)
        issue["comments"].append((await request.json())["body"])
        return JSONResponse({"id": len(issue["comments"])}, 201)
