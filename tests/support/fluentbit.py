"""A real Fluent Bit (5.1.1, in_splunk) on 127.0.0.1: a third-party HEC receiver nobody here wrote.

It writes every event it takes into ``out.jsonl`` (file output, format plain: one JSON object a line with time,
host, source, sourcetype, index, fields and event), flushed every second. What it answers, and how Splunk
differs, is in ../shared/tools/fluent-bit/README.md: health 200 code 200, events 200 code 0 with no ackId,
wrong token 403 code 4, /services/collector/ack 400, an oversize body 413 with an empty body.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import Any

import httpx

from support.daemon import daemon_env, terminate
from support.waiting import wait_until

BINARY = Path(__file__).resolve().parents[3] / "shared" / "tools" / "fluent-bit" / "fluent-bit"
TOKEN = "11111111-2222-3333-4444-555555555555"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FluentBit:
    def __init__(self, *, token: str = TOKEN, buffer_max_size: str | None = None) -> None:
        self.token = token
        self.buffer_max_size = buffer_max_size
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="fluentbit-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        limit = f"    buffer_max_size {self.buffer_max_size}\n    buffer_chunk_size {self.buffer_max_size}\n" \
            if self.buffer_max_size else ""
        return (f"[SERVICE]\n    flush 1\n    log_level warn\n    log_file {self.workdir / 'fluent-bit.log'}\n"
                f"[INPUT]\n    name splunk\n    listen 127.0.0.1\n    port {self.port}\n"
                f"    splunk_token {self.token}\n{limit}"
                f"[OUTPUT]\n    name file\n    match *\n    path {self.workdir}\n    file out.jsonl\n"
                "    format plain\n")

    def start(self) -> FluentBit:
        path = self.workdir / "fluent-bit.conf"
        path.write_text(self.config())
        self.process = subprocess.Popen([str(BINARY), "-c", str(path)], env=daemon_env(),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        weakref.finalize(self, terminate, self.process)
        wait_until(self._answers, timeout=15)
        return self

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
            self.process = None

    def __enter__(self) -> FluentBit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"fluent-bit exited: {(self.workdir / 'fluent-bit.log').read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/services/collector/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def received(self) -> list[dict[str, Any]]:
        """What Fluent Bit wrote out so far, one record per event."""
        out = self.workdir / "out.jsonl"
        if not out.exists():
            return []
        complete = out.read_text().rpartition("\n")[0]  # a line still being written is not an event yet
        return [json.loads(line) for line in complete.splitlines() if line.strip()]
