"""``ticket.jira``: exactly one Jira issue per finding episode, closed when the finding is resolved.

The guards against a second issue are in actions/_tickets.py; Jira's own is a search by the finding's label
``postern-<fingerprint>`` (eventually consistent, hence the last guard). Two flavours, one flow:

- ``cloud``: REST v3, an email and API token (Basic); the description and comments are Atlassian Documents (ADF),
  and the old ``/search`` is removed, so it uses ``/search/jql``.
- ``datacenter`` (Server and Data Center): REST v2, a personal access token (Bearer); the description and comments
  are wiki-markup strings (v2 refuses an ADF object), and search is ``/search``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import AnyHttpUrl, Field, model_validator

from connector.core.units import Duration, Secret
from connector.respond.actions._outbound import Outbound, OutboundActionSettings
from connector.respond.actions._tickets import close_once, open_once
from connector.respond.actions.base import Action, ActionError, StepContext

TRACKER = "jira"


class Flavour(StrEnum):
    CLOUD = "cloud"  # *.atlassian.net: REST v3, ADF, email + API token
    DATACENTER = "datacenter"  # self-hosted Server or Data Center (8.14+ for tokens): REST v2, wiki markup, PAT


class JiraSettings(OutboundActionSettings):
    url: AnyHttpUrl = Field(description="https://your-site.atlassian.net, or your Data Center's base URL")
    flavour: Flavour = Flavour.CLOUD
    email: str | None = Field(default=None, description="cloud: the account the API token belongs to")
    api_token: Secret | None = Field(default=None, description="cloud: an API token")
    personal_access_token: Secret | None = Field(default=None, description="datacenter: a personal access token")
    ca_bundle: Path | None = Field(default=None, description="trust these CAs for the server instead of the system's")
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,9}$")
    issue_type: str = "Task"
    done_transition: str = Field(default="Done", description="the transition that closes an issue")
    timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.flavour is Flavour.CLOUD and (self.email is None or self.api_token is None
                                              or self.personal_access_token is not None):
            raise ValueError("flavour cloud authenticates with email and api_token (a personal_access_token is "
                             "for flavour datacenter)")
        if self.flavour is Flavour.DATACENTER and (self.personal_access_token is None
                                                   or self.email is not None or self.api_token is not None):
            raise ValueError("flavour datacenter authenticates with personal_access_token only (email and "
                             "api_token are for flavour cloud)")
        return self


class JiraAction(Action[JiraSettings]):
    name = "ticket.jira"
    settings_model = JiraSettings

    def __init__(self, settings: JiraSettings) -> None:
        super().__init__(settings)
        cloud = settings.flavour is Flavour.CLOUD
        self.api = "/rest/api/3" if cloud else "/rest/api/2"
        self.search_path = f"{self.api}/search/jql" if cloud else f"{self.api}/search"
        self.text: Callable[[str], Any] = _adf if cloud else str  # v2 takes wiki markup: the text as written
        headers = {"Accept": "application/json"}
        auth: tuple[str, str] | None = None
        if settings.email is not None and settings.api_token is not None:
            auth = (settings.email, settings.api_token.get_secret_value())
        elif settings.personal_access_token is not None:
            headers["Authorization"] = f"Bearer {settings.personal_access_token.get_secret_value()}"
        self.credentials = "email and API token" if cloud else "personal access token"
        self.client = Outbound(self.name, settings.outbound).client(
            ca_bundle=settings.ca_bundle, base_url=str(settings.url).rstrip("/"),
            timeout=settings.timeout.total_seconds(), auth=auth, headers=headers)

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        if params.get("operation") == "close":
            return close_once(step, TRACKER, self._close, params.get("confirm_with"))
        label = f"postern-{step.fingerprint}"

        def search() -> str | None:
            found = self._request("GET", self.search_path, params={
                "jql": f'labels = "{label}" AND statusCategory != Done', "fields": "status"})
            issues = found.json().get("issues") or []
            return str(issues[0]["key"]) if issues else None

        def create() -> str:
            labels = sorted({*(str(item) for item in params.get("labels", []) if " " not in str(item)), label})
            fields = {"project": {"key": self.settings.project}, "issuetype": {"name": self.settings.issue_type},
                      "summary": " ".join(str(params.get("summary") or "Postern finding").split())[:255],
                      "description": self.text(str(params.get("description") or "")), "labels": labels}
            return str(self._request("POST", f"{self.api}/issue", json={"fields": fields}).json()["key"])

        return open_once(step, TRACKER, search, create)

    def _close(self, key: str) -> None:
        transitions = self._request("GET", f"{self.api}/issue/{key}/transitions").json().get("transitions", [])
        done = next((t for t in transitions if t.get("name") == self.settings.done_transition), None)
        if done is None:
            names = sorted(str(t.get("name")) for t in transitions)
            raise ActionError(f"Jira issue {key} has no transition {self.settings.done_transition!r} (has {names}): "
                              "set done_transition", permanent=True)
        self._request("POST", f"{self.api}/issue/{key}/comment",
                      json={"body": self.text("Postern: the finding is resolved; closing.")})
        self._request("POST", f"{self.api}/issue/{key}/transitions", json={"transition": {"id": done["id"]}})

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
            raise ActionError(f"{where}: {response.status_code}: Jira refused the {self.credentials}",
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
