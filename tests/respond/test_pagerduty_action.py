"""``notify.pagerduty`` against a strict Events API v2 emulator: one page per finding, resolved when fixed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.respond.actions.base import ActionError, StepContext
from connector.respond.actions.notify_pagerduty import PagerDutyAction, PagerDutySettings
from connector.respond.queue import ActionQueue, JobEffects
from connector.respond.tickets import TicketLedger
from emulators.pagerduty import PagerDutyEmulator

FINGERPRINT = "5c" * 16


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyEmulator]:
    with PagerDutyEmulator() as emulator:
        yield emulator


def context(tmp_path: Path) -> StepContext:
    queue = ActionQueue(tmp_path / "actions.sqlite")
    queue.enqueue("k", "notify.pagerduty", {})
    return StepContext(FINGERPRINT, "shop.example.test", "critical-exposure-page", JobEffects(queue, 1),
                       TicketLedger(tmp_path / "tickets.sqlite"))


def action(pagerduty: PagerDutyEmulator, **changes: str) -> PagerDutyAction:
    return PagerDutyAction(PagerDutySettings.model_validate(
        {"routing_key": pagerduty.routing_key, "url": pagerduty.url, "outbound": {"allow": ["127.0.0.0/8"]},
         **changes}))


def test_repeated_triggers_are_one_alert_and_resolve_closes_it(tmp_path: Path, pagerduty: PagerDutyEmulator) -> None:
    page, step = action(pagerduty), context(tmp_path)
    for _ in range(3):
        page.execute({"summary": "Git repository exposed on shop.example.test", "severity": "critical"}, step)
    assert len(pagerduty.alerts) == 1 and pagerduty.alerts[0]["updates"] == 2
    assert pagerduty.alerts[0]["event"]["payload"]["severity"] == "critical"
    page.execute({"event_action": "resolve"}, step)
    assert pagerduty.open_alerts() == []


def test_throttling_is_retried_and_a_wrong_key_is_permanent(tmp_path: Path, pagerduty: PagerDutyEmulator) -> None:
    pagerduty.faults.append(429)
    with pytest.raises(ActionError) as throttled:
        action(pagerduty).execute({"summary": "s"}, context(tmp_path))
    assert not throttled.value.permanent and throttled.value.retry_after is not None
    with pytest.raises(ActionError, match="'routing_key' is invalid") as wrong:
        action(pagerduty, routing_key="R" + "0" * 31).execute({"summary": "s"}, context(tmp_path))
    assert wrong.value.permanent and pagerduty.alerts == []
