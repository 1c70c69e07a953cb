"""``ticket.jira``: exactly one Jira Cloud issue per finding episode, closed when the finding is resolved.

Before creating, the action looks in this job's effects (a re-run after a crash), in the ticket ledger (another
callback about the same episode), then in Jira itself by the finding's label ``postern-<fingerprint>`` (a lost
ledger), in that order, because Jira's search is eventually consistent. The issue id is journalled the moment
Jira answers 201, before anything else can fail. REST v3: the description is an Atlassian Document (ADF).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import AnyHttpUrl, Field

from connector.core.units import Duration, Secret
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
        if not step.fingerprint:
            raise ActionError("the step has no finding fingerprint: one ticket per finding needs it", permanent=True)
        operation: Literal["open", "close"] = "close" if params.get("operation") == "close" else "open"
        if operation == "close":
            return self._close(step)
        return self._open(params, step)

    def _open(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        label = f"postern-{step.fingerprint}"
        journalled = step.effects.get("ticket")
        if journalled is not None:
            step.tickets.record(TRACKER, step.fingerprint, journalled["key"])
            return {"key": journalled["key"], "created": False, "found_in": "this job"}
        known = step.tickets.open_ticket(TRACKER, step.fingerprint)
        if known is not None:
            return {"key": known, "created": False, "found_in": "ledger"}
        found = self._request("GET", "/rest/api/3/search/jql",
                              params={"jql": f'labels = "{label}" AND statusCategory != Done', "fields": "status"})
        issues = found.json().get("issues") or []
        if issues:
            key = str(issues[0]["key"])
            step.tickets.record(TRACKER, step.fingerprint, key)
            return {"key": key, "created": False, "found_in": "jira"}
        labels = sorted({*(str(label) for label in params.get("labels", []) if " " not in str(label)), label})
        fields = {"project": {"key": self.settings.project}, "issuetype": {"name": self.settings.issue_type},
                  "summary": " ".join(str(params.get("summary") or "Postern finding").split())[:255],
                  "description": _adf(str(params.get("description") or "")), "labels": labels}
        created = self._request("POST", "/rest/api/3/issue", json={"fields": fields}).json()
        key = str(created["key"])
        step.effects.record("ticket", {"key": key, "id": str(created.get("id", ""))})
        step.tickets.record(TRACKER, step.fingerprint, key)
        return {"key": key, "created": True}

    def _close(self, step: StepContext) -> dict[str, Any]:
        key = step.tickets.open_ticket(TRACKER, step.fingerprint)
        if key is None:
            return {"closed": None, "reason": "no open ticket for this finding"}
        transitions = self._request("GET", f"/rest/api/3/issue/{key}/transitions").json().get("transitions", [])
        done = next((t for t in transitions if t.get("name") == self.settings.done_transition), None)
        if done is None:
            names = sorted(str(t.get("name")) for t in transitions)
            raise ActionError(f"Jira issue {key} has no transition {self.settings.done_transition!r} (has {names}): "
                              "set done_transition", permanent=True)
        self._request("POST", f"/rest/api/3/issue/{key}/comment",
                      json={"body": _adf("Postern: a rescan confirmed the fix; closing.")})
        self._request("POST", f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": done["id"]}})
        step.tickets.record(TRACKER, step.fingerprint, key, is_open=False)
        return {"closed": key}

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
