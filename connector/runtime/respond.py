"""The SOAR half, wired: receiver -> action queue -> playbook engine -> step jobs -> actions, all audited.

One process hosts the receiver (uvicorn, on the event loop), the planner (a thread claiming ``playbooks.plan``
jobs) and one worker thread per configured action. A step whose action is not configured stays pending and
visible in ``connector respond jobs list``, never dropped; configuring the action later runs it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from connector.core import metrics
from connector.core.audit import Auditor, AuditRecord, Outcome
from connector.core.clock import utc_now
from connector.core.errors import ConnectorError
from connector.core.events import Rescanner
from connector.core.resources import playbooks_dir
from connector.respond.actions import build_actions
from connector.respond.actions.base import Action, ActionError, StepContext
from connector.respond.approvals import ApprovalSigner
from connector.respond.engine import FOLLOW_UP, Decision, PlannedStep, PlaybookEngine, RunLedger
from connector.respond.playbooks import load_playbooks
from connector.respond.queue import ActionQueue, Job, JobEffects, QueueError
from connector.respond.receiver import PLAN_ACTION, build_app, server
from connector.respond.settings import RespondConfig
from connector.respond.tickets import TicketLedger
from connector.respond.verdicts import VerdictStore

log = logging.getLogger(__name__)

KILL_SWITCH_FILE = "respond.disabled"
# Idle workers wake at once for what this process enqueues (a callback, a planned step); this poll finds the rest:
# retries and re-issues coming due, and approvals given by `connector respond approve` from another process
_POLL_SECONDS = 0.5
_STEP_ACTIONS = {Decision.QUEUED: "playbook-step-queued", Decision.AWAITING_APPROVAL: "playbook-step-awaiting-approval",
                 Decision.DRY_RUN: "playbook-step-dry-run", Decision.SKIPPED: "playbook-step-skipped",
                 Decision.RECORDED: "feedback-recorded"}


def open_queue(config: RespondConfig, state_dir: Path, clock: Callable[[], datetime] = utc_now) -> ActionQueue:
    return ActionQueue(state_dir / "actions.sqlite", config.queue, clock=clock)


class Responder:
    def __init__(self, config: RespondConfig, state_dir: Path, auditor: Auditor,
                 rescanner: Rescanner | None = None, clock: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self.auditor = auditor
        self.rescanner = rescanner
        self.clock = clock  # the queue's too: what is due, and when a waiting step or a re-issue runs
        self.queue = open_queue(config, state_dir, clock)
        kill_file = state_dir / KILL_SWITCH_FILE
        self.engine = PlaybookEngine(load_playbooks(config.playbooks or playbooks_dir()), self.queue,
                                     RunLedger(state_dir / "playbook-runs.sqlite"),
                                     VerdictStore(state_dir / "verdicts.sqlite"),
                                     killed=lambda: config.kill_switch or kill_file.exists(),
                                     approvals=ApprovalSigner(config.approvals, config.approval_ttl)
                                     if config.approvals else None)
        self.actions = build_actions(config.actions)
        self.tickets = TicketLedger(state_dir / "tickets.sqlite")
        self.server = server(build_app(config, self.queue, auditor), config)
        self._stopping = threading.Event()

    def serve(self) -> None:
        """Until SIGTERM or SIGINT (uvicorn handles both); the planner and workers stop with the receiver."""
        workers = self._start_workers()
        try:
            self.server.run()
        finally:
            self._stop_workers(workers)

    def start(self) -> None:
        """Beside the sidecar (``connector run``): the receiver in its own thread, stopped by ``stop``."""
        self._workers = self._start_workers()
        self._receiver = threading.Thread(target=self.server.run, name="receiver", daemon=True)
        self._receiver.start()  # off the main thread, uvicorn leaves the signals to the sidecar

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._receiver.join(timeout)
        self._stop_workers(self._workers)

    def _start_workers(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._plan_forever, name="planner", daemon=True)]
        threads += [threading.Thread(target=self._work_forever, args=(name,), name=f"action:{name}", daemon=True)
                    for name in self.actions]
        for thread in threads:
            thread.start()
        return threads

    def _stop_workers(self, threads: list[threading.Thread]) -> None:
        self._stopping.set()
        self.queue.wake()
        for thread in threads:
            thread.join(10)

    def run_pending(self, name: str) -> int:
        """Run every due job of action ``name`` now; the number run (succeeded or not)."""
        action = self.actions[name]
        ran = 0
        while (job := self.queue.claim(f"action:{name}", [name])) is not None:
            self._run(action, job)
            ran += 1
        return ran

    def _work_forever(self, name: str) -> None:
        while not self._stopping.is_set():
            if not self._survive(lambda: self.run_pending(name)):
                self.queue.wait_for_work(_POLL_SECONDS)

    def _run(self, action: Action[Any], job: Job) -> None:
        details = {"job": job.idempotency_key, "action": job.action, "attempt": job.attempts,
                   "playbook": job.params.get("playbook"), "fingerprint": job.params.get("fingerprint"),
                   "asset": job.params.get("asset")}
        stopped = self.engine.follow_up_stopped(job, self.clock())
        if stopped is not None:
            self.queue.complete(job.id, {"ran": False, "reason": stopped})
            metrics.PLAYBOOK_STEPS.labels(job.action, "skipped").inc()
            self.auditor.audit([AuditRecord("playbook-step-skipped", Outcome.UNKNOWN, f"not run: {stopped}",
                                            {**details, "round": job.params[FOLLOW_UP]["round"]})])
            return
        try:
            step = StepContext(str(job.params.get("fingerprint", "")), str(job.params.get("asset", "")),
                               job.params.get("playbook"), JobEffects(self.queue, job.id), self.tickets,
                               self.rescanner, job.idempotency_key, self.engine.verdicts)
            result = action.execute(job.params.get("params", {}), step)
        except ActionError as exc:
            retrying = self.queue.fail(job.id, str(exc), exc.retry_after, permanent=exc.permanent)
            outcome = "will retry" if retrying else "dead letter: `connector respond jobs retry`"
            self.auditor.audit([AuditRecord("playbook-step-failed", Outcome.FAILURE, f"{exc} ({outcome})",
                                            details)])
            metrics.PLAYBOOK_STEPS.labels(job.action, "failed").inc()
            log.warning("step %s failed (%s): %s", job.idempotency_key, outcome, exc)
            return
        if self.engine.schedule_reissue(job, self.clock()):  # before "done": a crash in between re-runs, never loses it
            result = {**result, "reissue_after_s": job.params[FOLLOW_UP]["repeat"]["every"]}
        self.queue.complete(job.id, result)
        metrics.PLAYBOOK_STEPS.labels(job.action, "succeeded").inc()
        self.auditor.audit([AuditRecord("playbook-step-succeeded", Outcome.SUCCESS, "done",
                                        {**details, "result": result})])

    def plan_pending(self) -> int:
        """Plan every queued callback now, a batch at a time (a crash re-plans the batch: planning is idempotent,
        its step keys exist); the number planned."""
        planned = 0
        while batch := self.queue.claim_many("planner", [PLAN_ACTION]):
            done = {job.id: result for job in batch if (result := self._plan(job)) is not None}
            self.queue.complete_many(done)
            planned += len(batch)
        return planned

    def _plan_forever(self) -> None:
        while not self._stopping.is_set():
            if not self._survive(self.plan_pending):
                self.queue.wait_for_work(_POLL_SECONDS)

    def _survive(self, work: Callable[[], int]) -> int:
        """``work``'s count; a queue that cannot be read or written (a locked file, a database restarting) is
        logged and tried again at the next poll, instead of ending the worker thread and, silently, its work."""
        try:
            return work()
        except QueueError as exc:
            log.error("action queue unavailable, retrying in %g s: %s", _POLL_SECONDS, exc)  # noqa: TRY400
            self._stopping.wait(_POLL_SECONDS)
            return 0

    def _plan(self, job: Job) -> dict[str, int] | None:
        """The planned job's result; None when planning failed and the job is scheduled again."""
        try:
            steps = self.engine.plan_callback(job, self.clock())
            self.auditor.audit([_step_record(job, step) for step in steps])
            for step in steps:
                metrics.PLAYBOOK_STEPS.labels(step.action, step.decision.value).inc()
        except ConnectorError as exc:
            log.error("planning callback %s failed: %s", job.idempotency_key, exc)  # noqa: TRY400 - one line
            self.queue.fail(job.id, str(exc))
            return None
        return {"steps": len(steps)}


def _step_record(job: Job, step: PlannedStep) -> AuditRecord:
    outcome = Outcome.UNKNOWN if step.decision is Decision.SKIPPED else Outcome.SUCCESS
    return AuditRecord(_STEP_ACTIONS[step.decision], outcome, step.reason, {
        "callback": job.idempotency_key, "playbook": step.playbook, "step": step.step, "action": step.action,
        "fingerprint": step.fingerprint, "asset": step.asset, "job": step.job_key})
