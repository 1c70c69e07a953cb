"""``notify.pagerduty``: Events API v2, one alert per finding: ``dedup_key`` is the finding's fingerprint.

A trigger that reuses an open dedup_key updates that alert instead of paging again, so retries and repeated
callbacks cannot page twice; ``resolve`` (params ``event_action: resolve``) closes it when the finding is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from pydantic import AnyHttpUrl, Field

from connector.core.units import Duration, Secret
from connector.respond.actions._outbound import Outbound, OutboundActionSettings
from connector.respond.actions.base import Action, ActionError, StepContext

_SEVERITIES = {"critical": "critical", "high": "error", "medium": "warning", "low": "info", "info": "info",
               "error": "error", "warning": "warning"}


class PagerDutySettings(OutboundActionSettings):
    routing_key: Secret = Field(description="the integration key of an Events API v2 integration")
    url: AnyHttpUrl = AnyHttpUrl("https://events.pagerduty.com/v2/enqueue")
    timeout: Duration = timedelta(seconds=30)


class PagerDutyAction(Action[PagerDutySettings]):
    name = "notify.pagerduty"
    settings_model = PagerDutySettings

    def __init__(self, settings: PagerDutySettings) -> None:
        super().__init__(settings)
        self.client = Outbound(self.name, settings.outbound).client(timeout=settings.timeout.total_seconds())

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        event_action = str(params.get("event_action") or "trigger")
        if event_action not in {"trigger", "acknowledge", "resolve"}:
            raise ActionError(f"event_action must be trigger, acknowledge or resolve, not {event_action!r}",
                              permanent=True)
        dedup_key = str(params.get("dedup_key") or step.fingerprint)[:255]
        if not dedup_key:
            raise ActionError("no dedup_key and no finding fingerprint: PagerDuty could not deduplicate",
                              permanent=True)
        event: dict[str, Any] = {"routing_key": self.settings.routing_key.get_secret_value(),
                                 "event_action": event_action, "dedup_key": dedup_key}
        if event_action == "trigger":
            event["payload"] = {
                "summary": str(params.get("summary") or f"Postern finding on {step.asset}")[:1024],
                "source": step.asset or "postern",
                "severity": _SEVERITIES.get(str(params.get("severity") or "error").lower(), "error"),
                "custom_details": {"fingerprint": step.fingerprint, "playbook": step.playbook,
                                   **dict(params.get("details") or {})},
            }
        return self._send(event)

    def _send(self, event: dict[str, Any]) -> dict[str, Any]:
        where = f"PagerDuty {event['event_action']}"
        try:
            response = self.client.post(str(self.settings.url), json=event)
        except httpx.HTTPError as exc:
            raise ActionError(f"{where}: {exc}") from None
        if response.status_code == 429:
            raise ActionError(f"{where}: 429, rate limited", retry_after=_retry_after(response))
        if response.status_code >= 500:
            raise ActionError(f"{where}: {response.status_code}")
        if response.status_code != 202:
            raise ActionError(f"{where}: {response.status_code}: {response.text[:300]}", permanent=True)
        return {"dedup_key": event["dedup_key"], "event_action": event["event_action"]}


def _retry_after(response: httpx.Response) -> timedelta:
    try:
        return timedelta(seconds=float(response.headers.get("retry-after", "60")))
    except ValueError:
        return timedelta(seconds=60)


ACTION = PagerDutyAction
