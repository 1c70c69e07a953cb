"""What an action is: settings, and one ``execute`` that either finishes, or says whether a retry can help.

Actions do not retry, queue or deduplicate; the action queue (respond/queue.py) owns those guarantees for all of
them. An action that creates something outside (a ticket, a page) records it with ``step.effects.record`` before
it returns or fails, and reads ``step.effects.get`` first, so a re-run after a crash continues instead of repeating.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from connector.core.errors import ConnectorError
from connector.core.events import Rescanner
from connector.respond.tickets import TicketLedger
from connector.respond.verdicts import VerdictStore


class ActionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


SettingsT = TypeVar("SettingsT", bound=ActionSettings)


class ActionError(ConnectorError):
    """The step failed; ``permanent`` when retrying cannot help (bad credentials, a refused recipient)."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Effects(Protocol):
    """The job's journal of what it already did outside, kept durably by the queue."""

    def get(self, name: str) -> dict[str, Any] | None: ...

    def record(self, name: str, value: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class StepContext:
    """What a step acts on, and the journals that keep it from acting twice."""

    fingerprint: str
    asset: str
    playbook: str | None
    effects: Effects
    tickets: TicketLedger
    rescanner: Rescanner | None = None  # injected by the runtime; None where nothing can be scanned
    job_key: str = ""  # the step's idempotency key: stable across its retries
    verdicts: VerdictStore | None = None


class Action(ABC, Generic[SettingsT]):
    name: ClassVar[str]
    settings_model: ClassVar[type[ActionSettings]]

    def __init__(self, settings: SettingsT) -> None:
        self.settings = settings

    @abstractmethod
    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        """Do the step; the result is audited. Raise ActionError on failure."""
