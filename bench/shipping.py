"""Benchmark: 100,000 finding events through normaliser -> spool -> sink, against bare baselines.

    .venv/bin/python bench/shipping.py [--events 100000]

Each emulator runs in its own process (so it does not share a GIL with what is measured), and each measured run
is its own process too, so peak RSS is that run's. Measured, on the same events:

- ours -> HEC: normalise every finding, commit it to the SQLite spool, ship with the Splunk HEC sink (batches of
  500, gzip off to match the baseline) until the emulator has every event;
- baseline -> HEC: the already-normalised ECS documents, JSON-encoded with the standard library and POSTed with
  httpx in batches of 500 (no spool, no normaliser);
- ours -> Elasticsearch: the same path with the Elasticsearch sink (streaming_bulk underneath, 500 per bulk);
- baseline -> Elasticsearch: ``elasticsearch.helpers.streaming_bulk`` alone over the normalised documents;
- ours -> file: the same path into the file sink, i.e. what normaliser and spool sustain when the receiver is not
  the limit (the emulators, parsing every JSON document in Python, cap both HEC and Elasticsearch runs).

Targets: HEC through the spool >= 0.5x the bare loop; Elasticsearch through the spool >= 0.8x the bare helper.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from elasticsearch import Elasticsearch, helpers  # noqa: E402

from connector.core.catalog import load_catalog  # noqa: E402
from connector.core.model import Asset, Finding  # noqa: E402
from connector.delivery.pipeline import Pipeline  # noqa: E402
from connector.normalise import Normaliser  # noqa: E402
from connector.runtime.config import Config  # noqa: E402
from emulators.elasticsearch import ElasticsearchEmulator  # noqa: E402
from emulators.splunk import SplunkEmulator  # noqa: E402
from support.pki import Authority, Pki, self_signed  # noqa: E402
from support.scanning import run_scan  # noqa: E402
from support.sites import site  # noqa: E402

TOKEN = "11111111-2222-3333-4444-555555555555"
STREAM = "logs-postern.findings-default"
BATCH = 500


def serve(kind: str) -> None:
    """Child process: run one emulator until stdin closes; print its URL and, on request, its event count."""
    gc.disable()  # it keeps every event it receives; rescanning that heap would make the emulator the bottleneck
    emulator: Any = SplunkEmulator() if kind == "splunk" else ElasticsearchEmulator()
    with emulator:
        print(emulator.hec_url if kind == "splunk" else emulator.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                count = len(emulator.events) if kind == "splunk" else len(emulator.ids(STREAM))
                print(count, flush=True)


def findings(path: Path, count: int) -> list[Any]:
    """``count`` findings: a real scan's findings, repeated over distinct assets (so every event id differs)."""
    base = [Finding.model_validate(item) for item in json.loads(path.read_text())]
    out = []
    index = 0
    while len(out) < count:
        asset = Asset(host=f"host{index}.bench.test", criticality="high")
        out.extend(finding.model_copy(update={"asset": asset}) for finding in base)
        index += 1
    return out[:count]


def measure(mode: str, url: str, corpus: Path, count: int, work: Path) -> dict[str, Any]:
    """Child process: run one measurement and report its rate; RSS is read by the parent from wait4."""
    catalog = load_catalog()
    normaliser = Normaliser.load(catalog)
    items = findings(corpus, count)
    gc.freeze()  # the prepared inputs are not garbage; do not let collections rescan them during the timing
    if mode.startswith("baseline"):
        documents = [normaliser.ecs(finding) for finding in items]  # not timed: the baseline gets them ready
        ids = [finding.event_id for finding in items]
        gc.freeze()
        started = time.perf_counter()
        if mode == "baseline-hec":
            with httpx.Client(headers={"Authorization": f"Splunk {TOKEN}"}) as client:
                for start in range(0, count, BATCH):
                    body = "".join(json.dumps({"time": time.time(), "host": "bench", "sourcetype": "postern:finding",
                                               "event": document}) for document in documents[start:start + BATCH])
                    client.post(f"{url}/services/collector/event", content=body).raise_for_status()
        else:
            client = Elasticsearch(url, api_key="test-api-key")
            actions = ({"_op_type": "create", "_index": STREAM, "_id": ident, "_source": document}
                       for ident, document in zip(ids, documents, strict=True))
            for ok, item in helpers.streaming_bulk(client, actions, chunk_size=BATCH, raise_on_error=False):
                if not ok:
                    raise RuntimeError(item)
        elapsed = time.perf_counter() - started
        return {"seconds": elapsed}
    sink: dict[str, Any]
    if mode == "ours-hec":
        sink = {"type": "splunk_hec", "url": url, "token": TOKEN, "gzip": False, "batch_events": BATCH,
                "batch_bytes": 64 * 1024 * 1024}
    elif mode == "ours-file":
        sink = {"type": "file", "path": str(work / "events.jsonl"), "batch_events": BATCH,
                "batch_bytes": 64 * 1024 * 1024, "rotate_bytes": 0}
    else:
        sink = {"type": "elasticsearch", "hosts": [url], "api_key": "test-api-key", "batch_events": BATCH,
                "batch_bytes": 64 * 1024 * 1024}
    config = Config.model_validate({"assets": [{"host": "bench.test"}], "sinks": [sink], "state_dir": str(work)})
    pipeline = Pipeline(config.sink_settings, config.spool, config.state_dir, catalog, normaliser)
    started = time.perf_counter()
    pipeline.start()
    for start in range(0, count, BATCH):
        pipeline.publish(items[start:start + BATCH])
    left = pipeline.drain(600)
    elapsed = time.perf_counter() - started
    pipeline.stop()
    if any(left.values()):
        raise RuntimeError(f"not delivered: {left}")
    return {"seconds": elapsed}


