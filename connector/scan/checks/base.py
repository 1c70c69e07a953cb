"""What a check is: I/O that observes a target, and pure judgement that turns the observation into rule results.

Keeping the two apart (as sslyze does) lets judgement be tested on hand-made observations, and lets checks that
look at the same server share one set of connections through the ScanContext.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from connector.core.errors import ConfigError, format_validation_error
from connector.core.model import Asset, CheckOutcome, Target
from connector.core.yamlio import load_yaml
from connector.scan.context import ScanContext

ObservationT = TypeVar("ObservationT")
SettingsT = TypeVar("SettingsT", bound=BaseModel)


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_data_file(model: type[ModelT], path: Path) -> ModelT:
    """A check's data file (mappings/ports.yaml, exposure.yaml, takeover.yaml...), validated and read once."""
    loaded = _load_data_file(model, path)
    assert isinstance(loaded, model)
    return loaded


def check_loads(load: Callable[[], object]) -> None:
    """For a settings validator: a broken data file is a configuration error, reported when the config loads."""
    try:
        load()
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


@cache
def _load_data_file(model: type[BaseModel], path: Path) -> BaseModel:
    try:
        return model.model_validate(load_yaml(path))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from None


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Check(ABC, Generic[ObservationT, SettingsT]):
    """Subclass this in a module under ``connector/scan/checks/`` and set ``CHECK`` to an instance to register it."""

    name: ClassVar[str]
    description: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]] = NoSettings

    def targets(self, asset: Asset) -> list[Target]:
        """The targets this check observes on an asset; by default the asset as a whole."""
        return [Target(asset)]

    def not_applicable(self, asset: Asset) -> str:
        """Why ``targets`` found nothing to observe on this asset: the reason its not_applicable event gives."""
        return f"{asset.host} has no target for the {self.name} check"

    @abstractmethod
    async def observe(self, target: Target, ctx: ScanContext, settings: SettingsT) -> ObservationT:
        """Network I/O only (settings bound it: timeouts, crawl depth). Raise ProbeError if it cannot observe."""

    @abstractmethod
    def judge(self, target: Target, observation: ObservationT, settings: SettingsT, now: datetime) -> CheckOutcome:
        """Pure: the rule results (and observed values) for what ``observe`` saw."""


AnyCheck = Check[Any, Any]
