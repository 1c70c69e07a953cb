"""``connector respond`` (the callback receiver and its queue) and ``connector playbooks`` (check, list, dry-run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from jinja2 import TemplateError
from rich.markup import escape

from connector.cli import app
from connector.cli._common import console_err, fail, load_catalog_and_normaliser
from connector.core.errors import ConfigError, ConnectorError
from connector.core.resources import playbooks_dir
from connector.respond.engine import callback_findings
from connector.respond.playbooks import load_playbook, load_playbooks, render
from connector.respond.queue import JobState
from connector.runtime.collector import ConfiguredRescanner, build_pipeline
from connector.runtime.config import Config, load_config
from connector.runtime.respond import Responder, open_queue
from connector.runtime.state import StateStore

respond_app = typer.Typer(help="The SOAR callback receiver, its playbooks and its action queue.",
                          no_args_is_help=False)
jobs_app = typer.Typer(help="Inspect and repair the action queue (safe next to a running receiver).",
                       no_args_is_help=True)
playbooks_app = typer.Typer(help="Check, list and dry-run playbooks.", no_args_is_help=True)
respond_app.add_typer(jobs_app, name="jobs")
app.add_typer(respond_app, name="respond")
app.add_typer(playbooks_app, name="playbooks")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The YAML configuration (with a respond: section).")]


def _respond_config(path: Path) -> Config:
    loaded = load_config(path)
    if loaded.respond is None:
        raise ConfigError(f"{path}: no respond: section; add one to receive callbacks (see README, Responding)")
    return loaded


@respond_app.callback(invoke_without_command=True)
def respond_command(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="The YAML configuration (with respond:).")]
    = None,
) -> None:
    """Run the callback receiver and the playbook planner until SIGTERM."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        fail("give the configuration: connector respond -c CONFIG")
    loaded = _respond_config(config)
    assert loaded.respond is not None
    catalog, normaliser = load_catalog_and_normaliser(loaded.mappings_dir, loaded.observer_name)
    state = StateStore(loaded.state_dir / "state.sqlite")  # one process per state directory, as for `run`
    pipeline = build_pipeline(loaded, catalog, normaliser)
    pipeline.start()
    try:
        responder = Responder(loaded.respond, loaded.state_dir, pipeline,
                              ConfiguredRescanner(loaded, catalog, pipeline))
        console_err.print(f"receiving callbacks on {loaded.respond.host}:{loaded.respond.port} "
                          f"({len(responder.engine.playbooks)} playbook(s))")
        responder.serve()
    finally:
        pipeline.stop(loaded.shutdown_grace.total_seconds())
        state.close()


@jobs_app.command("list")
def jobs_list(config: ConfigOption,
              state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None) -> None:
    """One line per job: id, state, attempts, action, key, last error."""
    loaded = _respond_config(config)
    assert loaded.respond is not None
    for job in open_queue(loaded.respond, loaded.state_dir).jobs(state):
        error = f"  {job.last_error}" if job.last_error else ""
        typer.echo(f"{job.id}\t{job.state}\t{job.attempts}\t{job.action}\t{job.idempotency_key}{error}")


@jobs_app.command("retry")
def jobs_retry(config: ConfigOption, job: Annotated[int, typer.Argument(help="The id of a dead job.")]) -> None:
    """Make a dead job due again, with a fresh count of attempts."""
    loaded = _respond_config(config)
    assert loaded.respond is not None
    if not open_queue(loaded.respond, loaded.state_dir).retry(job):
        fail(f"job {job} is not a dead letter (see `connector respond jobs list --state dead`)")
    typer.echo(f"job {job} is due again")


@respond_app.command("approve")
def respond_approve(config: ConfigOption,
                    job: Annotated[int, typer.Argument(help="The id of a step awaiting approval.")]) -> None:
    """Approve a step of a playbook in mode approve: it runs next, unless its approval has expired."""
    loaded = _respond_config(config)
    assert loaded.respond is not None
    if not open_queue(loaded.respond, loaded.state_dir).approve(job, loaded.respond.approval_ttl):
        fail(f"job {job} is not awaiting approval, or its approval expired "
             "(see `connector respond jobs list --state awaiting_approval`)")
    typer.echo(f"job {job} approved")


@jobs_app.command("purge")
def jobs_purge(config: ConfigOption,
               state: Annotated[JobState, typer.Option(help="done or dead.")] = JobState.DONE) -> None:
    """Forget finished or dead jobs older than the replay window."""
    loaded = _respond_config(config)
    assert loaded.respond is not None
    try:
        purged = open_queue(loaded.respond, loaded.state_dir).purge(state)
    except ConnectorError as exc:
        fail(str(exc))
    typer.echo(f"purged {purged} {state} job(s)")


@playbooks_app.command("validate")
def playbooks_validate(
    directory: Annotated[Path | None, typer.Argument(help="A directory of playbooks; default: the shipped ones.")]
    = None,
) -> None:
    """Check every playbook; each problem is printed at file:line."""
    try:
        playbooks = load_playbooks(directory or playbooks_dir())
    except ConfigError as exc:
        console_err.print(f"[red]invalid:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    typer.echo(f"valid: {len(playbooks)} playbook(s)")


@playbooks_app.command("list")
def playbooks_list(
    directory: Annotated[Path | None, typer.Argument(help="A directory of playbooks; default: the shipped ones.")]
    = None,
) -> None:
    """Name, mode, trigger rules and steps of each playbook."""
    for playbook in load_playbooks(directory or playbooks_dir()):
        steps = ", ".join(step.action for step in playbook.steps)
        typer.echo(f"{playbook.name}\t{playbook.mode}\t{','.join(playbook.trigger.rules)}\t"
                   f"min {playbook.trigger.min_severity}\t{steps}")


@playbooks_app.command("test")
def playbooks_test(
    file: Annotated[Path, typer.Argument(help="The playbook file.")],
    event: Annotated[Path, typer.Option(help="A callback body (Splunk or Kibana JSON) or one ECS event.")],
    kind: Annotated[str, typer.Option(help="splunk or elastic: how to read --event when it is a callback.")]
    = "elastic",
    source: Annotated[str, typer.Option(help="The source name to match the trigger against.")] = "test",
) -> None:
    """Print the plan for an event, with no side effect: no queue, no ledger, no action."""
    playbook = load_playbook(file)
    try:
        document = json.loads(event.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{event}: not a JSON file: {exc}")
    findings = callback_findings(kind, document) if isinstance(document, dict) and (
        "alerts" in document or "hits" in document or "results" in document or "result" in document) else [document]
    matched = 0
    for finding in findings:
        if not playbook.matches(finding, source, kind):
            continue
        matched += 1
        for index, step in enumerate(playbook.steps):
            try:
                params = json.dumps(render(step.params, finding), ensure_ascii=False)
            except TemplateError as exc:
                params = f"skipped: template error: {exc}"
            typer.echo(f"step {index}: {step.action} ({step.mode or playbook.mode}) {params}")
    if not matched:
        typer.echo(f"{playbook.name}: no finding of {event} matches its trigger and conditions")
