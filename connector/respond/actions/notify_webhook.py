"""``notify.webhook``: a generic JSON webhook signed with Standard Webhooks, so the receiver can verify it.

The webhook-id derives from the step's idempotency key, stable across retries, so a receiver deduplicating on it
(as the spec asks) sees one notification however often this step is retried, and a later re-notice is new.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import AnyHttpUrl
from standardwebhooks.webhooks import Webhook

from connector.core.clock import utc_now
from connector.core.units import Duration, Secret
from connector.respond.actions._outbound import Outbound, OutboundActionSettings
from connector.respond.actions._webhook_post import post_json
from connector.respond.actions.base import Action, StepContext


class WebhookSettings(OutboundActionSettings):
    url: AnyHttpUrl
    secret: Secret  # whsec_ + base64, as Standard Webhooks gives it
    timeout: Duration = timedelta(seconds=15)


class WebhookAction(Action[WebhookSettings]):
    name = "notify.webhook"
    settings_model = WebhookSettings

    def __init__(self, settings: WebhookSettings) -> None:
        super().__init__(settings)
        self.client = Outbound(self.name, settings.outbound).client(timeout=settings.timeout.total_seconds())
        self.signer = Webhook(settings.secret.get_secret_value())

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        message_id = "msg_" + hashlib.sha256(step.job_key.encode()).hexdigest()[:32]
        payload = json.dumps({"fingerprint": step.fingerprint, "asset": step.asset, "playbook": step.playbook,
                              **dict(params)}, sort_keys=True, default=str).encode()
        now = utc_now()
        headers = {"content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": self.signer.sign(message_id, now, payload)}
        response = post_json(self.client, str(self.settings.url), None, "webhook", headers=headers, content=payload)
        return {"status": response.status_code, "webhook_id": message_id}


ACTION = WebhookAction
