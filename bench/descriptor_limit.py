"""Benchmark: open ports reported by ``connector scan --checks ports`` under a descriptor limit.

    .venv/bin/python bench/descriptor_limit.py [--limit 1024] [--assets 32] [--ports 40]

Listens on ``--ports`` loopback ports (never accepted: the kernel completes the handshakes), declares ``--assets``
assets on 127.0.0.1 that expect none of them, and scans in a child whose soft and hard RLIMIT_NOFILE are
``--limit``. Every port of every asset must be reported open; before the socket budget, EMFILE read as "closed"
(1262 of 1280 at 1024 descriptors, 62 of 160 at 64).
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1024)
    parser.add_argument("--assets", type=int, default=32)
    parser.add_argument("--ports", type=int, default=40)
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        ports = []
        for _ in range(args.ports):
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            ports.append(listener.getsockname()[1])
        config, events = Path(scratch) / "config.yaml", Path(scratch) / "events.jsonl"
        config.write_text(yaml.safe_dump({
            "assets": [{"host": f"limit{index}.test", "address": "127.0.0.1", "http_port": None,
                        "expected_ports": [], "scan_ports": ports} for index in range(args.assets)],
            "checks": {"ports": {"banner_timeout": 0.1}}, "scan": {"connect_timeout": 2},
            "state_dir": str(Path(scratch) / "state")}))

        def limited() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.limit, args.limit))

        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "connector", "scan", "-c", str(config), "--checks", "ports",
                               "-o", str(events), "-q"], capture_output=True, text=True, check=False,
                              preexec_fn=limited)
        seconds = time.monotonic() - started
        written = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    reported = sum(1 for event in written if event["event"]["outcome"] == "failure")
    errors = sum(1 for event in written if event["rule"]["id"] == "scan.error")
    print(f"limit {args.limit}: {reported} of {args.assets * args.ports} open ports reported, {errors} error "
          f"finding(s), exit {done.returncode}, {seconds:.1f}s")


if __name__ == "__main__":
    main()
