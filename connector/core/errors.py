"""One exception hierarchy: every error a user can see carries the context needed to act on it."""

from __future__ import annotations

from pydantic import ValidationError


class ConnectorError(Exception):
    """Base for errors the connector reports to its user as a one-line message."""


class ConfigError(ConnectorError):
    """A configuration, catalog or mapping file is invalid; the message names the file and the field."""


class ProbeError(ConnectorError):
    """A check could not observe its target (unreachable, timed out, not the expected protocol).

    The engine turns it into an explicit error finding instead of a traceback or a silent gap. ``kind`` lets a
    check tell "nothing listens here" (itself a finding for some rules) from "the host cannot be reached".
    """

    def __init__(self, message: str, *, kind: str = "unreachable") -> None:
        super().__init__(message)
        self.kind = kind  # dns | refused | timeout | tls | protocol | unreachable | resource (ours)


class NotApplicable(ConnectorError):
    """A check asked for does not apply to this target (an e-mail check on a name that handles no mail).

    The engine turns it into one ``not_applicable`` finding with the reason, so a check never skips silently.
    """


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, with the path into the document, instead of pydantic's multi-line dump."""
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(document)"
        problems.append(f"{location}: {error['msg']}")
    return "; ".join(problems)
