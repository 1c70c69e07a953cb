"""Benchmark: `connector report` on a month of history, the page against the same report as JSON.

    .venv/bin/python bench/report.py [--runs 5]

The history is the tests' simulated month (tests/support/month.py: the real register, ledger and baselines,
recorded day by day). Each command is a fresh process, runs alternate between the formats, and medians are
printed with min and max. The baseline is `--format json`: the same history read and the same report model built
(a KPI computation per day of the window), without charts or template, so the difference is what drawing the
page costs. Target: the page within 10 s and 1 MB on this 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.month import NOW, simulate_month  # noqa: E402 - the tests' simulated history, from their directory


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        month = simulate_month(Path(scratch))
        outputs = {fmt: Path(scratch) / f"posture.{fmt}" for fmt in ("json", "html")}
        commands = {fmt: [sys.executable, "-m", "connector", "report", "-c", str(month.config), "--until",
                          NOW.isoformat(), "--format", fmt, "-o", str(out)] for fmt, out in outputs.items()}
        seconds: dict[str, list[float]] = {fmt: [] for fmt in commands}
        for _ in range(args.runs):
            for fmt, command in commands.items():
                seconds[fmt].append(timed(command))
        sizes = {fmt: out.stat().st_size for fmt, out in outputs.items()}
    for fmt, label in (("json", "baseline: --format json"), ("html", "the page: --format html")):
        runs = seconds[fmt]
        print(f"{label:<26} median {statistics.median(runs):5.2f} s  (min {min(runs):.2f}, max {max(runs):.2f})  "
              f"{sizes[fmt] / 1024:7.0f} KiB")
    extra = statistics.median(seconds["html"]) - statistics.median(seconds["json"])
    print(f"drawing the page adds {extra:.2f} s (target: the page within 10 s and 1 MB)")


if __name__ == "__main__":
    main()
