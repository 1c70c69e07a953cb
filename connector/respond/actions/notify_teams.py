"""``notify.teams``: a Teams Workflows webhook ("post to a channel when a webhook request is received") with an
Adaptive Card. Office 365 connector cards are retired, so this sends only the Adaptive Card envelope Workflows
accepts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from connector.core.units import Duration, Secret
from connector.respond.actions._outbound import Outbound, OutboundActionSettings
from connector.respond.actions._webhook_post import post_json
from connector.respond.actions.base import Action, StepContext


class TeamsSettings(OutboundActionSettings):
    workflow_url: Secret  # signed with sig=: the URL is the credential
    timeout: Duration = timedelta(seconds=15)


class TeamsAction(Action[TeamsSettings]):
    name = "notify.teams"
    settings_model = TeamsSettings

    def __init__(self, settings: TeamsSettings) -> None:
        super().__init__(settings)
        self.client = Outbound(self.name, settings.outbound).client(timeout=settings.timeout.total_seconds())

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        if step.effects.get("posted") is not None:
            return {"posted": True, "resumed": True}
        title = str(params.get("title") or f"Postern: finding on {step.asset}")
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": title, "wrap": True},
            {"type": "TextBlock", "text": str(params.get("text") or ""), "wrap": True},
            {"type": "FactSet", "facts": [{"title": "Asset", "value": step.asset},
                                          {"title": "Finding", "value": step.fingerprint}]},
        ]
        card: dict[str, Any] = {"type": "AdaptiveCard", "version": "1.4", "body": body,
                                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json"}
        if params.get("link"):
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": str(params["link"])}]
        message = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}
        post_json(self.client, self.settings.workflow_url.get_secret_value(), message, "Teams workflow")
        step.effects.record("posted", {"title": title})
        return {"posted": True}


ACTION = TeamsAction
