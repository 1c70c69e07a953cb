"""Playbooks are data: one YAML file each in playbooks/, validated at load with errors at file:line.

A playbook says when it runs (``trigger``: source, rule-id globs, minimum severity, asset criticality, owner and
tags, lifecycle), on which findings (``conditions``: a list of comparisons, all of which must hold, over the
finding's fields: no expression is ever evaluated), what it does (``steps``: actions with parameters, rendered by a
sandboxed Jinja2 over the finding), how (``mode``: auto, approve or dry_run) and how often at most
(``guardrails``). The fields are the ECS names the SIEM shows (``rule.id``, ``postern.asset.owner``...), so an
analyst reads a playbook against an event they already know.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connector.core.errors import ConfigError
from connector.core.model import Criticality, Severity, Status, is_advisory
from connector.core.units import Duration
from connector.core.yamlio import load_yaml
from connector.respond.actions import action_types

_T = TypeVar("_T")
_TEMPLATES = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class Mode(StrEnum):
    AUTO = "auto"
    APPROVE = "approve"  # each step waits for `connector respond approve JOB` or a signed approval link
    DRY_RUN = "dry_run"  # planned and audited, never executed


class Lifecycle(StrEnum):
    """``postern.lifecycle.change`` of a finding's transition event (connector/normalise/lifecycle.py)."""

    OPENED = "opened"
    REOPENED = "reopened"
    CHANGED = "changed"
    RESOLVED = "resolved"


class Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(default_factory=list, description="source names or kinds; none: any")
    rules: list[str] = Field(default_factory=lambda: ["*"], min_length=1, description="rule-id globs")
    min_severity: Severity = Severity.INFO
    criticality: list[Criticality] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list, description="owner globs")
    tags: list[str] = Field(default_factory=list, description="any of these asset tags")
    lifecycle: list[Lifecycle] = Field(default_factory=list, description="transitions to act on; none: any event, "
                                                                         "the per-scan state events included")
    advisories: bool = Field(default=False, description="also info-severity failures (CAA absent...), which are "
                                                        "events but not alerts")


Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not_in", "contains", "matches", "exists"]


class Condition(BaseModel):
    """``{field: postern.days_left, op: "<=", value: 14}``: a comparison, never code."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(pattern=r"^[A-Za-z0-9_@.]+$")
    op: Operator
    value: Any = None

    @model_validator(mode="after")
    def _value_fits(self) -> Self:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"{self.op} needs a list value")
        if self.op == "matches":
            try:
                re.compile(str(self.value))
            except re.error as exc:
                raise ValueError(f"matches: invalid regular expression: {exc}") from None
        if self.op == "exists" and not isinstance(self.value, bool):
            raise ValueError("exists takes true or false")
        return self

    def holds(self, finding: Mapping[str, Any]) -> bool:
        actual = field_value(finding, self.field)
        if self.op == "exists":
            return (actual is not None) is bool(self.value)
        if actual is None:
            return self.op in {"!=", "not_in"}
        if isinstance(self.value, int | float) and isinstance(actual, str):
            try:
                actual = float(actual)  # Splunk sends every field as a string
            except ValueError:
                return False
        try:
            return _compare(self.op, actual, self.value)
        except TypeError:
            return False  # a string against a number: the finding does not match, it is not an error


def _compiled(templates: _T) -> _T:
    """``templates`` unchanged, once every string in it compiles."""
    for text in _strings(templates):
        try:
            _TEMPLATES.from_string(text)
        except TemplateError as exc:
            raise ValueError(f"template {text!r}: {exc}") from None
    return templates


class Repeat(BaseModel):
    """Re-issue a step while its finding stays open: every ``every``, at most ``times`` more, each time to the next
    contact tier. It stops when the finding is resolved or a person acknowledges it (any verdict after the first
    notice), so a notice nobody acts on escalates instead of repeating to the same inbox forever."""

    model_config = ConfigDict(extra="forbid")

    every: Duration
    times: int = Field(default=5, ge=1, le=100, description="re-issues at most, after the first")
    tiers: list[str] = Field(default_factory=list, description="who each re-issue goes to, in order (templates); "
                                                                "the last tier keeps being used; none: the same")
    param: str = Field(default="to", description="the step parameter a tier fills")

    @field_validator("tiers")
    @classmethod
    def _templates_compile(cls, tiers: list[str]) -> list[str]:
        return _compiled(tiers)

    @field_validator("every")
    @classmethod
    def _not_a_storm(cls, every: timedelta) -> timedelta:
        if every < timedelta(minutes=5):
            raise ValueError("re-issuing more often than every 5 minutes is a storm, not a reminder")
        return every


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern=r"^[a-z][a-z0-9_.]{0,63}$")
    params: dict[str, Any] = Field(default_factory=dict)
    mode: Mode | None = Field(default=None, description="overrides the playbook's mode for this step")
    after: Duration | None = Field(default=None, description="wait this long first, and run only if the finding "
                                                              "is still open and nobody has acknowledged it")
    repeat: Repeat | None = None

    @field_validator("params")
    @classmethod
    def _templates_compile(cls, params: dict[str, Any]) -> dict[str, Any]:
        return _compiled(params)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order


class Window(BaseModel):
    """When automatic steps may run (UTC); outside it they are skipped and audited, never silently deferred."""

    model_config = ConfigDict(extra="forbid")

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS))
    start: time = time(0, 0)
    end: time = time(23, 59, 59)


class Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_runs_per_hour: int = Field(default=60, ge=1)
    max_runs_per_asset_per_hour: int = Field(default=5, ge=1)
    cooldown: Duration = Field(default=timedelta(hours=1), description="per finding: a storm becomes one run")
    window: Window | None = None
    allowed_targets: list[str] = Field(default_factory=list,
                                       description="host globs the steps may act on; none: any asset")


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str = ""
    trigger: Trigger = Field(default_factory=Trigger)
    conditions: list[Condition] = Field(default_factory=list)
    mode: Mode = Mode.AUTO
    steps: list[Step] = Field(min_length=1)
    guardrails: Guardrails = Field(default_factory=Guardrails)

    def matches(self, finding: Mapping[str, Any], source: str, source_kind: str) -> bool:
        trigger = self.trigger
        rule = str(field_value(finding, "rule.id") or "")
        severity = _severity(field_value(finding, "postern.severity"))
        criticality = field_value(finding, "postern.asset.criticality")
        owner = str(field_value(finding, "postern.asset.owner") or "")
        tags = field_value(finding, "postern.asset.tags") or []
        lifecycle = field_value(finding, "postern.lifecycle.change")
        status = _status(field_value(finding, "postern.status"))
        if not trigger.advisories and severity is not None and status is not None and is_advisory(status, severity):
            return False
        return (
            (not trigger.sources or source in trigger.sources or source_kind in trigger.sources)
            and any(fnmatch.fnmatchcase(rule, glob) for glob in trigger.rules)
            and severity is not None and severity.rank >= trigger.min_severity.rank
            and (not trigger.criticality or criticality in trigger.criticality)
            and (not trigger.owners or any(fnmatch.fnmatchcase(owner, glob) for glob in trigger.owners))
            and (not trigger.tags or bool(set(_as_list(tags)) & set(trigger.tags)))
            and (not trigger.lifecycle or lifecycle in trigger.lifecycle)
            and all(condition.holds(finding) for condition in self.conditions)
        )


def render(params: Mapping[str, Any], finding: Mapping[str, Any],
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The step's parameters with every string rendered over the finding (sandboxed; undefined fields fail);
    ``extra`` adds what the run knows besides the finding (``approval_url``)."""
    context = {**(extra or {}), "finding": finding, "field": lambda name: field_value(finding, name)}

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _TEMPLATES.from_string(value).render(context)
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        return value

    return {key: walk(value) for key, value in params.items()}


