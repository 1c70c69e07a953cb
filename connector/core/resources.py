"""Where the shipped data files live: next to the package when installed, at the repository root when developing."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def _data_dir(name: str) -> Path:
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name


def mappings_dir() -> Path:
    return _data_dir("mappings")


def playbooks_dir() -> Path:
    return _data_dir("playbooks")


def migrations_dir() -> Path:
    """Alembic's script directory (env.py, versions/): the schema history of the connector's state. It is code,
    so it lives in the package (not a top-level data directory) and ships with it."""
    return Path(__file__).resolve().parent / "migrations"
