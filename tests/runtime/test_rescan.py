"""The ``rescan`` action through the runtime: a fix is confirmed by a real scan, and only configured assets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.core.catalog import Catalog
from connector.delivery.pipeline import Pipeline
from connector.normalise import Normaliser
from connector.respond.actions.base import ActionError, StepContext
from connector.respond.actions.rescan import RescanAction, RescanSettings
from connector.respond.actions.ticket_jira import JiraAction, JiraSettings
from connector.respond.queue import ActionQueue, JobEffects
from connector.respond.tickets import TicketLedger
from connector.runtime.collector import ConfiguredRescanner
from connector.runtime.config import Config
from emulators.jira import JiraEmulator
from support.delivery import running
from support.pki import Pki, self_signed
from support.sites import site
from support.web import tls_context


def test_a_rescan_runs_the_check_on_the_asset_and_publishes_the_result(pki: Pki, catalog: Catalog,
                                                                        tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with site("rescan.test", self_signed("rescan.test")) as bad:
        config = Config.model_validate({
            "assets": [bad.asset.model_dump(mode="json", exclude_none=True)],
            "scan": {"ca_bundle": str(pki.bundle), "connect_timeout": 2},
            "sinks": [{"type": "file", "path": str(events)}], "state_dir": str(tmp_path / "state")})
        pipeline = Pipeline(config.sink_settings, config.spool, config.state_dir, catalog, Normaliser.load(catalog))
        with running(pipeline):
            rescanner = ConfiguredRescanner(config, catalog, pipeline)
            first = rescanner.rescan(bad.asset.id, "certificate")
            fingerprint = next(fp for fp, status in first.statuses.items() if status == "fail")
            queue = ActionQueue(tmp_path / "actions.sqlite")
            queue.enqueue("k", "rescan", {})
            step = StepContext(fingerprint, bad.asset.id, "p", JobEffects(queue, 1),
                               TicketLedger(tmp_path / "tickets.sqlite"), rescanner)
            result = RescanAction(RescanSettings()).execute({"check": "certificate"}, step)
            with pytest.raises(ActionError, match="is not configured"):
                RescanAction(RescanSettings()).execute({"check": "certificate", "asset": "elsewhere.test"}, step)
            pipeline.drain(10)
    assert result["status"] == "fail" and result["fixed"] is False and result["scan_id"].startswith("rescan-")
    written = [json.loads(line) for line in events.read_text().splitlines()]
    assert {event["postern"]["scan_id"] for event in written} == {first.scan_id, result["scan_id"]}
    assert all(event["url"]["domain"] == "rescan.test" for event in written if "url" in event)


def test_a_ticket_is_closed_only_once_a_rescan_confirms_the_fix(pki: Pki, catalog: Catalog, tmp_path: Path) -> None:
    with site("fixme.test", self_signed("fixme.test")) as broken, JiraEmulator() as jira:
        config = Config.model_validate({
            "assets": [broken.asset.model_dump(mode="json", exclude_none=True)],
            "scan": {"ca_bundle": str(pki.bundle), "connect_timeout": 2},
            "sinks": [{"type": "file", "path": str(tmp_path / "events.jsonl")}],
            "state_dir": str(tmp_path / "state")})
        pipeline = Pipeline(config.sink_settings, config.spool, config.state_dir, catalog, Normaliser.load(catalog))
        action = JiraAction(JiraSettings.model_validate({"url": jira.url, "email": jira.email,
                                                         "api_token": jira.api_token, "project": "SEC",
                                                         "outbound": {"allow": ["127.0.0.0/8"]}}))
        with running(pipeline):
            rescanner = ConfiguredRescanner(config, catalog, pipeline)
            first = rescanner.rescan(broken.asset.id, "certificate")
            fingerprint = next(fp for fp, status in first.statuses.items() if status == "fail")
            queue = ActionQueue(tmp_path / "actions.sqlite")
            for key in ("open", "early", "late"):
                queue.enqueue(key, "ticket.jira", {})
            opened, early, late = queue.jobs()

            def step(job_id: int) -> StepContext:
                return StepContext(fingerprint, broken.asset.id, "p", JobEffects(queue, job_id),
                                   TicketLedger(tmp_path / "tickets.sqlite"), rescanner)

            action.execute({"summary": "self-signed", "description": "d", "labels": ["postern"]}, step(opened.id))
            too_early = action.execute({"operation": "close", "confirm_with": "certificate"}, step(early.id))
            broken.https.serve_tls(tls_context(pki.intermediate.issue(["fixme.test"])))  # the owner fixes it
            fixed = action.execute({"operation": "close", "confirm_with": "certificate"}, step(late.id))
            pipeline.drain(10)
    assert too_early["closed"] is None and "the ticket stays open" in too_early["reason"]
    assert fixed == {"closed": "SEC-1"} and jira.issues["SEC-1"].status == "Done"
