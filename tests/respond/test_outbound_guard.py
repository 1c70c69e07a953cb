"""The outbound guard on every action that connects out: an internal target is refused before any connection.

A listener on 127.0.0.1 stands where a refused request would land. It never accepts, so a connection attempt
would sit completed in its backlog; "silent" means there is none.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.respond.actions import build_actions
from connector.respond.actions.base import ActionError, StepContext
from connector.respond.queue import ActionQueue, JobEffects, JobState
from connector.respond.settings import RespondConfig
from connector.respond.tickets import TicketLedger
from connector.runtime.respond import Responder
from emulators.chat import ChatEmulator
from support.receiver import AuditTrail

SECRET = "whsec_" + base64.b64encode(b"generic webhook key of 32 bytes!").decode()
FINGERPRINT = "9e" * 16
PARAMS = {"title": "Git repository exposed", "summary": "Git repository exposed", "to": "owner@example.test"}


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def silent(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def step(tmp_path: Path) -> StepContext:
    queue = ActionQueue(tmp_path / "actions.sqlite")
    queue.enqueue("job", "notify", {})
    [job] = queue.jobs()
    return StepContext(FINGERPRINT, "shop.example.test", "p", JobEffects(queue, job.id),
                       TicketLedger(tmp_path / "tickets.sqlite"), job_key="job")


def every_action(base: str, host: str, port: int) -> dict[str, dict[str, Any]]:
    """Each outbound action's settings, all pointing at ``base`` (``host``:``port`` for SMTP)."""
    return {
        "notify.email": {"host": host, "port": port, "sender": "postern@example.test", "security": "none"},
        "notify.slack": {"webhook_url": f"{base}/services/T0001/B0001/abc"},
        "notify.teams": {"workflow_url": f"{base}/workflows/abc/triggers/manual/paths/invoke?sig=s"},
        "notify.pagerduty": {"routing_key": "R" * 32, "url": f"{base}/v2/enqueue"},
        "notify.webhook": {"url": f"{base}/hooks/postern", "secret": SECRET},
        "ticket.jira": {"url": base, "email": "bot@example.test", "api_token": "t", "project": "SEC"},
        "ticket.servicenow": {"url": base, "username": "u", "password": "p"},
        "ticket.github": {"repository": "acme/shop", "token": "t", "api_url": base},
    }


@pytest.mark.parametrize("action", sorted(every_action("http://x", "x", 1)))
def test_every_outbound_action_refuses_localhost_without_connecting(action: str, tmp_path: Path,
                                                                    listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    built = build_actions({action: every_action(f"http://localhost:{port}", "localhost", port)[action]})[action]
    with pytest.raises(ActionError, match=r"outbound guard: localhost resolves to 127.0.0.1 \(loopback\): not "
                                          rf"allowlisted \(respond.actions.{action}.outbound.allow\)") as refused:
        built.execute(PARAMS, step(tmp_path))
    assert refused.value.permanent and silent(listener)


@pytest.mark.parametrize(("url", "reason"), [
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "169.254.169.254 is cloud metadata"),
    ("http://10.0.0.7:8080/hook", "10.0.0.7 is private"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is cloud metadata"),
])
def test_a_webhook_at_an_internal_address_is_a_dead_letter_with_the_reason_audited(
        url: str, reason: str, tmp_path: Path) -> None:
    config = RespondConfig.model_validate({
        "port": 0, "sources": [{"name": "s", "kind": "soar", "auth": "signature", "secret": "k" * 32}],
        "actions": {"notify.webhook": {"url": url, "secret": SECRET}}})
    responder = Responder(config, tmp_path / "state", audit := AuditTrail())
    responder.queue.enqueue("k", "notify.webhook", {"params": {}, "fingerprint": FINGERPRINT, "asset": "shop"})
    responder.run_pending("notify.webhook")
    [dead] = responder.queue.jobs()
    assert dead.state is JobState.DEAD and dead.attempts == 1  # at once: retrying cannot make it allowed
    [failed] = audit
    assert failed.action == "playbook-step-failed" and reason in failed.reason
    assert "respond.actions.notify.webhook.outbound.allow" in failed.reason and "no connection" in failed.reason


def test_loopback_in_another_spelling_is_still_loopback(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    for host in ("[::ffff:127.0.0.1]", "127.1.2.3", "LOCALHOST."):
        hook = build_actions({"notify.webhook": {"url": f"http://{host}:{port}/", "secret": SECRET}})
        with pytest.raises(ActionError, match="loopback") as refused:
            hook["notify.webhook"].execute(PARAMS, step(tmp_path))
        assert refused.value.permanent
    assert silent(listener)


def test_a_name_pinned_to_loopback_is_refused_until_loopback_is_allowed(tmp_path: Path, listener: socket.socket,
                                                                         ) -> None:
    """``resolve`` is like curl --resolve: the pinned address is checked like any answer."""
    port = listener.getsockname()[1]
    pinned = {"url": f"http://hooks.example.test:{port}/hooks/postern", "secret": SECRET,
              "outbound": {"resolve": {"hooks.example.test": "127.0.0.1"}}}
    hook = build_actions({"notify.webhook": pinned})["notify.webhook"]
    with pytest.raises(ActionError, match=r"hooks.example.test resolves to 127.0.0.1 \(loopback\)") as refused:
        hook.execute(PARAMS, step(tmp_path))
    assert refused.value.permanent and silent(listener)
    elsewhere = {**pinned, "outbound": {**pinned["outbound"], "allow": ["10.0.0.0/8"]}}  # another range allowed
    with pytest.raises(ActionError, match="loopback"):
        build_actions({"notify.webhook": elsewhere})["notify.webhook"].execute(PARAMS, step(tmp_path))
    assert silent(listener)


def test_an_allowed_name_is_reached_at_its_checked_address_with_its_name(tmp_path: Path) -> None:
    with ChatEmulator(SECRET) as chat:
        port = int(chat.base.rsplit(":", 1)[1])
        hook = build_actions({"notify.webhook": {
            "url": f"http://hooks.example.test:{port}/hooks/postern", "secret": SECRET,
            "outbound": {"allow": ["127.0.0.0/8"], "resolve": {"HOOKS.example.test": "127.0.0.1"}}}})
        result = hook["notify.webhook"].execute(PARAMS, step(tmp_path))
    # hooks.example.test resolves nowhere: the request arrived because it went to the address checked, never
    # resolved a second time, and it still carried the name
    assert result["status"] == 204 and len(chat.webhooks) == 1
    assert chat.webhook_hosts == [f"hooks.example.test:{port}"]


def test_an_allowlist_entry_must_be_a_network() -> None:
    with pytest.raises(ValueError, match=r"respond.actions.notify.webhook: outbound.allow"):
        RespondConfig.model_validate({
            "sources": [{"name": "s", "kind": "soar", "auth": "signature", "secret": "k" * 32}],
            "actions": {"notify.webhook": {"url": "https://hooks.example.test/", "secret": SECRET,
                                           "outbound": {"allow": ["hooks.example.test"]}}}})
