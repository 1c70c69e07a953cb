"""From a queued callback to planned steps: which playbooks match which findings, and what the guardrails allow.

The receiver queues each callback as one ``playbooks.plan`` job; a worker runs ``PlaybookEngine.plan_callback`` on
it. For every finding row of the callback and every matching playbook, each step is either queued (``auto``),
queued to wait for approval (``approve``), audited only (``dry_run``), or skipped with the guardrail that stopped it.
Guardrails count runs in a ledger beside the queue, so a storm of callbacks about one finding becomes one run,
however many SIEM alerts fire.

Crash safety: step jobs are keyed by (callback, playbook, finding, step) and enqueued before the run is recorded in
the ledger. A plan job re-run after a crash re-enqueues nothing (the keys exist) and does not count its own earlier
run against the cooldown, so nothing is lost and nothing runs twice.
"""

from __future__ import annotations

import fnmatch
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from connector.core.errors import ConfigError
from connector.respond.approvals import ApprovalSigner
from connector.respond.playbooks import WEEKDAYS, Mode, Playbook, field_value, render
from connector.respond.queue import ActionQueue, Job
from connector.respond.verdicts import Verdict, VerdictStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS playbook_runs (
    playbook TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    asset TEXT NOT NULL,
    callback TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (playbook, fingerprint, callback)
);
CREATE INDEX IF NOT EXISTS playbook_runs_by_time ON playbook_runs (playbook, at);
CREATE TABLE IF NOT EXISTS resolutions (
    fingerprint TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS resolutions_by_fingerprint ON resolutions (fingerprint, at);
"""
FOLLOW_UP = "follow_up"  # the job parameter of a step that waits (``after``) or re-issues itself (``repeat``)


class Decision(StrEnum):
    QUEUED = "queued"
    AWAITING_APPROVAL = "awaiting_approval"
    DRY_RUN = "dry_run"
    SKIPPED = "skipped"
    RECORDED = "recorded"  # an analyst's verdict, stored


@dataclass(frozen=True)
class PlannedStep:
    playbook: str
    step: int
    action: str
    params: dict[str, Any]
    fingerprint: str
    asset: str
    decision: Decision
    reason: str
    job_key: str | None = None


class RunLedger:
    """How often each playbook ran, per finding and per asset: what the guardrails count."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"playbook ledger {path}: {exc}") from None

    def runs_since(self, playbook: str, since: datetime, asset: str | None = None) -> int:
        query = "SELECT COUNT(*) FROM playbook_runs WHERE playbook = ? AND at >= ?"
        args: tuple[Any, ...] = (playbook, since.timestamp())
        if asset is not None:
            query, args = query + " AND asset = ?", (*args, asset)
        with self._lock:
            return int(self._db.execute(query, args).fetchone()[0])

    def last_run(self, playbook: str, fingerprint: str, other_than: str) -> datetime | None:
        with self._lock:
            row = self._db.execute("SELECT MAX(at) FROM playbook_runs WHERE playbook = ? AND fingerprint = ? "
                                   "AND callback != ?", (playbook, fingerprint, other_than)).fetchone()
        return None if row[0] is None else datetime.fromtimestamp(row[0], UTC)

    def record(self, playbook: str, fingerprint: str, asset: str, callback: str, at: datetime) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO playbook_runs (playbook, fingerprint, asset, callback, at) "
                             "VALUES (?, ?, ?, ?, ?)", (playbook, fingerprint, asset, callback, at.timestamp()))

    def record_resolution(self, fingerprint: str, at: datetime) -> None:
        """A finding's resolution, as a callback told it: kept through a reopening, so the follow-ups of the
        episode it ended stay stopped while the new episode's run."""
        with self._lock:
            self._db.execute("INSERT INTO resolutions (fingerprint, at) VALUES (?, ?)", (fingerprint, at.timestamp()))

    def resolved_since(self, fingerprint: str, since: datetime) -> datetime | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(at) FROM resolutions WHERE fingerprint = ? AND at >= ?",
                                   (fingerprint, since.timestamp())).fetchone()
        return None if row[0] is None else datetime.fromtimestamp(row[0], UTC)