def run_child(arguments: list[str]) -> tuple[dict[str, Any], int]:
    child = subprocess.Popen([sys.executable, __file__, *arguments], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    output = child.stdout.read() if child.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"measurement {arguments[1]} failed")
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss


class Emulator:
    def __init__(self, kind: str) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "serve", kind], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def count(self) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def scan_corpus(path: Path) -> None:
    """A real scan of two local sites (hardened and self-signed), saved as the event corpus."""
    root = Authority("Bench Root")
    pki = Pki(root, Authority("Bench Intermediate", root), Authority("Other"), path.with_suffix(".pem"))
    pki.bundle.write_bytes(root.pem())
    with site("a.bench.test", pki.intermediate.issue(["a.bench.test"])) as good, \
            site("b.bench.test", self_signed("b.bench.test")) as weak:
        found = run_scan([good.asset, weak.asset], load_catalog(), ca_bundle=pki.bundle)
    path.write_text(json.dumps([finding.model_dump(mode="json") for finding in found]))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        _, _, mode, url, corpus, count, work = sys.argv
        print(json.dumps(measure(mode, url, Path(corpus), int(count), Path(work))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    count = args.events
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        corpus = folder / "corpus.json"
        scan_corpus(corpus)
        rows = []
        for target in ("hec", "elasticsearch"):
            for mode in (f"baseline-{target}", f"ours-{target}"):
                emulator = Emulator("splunk" if target == "hec" else "elasticsearch")
                try:
                    result, rss = run_child(["measure", mode, emulator.url, str(corpus), str(count),
                                             str(folder / mode)])
                    received = emulator.count()
                finally:
                    emulator.close()
                if received < count:
                    raise SystemExit(f"{mode}: the emulator received {received} of {count} events")
                rows.append((target, mode, result["seconds"], count / result["seconds"], rss / 1024))
        capacity, capacity_rss = run_child(["measure", "ours-file", "-", str(corpus), str(count), str(folder / "file")])
        rows.append(("file (capacity)", "ours-file", capacity["seconds"], count / capacity["seconds"],
                     capacity_rss / 1024))
    print(f"\n{count} finding events, batches of {BATCH}; emulators in their own processes\n")
    print(f"{'target':14} {'path':22} {'seconds':>8} {'events/s':>10} {'peak RSS MiB':>13}")
    for target, mode, seconds, rate, rss in rows:
        print(f"{target:14} {mode:22} {seconds:8.2f} {rate:10.0f} {rss:13.1f}")
    rates = {(target, mode.split("-")[0]): rate for target, mode, _, rate, _ in rows}
    hec = rates[("hec", "ours")] / rates[("hec", "baseline")]
    es = rates[("elasticsearch", "ours")] / rates[("elasticsearch", "baseline")]
    print(f"\nHEC through the spool: {hec:.2f}x the bare httpx loop (target >= 0.5)")
    print(f"Elasticsearch through the spool: {es:.2f}x bare streaming_bulk (target >= 0.8)")
    return 0 if hec >= 0.5 and es >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
