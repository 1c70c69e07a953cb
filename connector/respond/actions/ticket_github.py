"""``ticket.github``: one GitHub issue per finding episode, found again by its label ``postern-<fingerprint>``.

GitHub drops labels silently without push access, so the token must be able to label; the action checks that
the created issue carries the finding's label and fails loudly otherwise (a later search would miss it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from pydantic import AnyHttpUrl, Field

from connector.core.units import Duration, Secret
from connector.respond.actions._outbound import Outbound, OutboundActionSettings
from connector.respond.actions._tickets import close_once, open_once
from connector.respond.actions.base import Action, ActionError, StepContext

TRACKER = "github"


class GitHubSettings(OutboundActionSettings):
    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name")
    token: Secret
    api_url: AnyHttpUrl = AnyHttpUrl("https://api.github.com")
    timeout: Duration = timedelta(seconds=30)


class GitHubAction(Action[GitHubSettings]):
    name = "ticket.github"
    settings_model = GitHubSettings

    def __init__(self, settings: GitHubSettings) -> None:
        super().__init__(settings)
        self.client = Outbound(self.name, settings.outbound).client(
            base_url=str(settings.api_url).rstrip("/"), timeout=settings.timeout.total_seconds(),
            headers={"Authorization": f"Bearer {settings.token.get_secret_value()}",
                     "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"})

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        if params.get("operation") == "close":
            return close_once(step, TRACKER, self._close, params.get("confirm_with"))
        label = f"postern-{step.fingerprint}"

        def search() -> str | None:
            query = f"repo:{self.settings.repository} is:issue is:open label:{label}"
            found = self._request("GET", "/search/issues", params={"q": query}).json().get("items", [])
            return str(found[0]["number"]) if found else None

        def create() -> str:
            labels = sorted({*(str(item) for item in params.get("labels", [])), label})
            created = self._request("POST", f"/repos/{self.settings.repository}/issues", json={
                "title": str(params.get("summary") or "Postern finding")[:256],
                "body": str(params.get("description") or ""), "labels": labels}).json()
            if label not in {str(item.get("name")) for item in created.get("labels", [])}:
                step.effects.record("ticket", {"key": str(created["number"])})
                raise ActionError(f"GitHub issue #{created['number']} was created without the label {label}: the "
                                  "token needs push access to label issues, or the issue cannot be found again",
                                  permanent=True)
            return str(created["number"])

        return open_once(step, TRACKER, search, create)

    def _close(self, key: str) -> None:
        self._request("POST", f"/repos/{self.settings.repository}/issues/{key}/comments",
                      json={"body": "Postern: the finding is resolved; closing."})
        self._request("PATCH", f"/repos/{self.settings.repository}/issues/{key}",
                      json={"state": "closed", "state_reason": "completed"})

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        where = f"GitHub {method} {path}"
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ActionError(f"{where}: {exc}") from None
        limited = response.status_code == 429 or (response.status_code == 403 and (
            "retry-after" in response.headers or response.headers.get("x-ratelimit-remaining") == "0"))
        if limited:
            seconds = response.headers.get("retry-after", "60")
            raise ActionError(f"{where}: {response.status_code}, rate limited",
                              retry_after=timedelta(seconds=float(seconds) if seconds.isdigit() else 60))
        if response.status_code in {401, 403}:
            raise ActionError(f"{where}: {response.status_code}: the token was refused", permanent=True)
        if response.status_code == 410:
            raise ActionError(f"{where}: 410: issues are disabled in {self.settings.repository}", permanent=True)
        if response.status_code >= 500:
            raise ActionError(f"{where}: {response.status_code}")
        if response.status_code >= 400:
            raise ActionError(f"{where}: {response.status_code}: {response.text[:300]}", permanent=True)
        return response


ACTION = GitHubAction
