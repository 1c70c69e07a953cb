"""Exactly one ticket per finding episode, whichever tracker: the three guards, in the one order that works.

1. this job's effects journal: a re-run after a crash between "created" and "done";
2. the ticket ledger: another callback about the same episode;
3. the tracker's own search (by label or correlation id): a lost ledger. Searches can be eventually consistent
   (Jira's is), which is why this guard is last, not the only one.

The new ticket is journalled the moment the tracker answers, before anything else can fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.core.errors import ConnectorError
from connector.respond.actions.base import ActionError, StepContext


def open_once(step: StepContext, tracker: str, search: Callable[[], str | None],
              create: Callable[[], str]) -> dict[str, Any]:
    if not step.fingerprint:
        raise ActionError("the step has no finding fingerprint: one ticket per finding needs it", permanent=True)
    journalled = step.effects.get("ticket")
    if journalled is not None:
        step.tickets.record(tracker, step.fingerprint, journalled["key"])
        return {"key": journalled["key"], "created": False, "found_in": "this job"}
    known = step.tickets.open_ticket(tracker, step.fingerprint)
    if known is not None:
        return {"key": known, "created": False, "found_in": "ledger"}
    found = search()
    if found is not None:
        step.tickets.record(tracker, step.fingerprint, found)
        return {"key": found, "created": False, "found_in": tracker}
    key = create()
    step.effects.record("ticket", {"key": key})
    step.tickets.record(tracker, step.fingerprint, key)
    return {"key": key, "created": True}


def close_once(step: StepContext, tracker: str, close: Callable[[str], None],
               confirm_with: str | None = None) -> dict[str, Any]:
    """Close the episode's ticket; with ``confirm_with`` (a check), only once a rescan of it finds the finding
    passing, so a resolved event that raced a new failure, or was forged, never closes a live problem's ticket."""
    key = step.tickets.open_ticket(tracker, step.fingerprint)
    if key is None:
        return {"closed": None, "reason": "no open ticket for this finding"}
    if confirm_with:
        if step.rescanner is None:
            raise ActionError("confirm_with needs the scanner: run under `connector run` or `connector respond`",
                              permanent=True)
        try:
            result = step.rescanner.rescan(step.asset, confirm_with)
        except ConnectorError as exc:
            raise ActionError(f"confirm_with: {exc}", permanent=True) from None
        status = result.statuses.get(step.fingerprint)
        if status != "pass":
            return {"closed": None, "key": key, "rescan": result.scan_id,
                    "reason": f"the rescan finds the finding {status or 'not reported'}: the ticket stays open"}
    close(key)
    step.tickets.record(tracker, step.fingerprint, key, is_open=False)
    return {"closed": key}
