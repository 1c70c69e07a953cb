"""``ticket.jira``: exactly one Jira Cloud issue per finding episode, closed when the finding is resolved.

The guards against a second issue are in actions/_tickets.py; Jira's own is a search by the finding's label
``postern-<fingerprint>`` (eventually consistent, hence the last guard). REST v3: the description is an Atlassian
Document (ADF), and the old ``/search`` is removed, so it uses ``/search/jql``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from pydantic import AnyHttpUrl, Field

from connector.core.units import Duration, Secret
from connector.respond.actions._tickets import close_once, open_once
from connector.respond.actions.base import Action, ActionError, ActionSettings, StepContext

TRACKER = "jira"


class JiraSettings(ActionSettings):
    url: AnyHttpUrl = Field(description="https://your-site.atlassian.net")
    email: str
    api_token: Secret
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,9}$")
    issue_type: str = "Task"
    done_transition: str = Field(default="Done", description="the transition that closes an issue")
    timeout: Duration = timedelta(seconds=30)


class JiraAction(Action[JiraSettings]):
    name = "ticket.jira"
    settings_model = JiraSettings

    def __init__(self, settings: JiraSettings) -> None:
        super().__init__(settings)
        self.client = httpx.Client(base_url=str(settings.url).rstrip("/"), timeout=settings.timeout.total_seconds(),
                                   auth=(settings.email, settings.api_token.get_secret_value()),
                                   headers={"Accept": "application/json"})

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        if params.get("operation") == "close":
            return close_once(step, TRACKER, self._close, params.get("confirm_with"))
        label = f"postern-{step.fingerprint}"

        def search() -> str | None:
            found = self._request("GET", "/rest/api/3/search/jql", params={
                "jql": f'labels = "{label}" AND statusCategory != Done', "fields": "status"})
            issues = found.json().get("issues") or []
            return str(issues[0]["key"]) if issues else None

        def create() -> str:
            labels = sorted({*(str(item) for item in params.get("labels", []) if " " not in str(item)), label})
            fields = {"project": {"key": self.settings.project}, "issuetype": {"name": self.settings.issue_type},
                      "summary": " ".join(str(params.get("summary") or "Postern finding").split())[:255],
                      "description": _adf(str(params.get("description") or "")), "labels": labels}
            return str(self._request("POST", "/rest/api/3/issue", json={"fields": fields}).json()["key"])

        return open_once(step, TRACKER, search, create)

    def _close(self, key: str) -> None:
        transitions = self._request("GET", f"/rest/api/3/issue/{key}/transitions").json().get("transitions", [])
        done = next((t for t in transitions if t.get("name") == self.settings.done_transition), None)
        if done is None:
            names = sorted(str(t.get("name")) for t in transitions)
            raise ActionError(f"Jira issue {key} has no transition {self.settings.done_transition!r} (has {names}): "
                              "set done_transition", permanent=True)
        self._request("POST", f"/rest/api/3/issue/{key}/comment",
                      json={"body": _adf("Postern: the finding is resolved; closing.")})
        self._request("POST", f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": done["id"]}})

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        where = f"Jira {method} {path}"
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ActionError(f"{where}: {exc}") from None
        if response.status_code in {429, 503}:
            raise ActionError(f"{where}: {response.status_code}, asked to wait",
                              retry_after=_retry_after(response.headers.get("retry-after")))
        if response.status_code in {401, 403}:
            raise ActionError(f"{where}: {response.status_code}: Jira refused the email and API token",
                              permanent=True)
        if response.status_code >= 500:
            raise ActionError(f"{where}: {response.status_code}")
        if response.status_code >= 400:
            raise ActionError(f"{where}: {response.status_code}: {_jira_errors(response)}", permanent=True)
        return response


def _adf(text: str) -> dict[str, Any]:
    paragraphs = [part for part in text.split("\n\n") if part.strip()] or [" "]
    return {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": paragraph}]} for paragraph in paragraphs]}


def _retry_after(value: str | None) -> timedelta | None:
    try:
        return timedelta(seconds=float(value)) if value else None
    except ValueError:
        return None


def _jira_errors(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    parts = [*body.get("errorMessages", []), *(f"{k}: {v}" for k, v in body.get("errors", {}).items())]
    return "; ".join(parts)[:500] or response.text[:300]


ACTION = JiraAction
