"""SIEM-side setup and verification: Splunk (splunk-sdk) and Elasticsearch (templates, ILM, pipeline)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SetupStep:
    """One thing a setup command installed or checked, as printed to the user."""

    what: str
    outcome: str
