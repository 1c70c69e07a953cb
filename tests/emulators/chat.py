"""Strict emulators of the chat and webhook receivers the notify actions post to, on 127.0.0.1.

- Slack incoming webhooks (api.slack.com/messaging/webhooks, .../changelog/2016-05-17-changes-to-errors-for-
  incoming-webhooks): 200 with the body ``ok``; 400 ``invalid_payload`` / ``no_text``; 404 ``no_service`` for an
  unknown hook; 429 with Retry-After when over about one message a second.
- Teams Workflows "post to a channel when a webhook request is received": 202; the body must be a ``message``
  whose attachments are Adaptive Cards (``application/vnd.microsoft.card.adaptive``); the URL carries ``sig=``.
- A Standard Webhooks receiver: 2xx only for a valid signature, deduplicating on webhook-id as the spec asks.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from support.waiting import wait_until

SLACK_HOOK = "/services/T0001/B0001/abcdefghijklmnopqrstuvwx"
TEAMS_FLOW = "/workflows/abc123/triggers/manual/paths/invoke"
TEAMS_SIG = "sig0123456789"


class ChatEmulator:
    def __init__(self, webhook_secret: str) -> None:
        self.slack: list[dict[str, Any]] = []
        self.teams: list[dict[str, Any]] = []
        self.webhooks: dict[str, Any] = {}
        self.webhook_hosts: list[str] = []  # the Host header of each verified webhook
        self.faults: deque[int] = deque()
        self._verifier = Webhook(webhook_secret)
        self._server: uvicorn.Server | None = None
        self.base = ""

    @property
    def slack_url(self) -> str:
        return self.base + SLACK_HOOK

    @property
    def teams_url(self) -> str:
        return f"{self.base}{TEAMS_FLOW}?api-version=1&sig={TEAMS_SIG}"

    @property
    def webhook_url(self) -> str:
        return self.base + "/hooks/postern"

    def __enter__(self) -> ChatEmulator:
        app = Starlette(routes=[Route("/services/{path:path}", self._slack, methods=["POST"]),
                                Route("/workflows/{path:path}", self._teams, methods=["POST"]),
                                Route("/hooks/postern", self._webhook, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                                     access_log=False, lifespan="off"))
        threading.Thread(target=self._server.run, name="chat-emulator", daemon=True).start()
        wait_until(lambda: self._server is not None and self._server.started)
        self.base = f"http://127.0.0.1:{self._server.servers[0].sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def _fault(self) -> Response | None:
        if not self.faults:
            return None
        status = self.faults.popleft()
        return PlainTextResponse("rate_limited" if status == 429 else "internal_error", status,
                                 headers={"Retry-After": "3"} if status == 429 else None)

    async def _slack(self, request: Request) -> Response:
        if "/" + request.path_params["path"] != SLACK_HOOK.removeprefix("/services"):
            return PlainTextResponse("no_service", 404)
        if (fault := self._fault()) is not None:
            return fault
        try:
            message = await request.json()
        except ValueError:
            return PlainTextResponse("invalid_payload", 400)
        if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
            return PlainTextResponse("no_text", 400)
        for block in message.get("blocks", []):
            if block.get("type") == "header" and len(block.get("text", {}).get("text", "")) > 150:
                return PlainTextResponse("invalid_blocks", 400)
        self.slack.append(message)
        return PlainTextResponse("ok")

    async def _teams(self, request: Request) -> Response:
        if request.query_params.get("sig") != TEAMS_SIG:
            return JSONResponse({"error": {"code": "DirectApiAuthorizationRequired"}}, 401)
        if (fault := self._fault()) is not None:
            return fault
        message = await request.json()
        attachments = message.get("attachments") if isinstance(message, dict) else None
        if message.get("type") != "message" or not attachments or any(
                a.get("contentType") != "application/vnd.microsoft.card.adaptive"
                or a.get("content", {}).get("type") != "AdaptiveCard" for a in attachments):
            return JSONResponse({"error": {"code": "InvalidRequestContent",
                                           "message": "expected a message with Adaptive Card attachments"}}, 400)
        self.teams.append(message)
        return Response(status_code=202)

    async def _webhook(self, request: Request) -> Response:
        body = await request.body()
        try:
            self._verifier.verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError as exc:
            return JSONResponse({"error": str(exc)}, 401)
        self.webhooks.setdefault(request.headers["webhook-id"], body)
        self.webhook_hosts.append(request.headers.get("host", ""))
        return Response(status_code=204)
