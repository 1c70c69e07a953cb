"""Splunk-side setup and verification through the management port, with the official splunk-sdk (splunklib).

``setup`` makes sure the target index and the HEC input exist and agree with the sink's configuration;
``verify`` searches for the events of a scan and compares the count with what the connector sent.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import splunklib.binding as splunk_binding
import splunklib.client as splunk_client
import splunklib.results as splunk_results

from connector.core.errors import ConfigError, ConnectorError
from connector.delivery.sinks.base import SetupStep
from connector.delivery.sinks.splunk_hec.sink import SplunkHecSettings

INPUT_NAME = "postern"


def connect(settings: SplunkHecSettings) -> Any:
    management = settings.management
    if management is None:
        raise ConfigError(f"sink {settings.name}: add a management block (url, username/password or token)")
    parts = urlsplit(str(management.url))
    options: dict[str, Any] = {
        "host": parts.hostname, "port": parts.port or 8089, "scheme": parts.scheme, "autologin": True,
        "verify": management.verify_tls,
    }
    if parts.scheme == "https" and management.verify_tls:
        cafile = str(management.ca_bundle) if management.ca_bundle else None
        options["context"] = ssl.create_default_context(cafile=cafile)
    if management.token is not None:
        options["splunkToken"] = management.token.get_secret_value()
    else:
        assert management.username is not None and management.password is not None
        options["username"] = management.username
        options["password"] = management.password.get_secret_value()
    try:
        return splunk_client.connect(**options)
    except splunk_binding.AuthenticationError as exc:
        raise ConnectorError(f"Splunk management login failed: {exc}") from None
    except (splunk_binding.HTTPError, OSError) as exc:
        raise ConnectorError(f"cannot reach Splunk management at {management.url}: {exc}") from None


def setup(settings: SplunkHecSettings) -> tuple[list[SetupStep], str | None]:
    """Create or check the index and HEC input; returns the steps and a newly created token, if any."""
    service = connect(settings)
    index = settings.index or "postern"
    steps = []
    try:
        if index in service.indexes:
            steps.append(SetupStep(f"index {index}", "exists"))
        else:
            service.indexes.create(index)
            steps.append(SetupStep(f"index {index}", "created"))
        inputs = {entity.name: entity for entity in service.inputs.list("http")}
        configured = settings.token.get_secret_value()
        matching = [entity for entity in inputs.values() if entity.content.get("token") == configured]
        new_token = None
        if matching:
            entity = matching[0]
            problems = _input_problems(entity.content, index, settings)
            steps.append(SetupStep(f"HEC input {entity.name}", "matches the sink" if not problems
                                   else "differs: " + "; ".join(problems)))
        elif INPUT_NAME in inputs:
            steps.append(SetupStep(f"HEC input {INPUT_NAME}", "exists, but its token is not the configured one"))
        else:
            created = service.inputs.create(INPUT_NAME, "http", index=index, sourcetype=settings.sourcetype,
                                            useACK="1" if settings.ack else "0")
            new_token = created.content.get("token")
            steps.append(SetupStep(f"HEC input {INPUT_NAME}", "created"))
    except splunk_binding.HTTPError as exc:
        raise ConnectorError(f"Splunk setup failed after {len(steps)} step(s): {exc}") from None
    return steps, new_token


def _input_problems(content: dict[str, Any], index: str, settings: SplunkHecSettings) -> list[str]:
    problems = []
    allowed = content.get("indexes") or []
    allowed = [allowed] if isinstance(allowed, str) else list(allowed)
    if content.get("index") not in (None, "", index) and index not in allowed:
        problems.append(f"its default index is {content.get('index')}, the sink writes to {index}")
    if str(content.get("disabled", "0")) in ("1", "true"):
        problems.append("the input is disabled")
    if settings.ack and str(content.get("useACK", "0")) not in ("1", "true"):
        problems.append("the sink expects indexer acknowledgement but the input has useACK off")
    return problems


def count_events(settings: SplunkHecSettings, scan_ids: list[str]) -> dict[str, int]:
    """How many events of each scan Splunk has indexed, in every index and sourcetype the sink's routes use."""
    service = connect(settings)
    indexes = sorted({settings.index or "postern"} | {route.index for route in settings.routes if route.index})
    sourcetypes = sorted({settings.sourcetype} | {route.sourcetype for route in settings.routes if route.sourcetype})
    counts = dict.fromkeys(scan_ids, 0)
    for scan_id in scan_ids:
        for index in indexes:
            for sourcetype in sourcetypes:
                query = (f"search index={_quote(index)} sourcetype={_quote(sourcetype)} "
                         f"postern.scan_id={_quote(scan_id)} | stats count")
                try:
                    stream = service.jobs.oneshot(query, output_mode="json")
                except splunk_binding.HTTPError as exc:
                    raise ConnectorError(f"Splunk search failed: {exc}") from None
                rows = [row for row in splunk_results.JSONResultsReader(stream) if isinstance(row, dict)]
                counts[scan_id] += int(rows[0].get("count", 0)) if rows else 0
    return counts


def _quote(value: str) -> str:
    """A search-language string literal: backslashes and quotes escaped, so a value cannot change the query."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
