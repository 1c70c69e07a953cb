"""The real callback receiver (uvicorn + Starlette) on a loopback port, with its queue and audit trail."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.core.audit import AuditRecord
from connector.respond.queue import ActionQueue
from connector.respond.receiver import build_app, server
from connector.respond.settings import RespondConfig
from support.waiting import wait_until


@dataclass
class RunningReceiver:
    url: str
    queue: ActionQueue
    audit: list[AuditRecord] = field(default_factory=list)


class AuditTrail(list[AuditRecord]):
    """An Auditor that keeps the records in memory, for tests that read them without a spool."""

    def audit(self, records: list[AuditRecord]) -> None:
        self.extend(records)


@contextmanager
def running_receiver(state_dir: Path, **settings: Any) -> Iterator[RunningReceiver]:
    config = RespondConfig.model_validate({"host": "127.0.0.1", "port": 0, **settings})
    queue = ActionQueue(state_dir / "actions.sqlite")
    audit = AuditTrail()
    uvicorn_server = server(build_app(config, queue, audit), config)
    thread = threading.Thread(target=uvicorn_server.run, name="receiver", daemon=True)
    thread.start()
    try:
        wait_until(lambda: uvicorn_server.started or not thread.is_alive())
        assert uvicorn_server.started, "the receiver did not start"
        port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
        scheme = "https" if config.tls else "http"
        yield RunningReceiver(f"{scheme}://127.0.0.1:{port}", queue, audit)
    finally:
        uvicorn_server.should_exit = True
        thread.join(10)
