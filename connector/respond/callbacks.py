"""What each sender posts, as strict models, and the key that makes its retries one callback.

Senders retry (Kibana up to three times on 429 and 5xx), so every callback carries a deduplication key taken from
what stays the same across a retry: the ``webhook-id`` of a signed sender, ``rule.id`` + ``alert.uuid`` + ``date``
for Kibana, ``sid`` + a hash of the row for Splunk's built-in Webhook.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

_STRICT = ConfigDict(extra="forbid", str_max_length=65_536)


class SplunkWebhook(BaseModel):
    """Splunk's built-in Webhook alert action: the first result row only (alert_webhook/bin/webhook.py)."""

    model_config = _STRICT

    sid: str = Field(min_length=1)
    search_name: str | None
    app: str
    owner: str
    results_link: str
    result: dict[str, Any]

    def rows(self) -> list[dict[str, Any]]:
        return [self.result]

    def dedup_key(self) -> str:
        return f"{self.sid}:{_digest(self.result)}"


class SplunkAlertAction(BaseModel):
    """TA-postern's ``postern_respond`` alert action: every row of ``results_file``, signed."""

    model_config = _STRICT

    sid: str = Field(min_length=1)
    search_name: str | None
    app: str
    owner: str
    results_link: str
    results: list[dict[str, Any]] = Field(max_length=10_000)

    def rows(self) -> list[dict[str, Any]]:
        return self.results


class KibanaRule(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    name: str = ""


class KibanaAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = ""
    uuid: str = Field(min_length=1)


class KibanaWebhook(BaseModel):
    """The body documented for the Kibana Webhook connector (README): the rule, the alert, and what it matched."""

    model_config = _STRICT

    rule: KibanaRule
    alert: KibanaAlert
    date: str = Field(min_length=1)
    alerts: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)  # Security rules: context.alerts
    hits: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)  # ES-query rules: context.hits

    def rows(self) -> list[dict[str, Any]]:
        return [*self.alerts, *self.hits]

    def dedup_key(self) -> str:
        return f"{self.rule.id}:{self.alert.uuid}:{self.date}"


class ActionRequest(BaseModel):
    """A SOAR platform asks for one action by name, about one finding."""

    # exactly one of the two, as the validator below holds, said in the schema /openapi.json publishes
    model_config = ConfigDict(**_STRICT, json_schema_extra={"oneOf": [
        {"required": ["fingerprint"], "properties": {"fingerprint": {"type": "string"}, "event": {"type": "null"}}},
        {"required": ["event"], "properties": {"event": {"type": "object"}, "fingerprint": {"type": "null"}}},
    ]})

    action: str = Field(pattern=r"^[a-z][a-z0-9_.]{0,63}$")
    fingerprint: str | None = Field(default=None, pattern=r"^[0-9a-f]{16,64}$")
    event: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_a_finding(self) -> Self:
        if (self.fingerprint is None) == (self.event is None):
            raise ValueError("give exactly one of fingerprint and event")
        return self


class Verdict(StrEnum):
    FALSE_POSITIVE = "false_positive"
    ACCEPTED_RISK = "accepted_risk"
    FIXED = "fixed"
    ACKNOWLEDGED = "acknowledged"  # someone is on it: re-issued notices stop; no verdict for the KPIs


class Feedback(BaseModel):
    """An analyst's verdict on a finding, kept for the KPIs (precision, accepted risk) and for suppression."""

    model_config = _STRICT

    fingerprint: str = Field(pattern=r"^[0-9a-f]{16,64}$")
    verdict: Verdict
    analyst: str = Field(min_length=1, max_length=256)
    comment: str = Field(default="", max_length=4096)
    expires: str | None = None


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]
