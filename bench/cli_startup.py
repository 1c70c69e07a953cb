"""Benchmark: how long the CLI takes to answer --version and --help, against a bare interpreter start.

    .venv/bin/python bench/cli_startup.py [--runs 20]

Each command is a fresh process (python -m connector ..., from the repository root), timed from start to exit
with a monotonic clock; runs alternate between the commands so that a machine whose speed drifts moves them
alike. Medians are printed, with min and max for the spread. The baselines are `python3 -c pass` (the system
interpreter) and `<this interpreter> -c pass`; the ratio says how much the connector adds to a bare start.
Target: --version and --help within 0.2 s on an idle machine. `scan --help` is shown for contrast: it imports
the scanner, as any real command does.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands() -> dict[str, list[str]]:
    connector = [sys.executable, "-m", "connector"]
    return {
        "python3 -c pass": ["python3", "-c", "pass"],
        f"{Path(sys.executable).name} -c pass": [sys.executable, "-c", "pass"],
        "connector --version": [*connector, "--version"],
        "connector --help": [*connector, "--help"],
        "connector scan --help": [*connector, "scan", "--help"],
    }


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    table = commands()
    for command in table.values():  # warm-up: bytecode caches, page cache
        timed(command)
    samples: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(runs):
        for name, command in table.items():
            samples[name].append(timed(command))
    baseline = statistics.median(samples["python3 -c pass"])
    print(f"{'command':<26}{'median s':>10}{'min s':>9}{'max s':>9}{'x python3 -c pass':>19}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<26}{median:>10.3f}{min(values):>9.3f}{max(values):>9.3f}{median / baseline:>19.2f}")


if __name__ == "__main__":
    main()
