"""Actions: what a playbook step does. One module per action, registered by defining ``ACTION`` (an Action subclass).

Only low-risk actions: none changes the scanned systems. ``respond.actions:`` in the configuration holds each
action's settings, validated against its settings model, so a new action is one new module here.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeGuard

from pydantic import ValidationError

from connector.core.errors import ConfigError, format_validation_error
from connector.core.registry import discover
from connector.respond.actions.base import Action

ActionClass = type[Action[Any]]


def _is_action(value: object) -> TypeGuard[ActionClass]:
    return isinstance(value, type) and issubclass(value, Action)


def _action_name(action: ActionClass) -> str:
    return action.name


@cache
def action_types() -> dict[str, ActionClass]:
    return discover(__name__, "ACTION", _is_action, _action_name)


def build_actions(settings: dict[str, dict[str, Any]]) -> dict[str, Action[Any]]:
    """The configured actions, ready to run; unknown names and invalid settings fail at start, naming the field."""
    built: dict[str, Action[Any]] = {}
    for name, entry in settings.items():
        action = action_types().get(name)
        if action is None:
            raise ConfigError(f"respond.actions.{name}: unknown action (known: {', '.join(action_types())})")
        try:
            built[name] = action(action.settings_model.model_validate(entry or {}))
        except ValidationError as exc:
            raise ConfigError(f"respond.actions.{name}: {format_validation_error(exc)}") from None
    return built
