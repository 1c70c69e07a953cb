"""One POST to a notification webhook, with the answers every such service shares turned into ActionErrors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from connector.respond.actions.base import ActionError


def post_json(client: httpx.Client, url: str, body: Any, where: str, *,
              headers: dict[str, str] | None = None, content: bytes | None = None) -> httpx.Response:
    """2xx or an ActionError: 429/503 wait (Retry-After), other 5xx retry, 4xx are permanent (a bad URL or card)."""
    try:
        if content is not None:
            response = client.post(url, content=content, headers=headers)
        else:
            response = client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ActionError(f"{where}: {exc}") from None
    if response.status_code in {429, 503}:
        raise ActionError(f"{where}: {response.status_code}, asked to wait",
                          retry_after=_retry_after(response.headers.get("retry-after")))
    if response.status_code >= 500:
        raise ActionError(f"{where}: {response.status_code}")
    if response.status_code >= 300:
        raise ActionError(f"{where}: {response.status_code}: {response.text[:200]!r}", permanent=True)
    return response


def _retry_after(value: str | None) -> timedelta:
    try:
        return timedelta(seconds=float(value or 30))
    except ValueError:
        return timedelta(seconds=30)
