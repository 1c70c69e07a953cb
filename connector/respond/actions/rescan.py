"""``rescan``: run the finding's check on its asset now and publish the result, to confirm a fix in seconds.

Only configured assets and enabled checks can be rescanned (the runtime's Rescanner refuses others), so a
callback cannot point the scanner anywhere new. The result says whether the finding that triggered the step
still fails, which a later step (closing the ticket) can rely on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.core.errors import ConnectorError
from connector.respond.actions.base import Action, ActionError, ActionSettings, StepContext


class RescanSettings(ActionSettings):
    pass


class RescanAction(Action[RescanSettings]):
    name = "rescan"
    settings_model = RescanSettings

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        if step.rescanner is None:
            raise ActionError("rescan needs the scanner: run it under `connector run` or `connector respond`",
                              permanent=True)
        check = str(params.get("check") or "")
        asset = str(params.get("asset") or step.asset)
        if not check:
            raise ActionError("rescan: the step's params must name the check (e.g. check: certificate)",
                              permanent=True)
        try:
            result = step.rescanner.rescan(asset, check)
        except ConnectorError as exc:
            raise ActionError(str(exc), permanent=True) from None
        status = result.statuses.get(step.fingerprint)
        return {"scan_id": result.scan_id, "check": check, "asset": asset, "findings": len(result.statuses),
                "status": status, "fixed": status == "pass"}


ACTION = RescanAction
