"""``suppress``: record a false-positive or accepted-risk verdict with an expiry, so playbooks stop acting on it.

The verdict is the same record an analyst's ``/v1/feedback`` makes; it lifts itself at ``expires`` (default 30
days: an accepted risk is reviewed, not forgotten).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from connector.core.clock import utc_now
from connector.core.units import Duration, parse_duration
from connector.respond.actions.base import Action, ActionError, ActionSettings, StepContext
from connector.respond.verdicts import SUPPRESSING, Verdict


class SuppressSettings(ActionSettings):
    default_for: Duration = timedelta(days=30)


class SuppressAction(Action[SuppressSettings]):
    name = "suppress"
    settings_model = SuppressSettings

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        verdict = str(params.get("verdict") or "accepted_risk")
        if verdict not in SUPPRESSING:
            raise ActionError(f"suppress takes verdict {' or '.join(SUPPRESSING)}, not {verdict!r}", permanent=True)
        if step.verdicts is None or not step.fingerprint:
            raise ActionError("suppress needs a finding fingerprint and the verdict store", permanent=True)
        try:
            lasting = parse_duration(params["for"]) if params.get("for") else self.settings.default_for
        except ValueError as exc:
            raise ActionError(f"suppress: {exc}", permanent=True) from None
        now = utc_now()
        step.verdicts.record(Verdict(step.fingerprint, verdict, str(params.get("analyst") or "soar"),
                                     str(params.get("comment") or ""), now, now + lasting))
        return {"verdict": verdict, "expires": (now + lasting).isoformat()}


ACTION = SuppressAction
