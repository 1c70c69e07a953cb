"""Owners' digests on a history worked out by hand: what opened and was resolved in the period, and what is past
its SLA whenever it opened; routine info findings and owners with nothing to say get nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.core.lifecycle import AssetRecord, Episode
from connector.core.model import Asset, Criticality, Severity
from connector.inventory.digest import digests, period_end
from connector.inventory.kpi import History, KpiSettings
from connector.normalise.digest import digest_ecs
from support.ecs import assert_ecs_valid

END = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # a Monday
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def record(host: str, owner: str | None) -> AssetRecord:
    return AssetRecord(Asset(host=host, owner=owner, criticality=Criticality.HIGH), "config", None, END - 90 * DAY,
                       END, END)


def episode(fingerprint: str, asset: str, severity: Severity, opened: datetime,
            resolved: datetime | None = None) -> Episode:
    return Episode(fingerprint, asset, f"rule.{fingerprint}", severity, opened, resolved)


HISTORY = History(
    [record("shop", "web"), record("blog", "marketing"), record("lab", None)],
    [],
    [episode("new", "shop", Severity.MEDIUM, END - 5 * HOUR),
     episode("fixed", "shop", Severity.HIGH, END - 3 * DAY, END - 2 * HOUR),
     episode("late", "shop", Severity.HIGH, END - 10 * DAY),  # open past its 7 days
     episode("early", "shop", Severity.LOW, END - 30 * DAY),  # open, inside its 90 days: not listed
     episode("advice", "blog", Severity.INFO, END - HOUR),  # an advisory: never in a digest
     episode("stale", "lab", Severity.CRITICAL, END - 40 * DAY, END - 39 * DAY)],  # long fixed: nothing to say
    [], {})


def test_the_daily_digest_lists_what_opened_was_resolved_and_is_overdue_per_owner() -> None:
    [web] = digests(HISTORY, KpiSettings(), "daily", END)
    assert web.owner == "web" and (web.start, web.end) == (END - DAY, END)
    assert [entry.fingerprint for entry in web.opened] == ["new"]
    assert [entry.fingerprint for entry in web.resolved] == ["fixed"]
    assert [entry.fingerprint for entry in web.overdue] == ["late"]
    assert web.overdue[0].due == END - 3 * DAY
    document = digest_ecs(web, {"version": "1", "hostname": "sidecar", "name": "sidecar"})
    assert_ecs_valid(document)
    assert document["event"]["action"] == "digest-daily" and document["rule"]["id"] == "digest.daily"
    assert document["postern"]["digest"]["overdue"][0]["rule"] == "rule.late"
    assert document["message"] == "daily digest for web: 1 opened, 1 resolved, 1 past their SLA"


def test_the_weekly_digest_covers_seven_days_and_the_ids_are_stable() -> None:
    [web] = digests(HISTORY, KpiSettings(), "weekly", END)
    assert [entry.fingerprint for entry in web.opened] == ["fixed", "new"]  # most severe first
    again = digests(HISTORY, KpiSettings(), "weekly", END)[0]
    assert again.event_id == web.event_id and again.fingerprint == web.fingerprint  # a re-send is one event
    assert digests(HISTORY, KpiSettings(), "daily", END - DAY)[0].event_id != web.event_id


def test_periods_end_at_midnight_and_weeks_on_monday() -> None:
    wednesday = datetime(2026, 12, 9, 15, 30, tzinfo=UTC)
    assert period_end("daily", wednesday) == datetime(2026, 12, 9, tzinfo=UTC)
    assert period_end("weekly", wednesday) == END
