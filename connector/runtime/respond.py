"""The SOAR half, wired: receiver -> action queue -> playbook engine -> step jobs, audited through the pipeline.

One process hosts the receiver (uvicorn, on the event loop) and the planner (a thread claiming ``playbooks.plan``
jobs). Step jobs wait in the queue for their action's worker; an action with no worker yet stays pending and
visible in ``connector respond jobs list``, never dropped.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from connector.core.audit import Auditor, AuditRecord, Outcome
from connector.core.clock import utc_now
from connector.core.errors import ConnectorError
from connector.core.resources import playbooks_dir
from connector.respond.engine import Decision, PlannedStep, PlaybookEngine, RunLedger
from connector.respond.playbooks import load_playbooks
from connector.respond.queue import ActionQueue, Job
from connector.respond.receiver import PLAN_ACTION, build_app, server
from connector.respond.settings import RespondConfig

log = logging.getLogger(__name__)

KILL_SWITCH_FILE = "respond.disabled"
_STEP_ACTIONS = {Decision.QUEUED: "playbook-step-queued", Decision.AWAITING_APPROVAL: "playbook-step-awaiting-approval",
                 Decision.DRY_RUN: "playbook-step-dry-run", Decision.SKIPPED: "playbook-step-skipped"}


def open_queue(config: RespondConfig, state_dir: Path) -> ActionQueue:
    return ActionQueue(state_dir / "actions.sqlite", config.queue)


class Responder:
    def __init__(self, config: RespondConfig, state_dir: Path, auditor: Auditor) -> None:
        self.config = config
        self.auditor = auditor
        self.queue = open_queue(config, state_dir)
        kill_file = state_dir / KILL_SWITCH_FILE
        self.engine = PlaybookEngine(load_playbooks(config.playbooks or playbooks_dir()), self.queue,
                                     RunLedger(state_dir / "playbook-runs.sqlite"),
                                     killed=lambda: config.kill_switch or kill_file.exists())
        self.server = server(build_app(config, self.queue, auditor), config)
        self._stopping = threading.Event()

    def serve(self) -> None:
        """Until SIGTERM or SIGINT (uvicorn handles both); the planner stops with the receiver."""
        planner = threading.Thread(target=self._plan_forever, name="planner", daemon=True)
        planner.start()
        try:
            self.server.run()
        finally:
            self._stopping.set()
            planner.join(10)

    def plan_pending(self) -> int:
        """Plan every queued callback now; the number planned."""
        planned = 0
        while (job := self.queue.claim("planner", [PLAN_ACTION])) is not None:
            self._plan(job)
            planned += 1
        return planned

    def _plan_forever(self) -> None:
        while not self._stopping.is_set():
            if not self.plan_pending():
                self._stopping.wait(0.2)

    def _plan(self, job: Job) -> None:
        try:
            steps = self.engine.plan_callback(job, utc_now())
            self.auditor.audit([_step_record(job, step) for step in steps])
        except ConnectorError as exc:
            log.error("planning callback %s failed: %s", job.idempotency_key, exc)  # noqa: TRY400 - one line
            self.queue.fail(job.id, str(exc))
            return
        self.queue.complete(job.id, {"steps": len(steps)})


def _step_record(job: Job, step: PlannedStep) -> AuditRecord:
    outcome = Outcome.UNKNOWN if step.decision is Decision.SKIPPED else Outcome.SUCCESS
    return AuditRecord(_STEP_ACTIONS[step.decision], outcome, step.reason, {
        "callback": job.idempotency_key, "playbook": step.playbook, "step": step.step, "action": step.action,
        "fingerprint": step.fingerprint, "asset": step.asset, "job": step.job_key})
