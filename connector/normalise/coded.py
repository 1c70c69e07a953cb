"""What the events written in code (audit, asset, drift, dependency) share with the findings the mapping files
encode: the ECS version, the observer fields and the timestamp format, so every kind of event sorts and
groups alike in the SIEM."""

from __future__ import annotations

from typing import Any

from connector.normalise.fieldmap import iso8601_datetime as timestamp

__all__ = ["ECS_VERSION", "observer", "timestamp"]

ECS_VERSION = "9.4.0"


def observer(connector: dict[str, str]) -> dict[str, Any]:
    return {"vendor": "Postern", "product": "Posture Connector", "type": "posture-scanner",
            "version": connector["version"], "hostname": connector["hostname"], "name": connector["name"]}
