"""Slack, Teams and the signed generic webhook, each against a strict emulator of its receiver."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.respond.actions.base import ActionError, StepContext
from connector.respond.actions.notify_slack import SlackAction, SlackSettings
from connector.respond.actions.notify_teams import TeamsAction, TeamsSettings
from connector.respond.actions.notify_webhook import WebhookAction, WebhookSettings
from connector.respond.queue import ActionQueue, JobEffects
from connector.respond.tickets import TicketLedger
from emulators.chat import ChatEmulator

SECRET = "whsec_" + base64.b64encode(b"generic webhook key of 32 bytes!").decode()
FINGERPRINT = "3d" * 16
LOOPBACK = {"outbound": {"allow": ["127.0.0.0/8"]}}  # the emulators live where the outbound guard refuses to go
PARAMS = {"title": "Git repository exposed on shop.example.test", "text": "/.git/ is readable",
          "link": "https://siem.example.test/app/postern"}


@pytest.fixture
def chat() -> Iterator[ChatEmulator]:
    with ChatEmulator(SECRET) as emulator:
        yield emulator


def step(tmp_path: Path, key: str = "job-1") -> StepContext:
    queue = ActionQueue(tmp_path / "actions.sqlite")
    queue.enqueue(key, "notify", {})
    [job] = [job for job in queue.jobs() if job.idempotency_key == key]
    return StepContext(FINGERPRINT, "shop.example.test", "critical-exposure-page", JobEffects(queue, job.id),
                       TicketLedger(tmp_path / "tickets.sqlite"), job_key=key)


def test_slack_gets_block_kit_once_even_when_the_step_is_retried(tmp_path: Path, chat: ChatEmulator) -> None:
    slack, context = SlackAction(SlackSettings.model_validate({"webhook_url": chat.slack_url, **LOOPBACK})), \
        step(tmp_path)
    slack.execute(PARAMS, context)
    assert slack.execute(PARAMS, context)["resumed"] is True
    [message] = chat.slack
    assert [block["type"] for block in message["blocks"]] == ["header", "section", "context", "actions"]


def test_slack_throttling_waits_and_a_wrong_hook_is_permanent(tmp_path: Path, chat: ChatEmulator) -> None:
    chat.faults.append(429)
    with pytest.raises(ActionError) as throttled:
        SlackAction(SlackSettings.model_validate({"webhook_url": chat.slack_url, **LOOPBACK})).execute(
            PARAMS, step(tmp_path))
    assert throttled.value.retry_after is not None and throttled.value.retry_after.total_seconds() == 3
    with pytest.raises(ActionError, match="no_service") as wrong:
        SlackAction(SlackSettings.model_validate({"webhook_url": chat.base + "/services/T0/B0/none",
                                                    **LOOPBACK})).execute(
            PARAMS, step(tmp_path, "job-2"))
    assert wrong.value.permanent


def test_teams_gets_an_adaptive_card_that_workflows_accepts(tmp_path: Path, chat: ChatEmulator) -> None:
    TeamsAction(TeamsSettings.model_validate({"workflow_url": chat.teams_url, **LOOPBACK})).execute(
        PARAMS, step(tmp_path))
    [message] = chat.teams
    card = message["attachments"][0]["content"]
    assert card["version"] == "1.4" and card["actions"][0]["url"] == PARAMS["link"]
    with pytest.raises(ActionError, match="401") as unsigned:
        TeamsAction(TeamsSettings.model_validate(
            {"workflow_url": chat.teams_url.replace("sig=", "x="), **LOOPBACK})).execute(
            PARAMS, step(tmp_path, "job-2"))
    assert unsigned.value.permanent


def test_the_generic_webhook_is_signed_and_its_retries_share_one_id(tmp_path: Path, chat: ChatEmulator) -> None:
    hook = WebhookAction(WebhookSettings.model_validate({"url": chat.webhook_url, "secret": SECRET, **LOOPBACK}))
    context = step(tmp_path)
    hook.execute(PARAMS, context)
    hook.execute(PARAMS, context)  # the retry of a step whose "done" was lost
    hook.execute(PARAMS, step(tmp_path, "job-2"))  # a later re-notice is a new message
    assert len(chat.webhooks) == 2
    assert json.loads(next(iter(chat.webhooks.values())))["fingerprint"] == FINGERPRINT
    forged = WebhookAction(WebhookSettings.model_validate(
        {"url": chat.webhook_url, "secret": "whsec_" + base64.b64encode(b"x" * 32).decode(), **LOOPBACK}))
    with pytest.raises(ActionError, match="401"):
        forged.execute(PARAMS, step(tmp_path, "job-3"))
