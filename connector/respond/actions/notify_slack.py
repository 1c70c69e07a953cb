"""``notify.slack``: an incoming webhook message with Block Kit (a header, the finding, a link to the SIEM)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from connector.core.units import Duration, Secret
from connector.respond.actions._outbound import Outbound, OutboundActionSettings
from connector.respond.actions._webhook_post import post_json
from connector.respond.actions.base import Action, StepContext


class SlackSettings(OutboundActionSettings):
    webhook_url: Secret  # the URL is the credential
    timeout: Duration = timedelta(seconds=15)


class SlackAction(Action[SlackSettings]):
    name = "notify.slack"
    settings_model = SlackSettings

    def __init__(self, settings: SlackSettings) -> None:
        super().__init__(settings)
        self.client = Outbound(self.name, settings.outbound).client(timeout=settings.timeout.total_seconds())

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        if step.effects.get("posted") is not None:
            return {"posted": True, "resumed": True}
        title = str(params.get("title") or f"Postern: finding on {step.asset}")[:150]
        text = str(params.get("text") or "")[:3000]
        blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
        if text:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"asset `{step.asset}` · finding `{step.fingerprint[:12]}`"}]})
        if params.get("link"):
            blocks.append({"type": "actions", "elements": [{"type": "button", "url": str(params["link"]),
                                                            "text": {"type": "plain_text", "text": "Open"}}]})
        post_json(self.client, self.settings.webhook_url.get_secret_value(), {"text": title, "blocks": blocks},
                  "Slack webhook")
        step.effects.record("posted", {"title": title})
        return {"posted": True}


ACTION = SlackAction