def field_value(finding: Mapping[str, Any], name: str) -> Any:
    """A field by its ECS name, from a flat row (Splunk: ``rule.id`` as a key) or a nested document (Kibana)."""
    if name in finding:
        return finding[name]
    value: Any = finding
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def load_playbooks(directory: Path) -> list[Playbook]:
    """Every ``*.yaml`` in ``directory``; all problems of all files in one error, each at file:line."""
    playbooks: list[Playbook] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            playbooks.append(load_playbook(path))
        except ConfigError as exc:
            problems.append(str(exc))
    names = [playbook.name for playbook in playbooks]
    problems += [f"{directory}: playbook name {name!r} is used twice" for name in sorted(set(names))
                 if names.count(name) > 1]
    if problems:
        raise ConfigError("\n".join(problems))
    return playbooks


def load_playbook(path: Path) -> Playbook:
    document = load_yaml(path)
    try:
        playbook = Playbook.model_validate(document)
    except ValidationError as exc:
        lines = _lines(path)
        raise ConfigError("\n".join(
            f"{path}:{_line_of(lines, error['loc'])}: {'.'.join(map(str, error['loc'])) or '(document)'}: "
            f"{error['msg']}" for error in exc.errors())) from None
    known = action_types()
    unknown = [(index, step.action) for index, step in enumerate(playbook.steps) if step.action not in known]
    if unknown:  # else the step would wait forever for an action no configuration can provide
        lines = _lines(path)
        raise ConfigError("\n".join(
            f"{path}:{_line_of(lines, ('steps', index, 'action'))}: steps.{index}.action: unknown action "
            f"{action!r} (known: {', '.join(sorted(known))})" for index, action in unknown))
    return playbook


def _lines(path: Path) -> dict[tuple[Any, ...], int]:
    """Where each key and list item starts, by its path in the document (1-based lines)."""
    positions: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, at: tuple[Any, ...]) -> None:
        positions[at] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                positions[(*at, key.value)] = key.start_mark.line + 1
                walk(value, (*at, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*at, index))

    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return positions


def _line_of(lines: Mapping[tuple[Any, ...], int], location: Sequence[Any]) -> int:
    at = tuple(location)
    while at and at not in lines:
        at = at[:-1]
    return lines.get(at, 1)


def _compare(op: str, actual: Any, expected: Any) -> bool:
    match op:
        case "==":
            return bool(actual == expected)
        case "!=":
            return bool(actual != expected)
        case "<":
            return bool(actual < expected)
        case "<=":
            return bool(actual <= expected)
        case ">":
            return bool(actual > expected)
        case ">=":
            return bool(actual >= expected)
        case "in":
            return actual in expected
        case "not_in":
            return actual not in expected
        case "contains":
            return expected in _as_list(actual) if not isinstance(actual, str) else str(expected) in actual
        case "matches":
            return re.search(str(expected), str(actual)) is not None
    raise TypeError(op)


def _status(value: Any) -> Status | None:
    try:
        return Status(str(value).lower())
    except ValueError:
        return None


def _severity(value: Any) -> Severity | None:
    try:
        return Severity(str(value).lower())
    except ValueError:
        return None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
