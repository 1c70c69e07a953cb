"""A strict PagerDuty Events API v2 emulator on 127.0.0.1: ``POST /v2/enqueue`` as documented.

Source: developer.pagerduty.com/docs/events-api-v2/trigger-events/ and .../resolve-events/ (202 with
``status: success``; 400 ``invalid event`` with ``errors``; 429 when over about 120 events a minute per key).
A trigger with the dedup_key of an open alert updates it; after a resolve, the same key opens a new alert.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from support.waiting import wait_until

SEVERITIES = {"critical", "error", "warning", "info"}


class PagerDutyEmulator:
    def __init__(self, routing_key: str = "R0123456789abcdef0123456789abcde") -> None:
        self.routing_key = routing_key
        self.alerts: list[dict[str, Any]] = []  # one per incident opened: {dedup_key, open, updates}
        self.faults: deque[int] = deque()
        self._server: uvicorn.Server | None = None
        self.url = ""

    def __enter__(self) -> PagerDutyEmulator:
        app = Starlette(routes=[Route("/v2/enqueue", self._enqueue, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                                     access_log=False, lifespan="off"))
        threading.Thread(target=self._server.run, name="pagerduty-emulator", daemon=True).start()
        wait_until(lambda: self._server is not None and self._server.started)
        self.url = f"http://127.0.0.1:{self._server.servers[0].sockets[0].getsockname()[1]}/v2/enqueue"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def open_alerts(self) -> list[dict[str, Any]]:
        return [alert for alert in self.alerts if alert["open"]]

    async def _enqueue(self, request: Request) -> Response:
        if self.faults:
            status = self.faults.popleft()
            return JSONResponse({"status": "throttle event", "message": "Requests for this service are arriving "
                                 "too quickly."} if status == 429 else {"status": "error"}, status)
        try:
            event = await request.json()
        except ValueError:
            return self._invalid(["Event object is invalid: not JSON"])
        errors = []
        if event.get("routing_key") != self.routing_key:
            errors.append("'routing_key' is invalid")
        action = event.get("event_action")
        if action not in {"trigger", "acknowledge", "resolve"}:
            errors.append("'event_action' is invalid")
        key = event.get("dedup_key")
        if action in {"acknowledge", "resolve"} and not key:
            errors.append("'dedup_key' is required for acknowledge and resolve")
        if isinstance(key, str) and len(key) > 255:
            errors.append("'dedup_key' must be at most 255 characters")
        if action == "trigger":
            payload = event.get("payload") or {}
            if not payload.get("summary") or len(str(payload["summary"])) > 1024:
                errors.append("'payload.summary' is missing or longer than 1024 characters")
            if not payload.get("source"):
                errors.append("'payload.source' is missing")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' must be critical, error, warning or info")
        if errors:
            return self._invalid(errors)
        current = next((a for a in self.alerts if a["dedup_key"] == key and a["open"]), None)
        if action == "trigger":
            if current is None:
                self.alerts.append({"dedup_key": key, "open": True, "updates": 0, "event": event})
            else:
                current["updates"] += 1
        elif action == "resolve" and current is not None:
            current["open"] = False
        return JSONResponse({"status": "success", "message": "Event processed", "dedup_key": key}, 202)

    @staticmethod
    def _invalid(errors: list[str]) -> Response:
        return JSONResponse({"status": "invalid event", "message": "Event object is invalid", "errors": errors}, 400)
