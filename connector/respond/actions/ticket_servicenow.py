"""``ticket.servicenow``: one incident per finding episode through the Table API, keyed by ``correlation_id``.

The guards against a second incident are in actions/_tickets.py; ServiceNow's own is
``GET /api/now/table/incident?sysparm_query=correlation_id=<fingerprint>^active=true`` before the POST.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from pydantic import AnyHttpUrl, Field

from connector.core.units import Duration, Secret
from connector.respond.actions._outbound import Outbound, OutboundActionSettings
from connector.respond.actions._tickets import close_once, open_once
from connector.respond.actions.base import Action, ActionError, StepContext

TRACKER = "servicenow"
_URGENCY = {"critical": "1", "high": "1", "medium": "2", "low": "3", "info": "3"}


class ServiceNowSettings(OutboundActionSettings):
    url: AnyHttpUrl = Field(description="https://<instance>.service-now.com")
    username: str
    password: Secret
    assignment_group: str | None = None
    resolved_state: str = Field(default="6", description="the incident state that means resolved")
    timeout: Duration = timedelta(seconds=30)


class ServiceNowAction(Action[ServiceNowSettings]):
    name = "ticket.servicenow"
    settings_model = ServiceNowSettings

    def __init__(self, settings: ServiceNowSettings) -> None:
        super().__init__(settings)
        self.client = Outbound(self.name, settings.outbound).client(
            base_url=str(settings.url).rstrip("/"), timeout=settings.timeout.total_seconds(),
            auth=(settings.username, settings.password.get_secret_value()), headers={"Accept": "application/json"})

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        if params.get("operation") == "close":
            return close_once(step, TRACKER, self._close, params.get("confirm_with"))

        def search() -> str | None:
            found = self._request("GET", "/api/now/table/incident", params={
                "sysparm_query": f"correlation_id={step.fingerprint}^active=true", "sysparm_limit": "1",
                "sysparm_fields": "sys_id,number"}).json().get("result", [])
            return str(found[0]["sys_id"]) if found else None

        def create() -> str:
            urgency = _URGENCY.get(str(params.get("severity")), "2")
            record = {"short_description": " ".join(str(params.get("summary") or "Postern finding").split())[:160],
                      "description": str(params.get("description") or ""), "correlation_id": step.fingerprint,
                      "correlation_display": "Postern", "urgency": urgency, "impact": urgency}
            if self.settings.assignment_group:
                record["assignment_group"] = self.settings.assignment_group
            return str(self._request("POST", "/api/now/table/incident", json=record).json()["result"]["sys_id"])

        return open_once(step, TRACKER, search, create)

    def _close(self, key: str) -> None:
        self._request("PATCH", f"/api/now/table/incident/{key}", json={
            "state": self.settings.resolved_state, "close_code": "Resolved by caller",
            "close_notes": "Postern: the finding is resolved."})

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        where = f"ServiceNow {method} {path}"
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ActionError(f"{where}: {exc}") from None
        if response.status_code in {429, 503}:
            seconds = response.headers.get("retry-after", "30")
            raise ActionError(f"{where}: {response.status_code}, asked to wait",
                              retry_after=timedelta(seconds=float(seconds) if seconds.isdigit() else 30))
        if response.status_code in {401, 403}:
            raise ActionError(f"{where}: {response.status_code}: the credentials were refused", permanent=True)
        if response.status_code >= 500:
            raise ActionError(f"{where}: {response.status_code}")
        if response.status_code >= 400:
            raise ActionError(f"{where}: {response.status_code}: {response.text[:300]}", permanent=True)
        return response


ACTION = ServiceNowAction