class PlaybookEngine:
    def __init__(self, playbooks: Sequence[Playbook], queue: ActionQueue, ledger: RunLedger,
                 verdicts: VerdictStore, *, killed: Callable[[], bool] = lambda: False,
                 approvals: ApprovalSigner | None = None) -> None:
        self.playbooks = list(playbooks)
        self.queue = queue
        self.ledger = ledger
        self.verdicts = verdicts
        self.killed = killed  # the global kill switch, read at every plan
        self.approvals = approvals

    def plan_callback(self, job: Job, now: datetime) -> list[PlannedStep]:
        """Plan (and queue) the steps for every finding of one queued callback."""
        source, kind = str(job.params["source"]), str(job.params["kind"])
        payload = job.params["payload"]
        if kind == "feedback":
            return [self._record_verdict(payload, now)]
        if kind == "soar":
            return [self._requested_action(payload, job.idempotency_key, now)]
        planned: list[PlannedStep] = []
        for finding in callback_findings(kind, payload):
            fingerprint = field_value(finding, "postern.fingerprint")
            if fingerprint and field_value(finding, "postern.lifecycle.change") == "resolved":
                self.ledger.record_resolution(str(fingerprint), now)
            for playbook in self.playbooks:
                if playbook.matches(finding, source, kind):
                    planned += self._plan_one(playbook, finding, job.idempotency_key, now)
        return planned

    def _plan_one(self, playbook: Playbook, finding: Mapping[str, Any], callback: str,
                  now: datetime) -> list[PlannedStep]:
        fingerprint = str(field_value(finding, "postern.fingerprint") or "")
        asset = str(field_value(finding, "postern.asset.id") or field_value(finding, "url.domain") or "")
        blocked = self._guardrail(playbook, fingerprint, asset, callback, now)
        run = run_key(callback, playbook.name, fingerprint)
        waits = any((step.mode or playbook.mode) is Mode.APPROVE for step in playbook.steps)
        extra = {"approval_url": self.approvals.link(run, now)} if waits and self.approvals else {}
        steps: list[PlannedStep] = []
        for index, step in enumerate(playbook.steps):
            mode = step.mode or playbook.mode
            try:
                params = render(step.params, finding, extra)
                follow_up = None if step.after is None and step.repeat is None else {
                    "since": now.isoformat(), "round": 0, "repeat": None if step.repeat is None else {
                        "every": step.repeat.every.total_seconds(), "times": step.repeat.times,
                        "tiers": render({"tiers": step.repeat.tiers}, finding)["tiers"],
                        "param": step.repeat.param}}
            except TemplateError as exc:
                steps.append(PlannedStep(playbook.name, index, step.action, step.params, fingerprint, asset,
                                         Decision.SKIPPED, f"template error: {exc}"))
                continue
            if blocked:
                steps.append(PlannedStep(playbook.name, index, step.action, params, fingerprint, asset,
                                         Decision.SKIPPED, blocked))
                continue
            if mode is Mode.DRY_RUN:
                steps.append(PlannedStep(playbook.name, index, step.action, params, fingerprint, asset,
                                         Decision.DRY_RUN, "dry run: planned, not executed"))
                continue
            key = f"{run}:{index}"
            approval = mode is Mode.APPROVE
            self.queue.enqueue(key, step.action, {"params": params, "playbook": playbook.name,
                                                  "fingerprint": fingerprint, "asset": asset, FOLLOW_UP: follow_up},
                               not_before=now + step.after if step.after else None, awaiting_approval=approval)
            steps.append(PlannedStep(playbook.name, index, step.action, params, fingerprint, asset,
                                     Decision.AWAITING_APPROVAL if approval else Decision.QUEUED,
                                     "waits for approval" if approval else "queued", key))
        if not blocked and any(step.job_key for step in steps):
            self.ledger.record(playbook.name, fingerprint, asset, callback, now)
        return steps

    def follow_up_stopped(self, job: Job, now: datetime) -> str | None:
        """Why a step that waited (``after``) or re-issues itself (``repeat``) no longer runs: the finding was
        resolved, or a person has seen it, since it was planned; or it is suppressed, or everything is switched
        off. None: it runs."""
        follow_up, fingerprint = job.params.get(FOLLOW_UP), str(job.params.get("fingerprint") or "")
        if not follow_up:
            return None
        if self.killed():
            return "the global kill switch is on"
        since = datetime.fromisoformat(follow_up["since"])
        resolved = self.ledger.resolved_since(fingerprint, since)
        if resolved is not None:
            return f"the finding was resolved at {resolved.isoformat(timespec='seconds')}"
        seen = self.verdicts.reviewed_since(fingerprint, since)
        if seen is not None:
            when = seen.recorded.isoformat(timespec="seconds")
            return f"{seen.verdict.replace('_', ' ')} by {seen.analyst} at {when}"
        return self._suppressed(fingerprint, now)

    def schedule_reissue(self, job: Job, now: datetime) -> bool:
        """Queue the step's next re-issue, to its next contact tier; False when it has none left. Keyed by round,
        so a worker that runs a step twice (a crash before "done") still queues one re-issue."""
        follow_up = job.params.get(FOLLOW_UP) or {}
        repeat = follow_up.get("repeat")
        if not repeat or follow_up["round"] >= repeat["times"]:
            return False
        following = {**follow_up, "round": follow_up["round"] + 1}
        params = dict(job.params.get("params") or {})
        if repeat["tiers"]:
            params[repeat["param"]] = repeat["tiers"][min(following["round"], len(repeat["tiers"])) - 1]
        base = job.idempotency_key.split(":reissue:")[0]
        return self.queue.enqueue(f"{base}:reissue:{following['round']}", job.action,
                                  {**job.params, "params": params, FOLLOW_UP: following},
                                  not_before=now + timedelta(seconds=repeat["every"]))

    def _record_verdict(self, payload: Mapping[str, Any], now: datetime) -> PlannedStep:
        expires = datetime.fromisoformat(payload["expires"]) if payload.get("expires") else None
        self.verdicts.record(Verdict(payload["fingerprint"], payload["verdict"], payload["analyst"],
                                     payload.get("comment", ""), now, expires))
        until = f" until {expires.isoformat()}" if expires else ""
        return PlannedStep("feedback", 0, "verdict", dict(payload), payload["fingerprint"], "", Decision.RECORDED,
                           f"{payload['verdict']} by {payload['analyst']}{until}")

    def _requested_action(self, payload: Mapping[str, Any], callback: str, now: datetime) -> PlannedStep:
        """A SOAR platform asked for one action: the kill switch and suppressions hold, playbook guardrails don't."""
        fingerprint = str(payload.get("fingerprint") or field_value(payload.get("event") or {}, "postern.fingerprint")
                          or "")
        event = payload.get("event") or {}
        asset = str(field_value(event, "postern.asset.id") or payload.get("params", {}).get("asset") or "")
        action, params = str(payload["action"]), dict(payload.get("params") or {})
        blocked = "the global kill switch is on" if self.killed() else self._suppressed(fingerprint, now)
        if blocked:
            return PlannedStep("soar", 0, action, params, fingerprint, asset, Decision.SKIPPED, blocked)
        key = f"{callback}:{action}"
        self.queue.enqueue(key, action, {"params": params, "playbook": None, "fingerprint": fingerprint,
                                         "asset": asset})
        return PlannedStep("soar", 0, action, params, fingerprint, asset, Decision.QUEUED, "queued", key)

    def _suppressed(self, fingerprint: str, now: datetime) -> str | None:
        verdict = self.verdicts.suppression(fingerprint, now) if fingerprint else None
        if verdict is None:
            return None
        until = f" until {verdict.expires.isoformat()}" if verdict.expires else ""
        return f"suppressed: {verdict.verdict} by {verdict.analyst}{until}"

    def _guardrail(self, playbook: Playbook, fingerprint: str, asset: str, callback: str,
                   now: datetime) -> str | None:
        """The reason the guardrails stop this run, or None."""
        rails = playbook.guardrails
        if self.killed():
            return "the global kill switch is on"
        if not fingerprint:
            return "the event carries no postern.fingerprint: nothing to act on or deduplicate"
        if suppressed := self._suppressed(fingerprint, now):
            return suppressed
        if rails.window is not None:
            day, moment = WEEKDAYS[now.weekday()], now.time()
            if day not in rails.window.days or not rails.window.start <= moment <= rails.window.end:
                return "outside the playbook's time window"
        if rails.allowed_targets and not any(fnmatch.fnmatchcase(asset, glob) for glob in rails.allowed_targets):
            return f"asset {asset!r} is not among the playbook's allowed targets"
        last = self.ledger.last_run(playbook.name, fingerprint, other_than=callback)
        if last is not None and now - last < rails.cooldown:
            return f"cooldown: ran for this finding {_ago(now - last)} ago"
        hour_ago = now - timedelta(hours=1)
        if self.ledger.runs_since(playbook.name, hour_ago, asset) >= rails.max_runs_per_asset_per_hour:
            return f"{rails.max_runs_per_asset_per_hour} runs on asset {asset!r} in the last hour"
        if self.ledger.runs_since(playbook.name, hour_ago) >= rails.max_runs_per_hour:
            return f"{rails.max_runs_per_hour} runs in the last hour"
        return None


def run_key(callback: str, playbook: str, fingerprint: str) -> str:
    """One playbook's run for one finding of one callback: its steps' keys extend it, an approval link names it."""
    return f"{callback}:{playbook}:{fingerprint}"


def callback_findings(kind: str, payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The finding rows a callback carries, whichever sender shaped it."""
    if kind == "splunk":
        rows = payload.get("results") or [payload.get("result") or {}]
    elif kind == "elastic":
        rows = [*payload.get("alerts", []), *payload.get("hits", [])]
        rows = [row.get("_source", row) if isinstance(row, Mapping) else row for row in rows]
    else:
        rows = []
    return [row for row in rows if isinstance(row, Mapping)]


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
