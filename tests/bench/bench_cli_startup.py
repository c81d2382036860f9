"""How long the command line takes to answer before doing any work: `escalator --version`,
`--help` and a sub-command's `--help`, each beside `python -c pass` (the interpreter's own
start, the floor) measured in the same run. Best and median of --runs fresh processes.

    python tests/bench/bench_cli_startup.py [--runs 15]

Target (issue #21): `--version` and `--help` under 150 ms on the CI machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES: tuple[tuple[str, list[str]], ...] = (
    ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
    ("escalator --version", [sys.executable, "-m", "deploy.cli", "--version"]),
    ("escalator --help", [sys.executable, "-m", "deploy.cli", "--help"]),
    ("escalator replay --help", [sys.executable, "-m", "deploy.cli", "replay", "--help"]),
    ("escalator run --help", [sys.executable, "-m", "deploy.cli", "run", "--help"]),
)


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    samples: dict[str, list[float]] = {name: [] for name, _ in CASES}
    for _ in range(runs):  # interleaved, so drift of the machine's speed hits every case
        for name, command in CASES:
            samples[name].append(timed(command))
    floor = min(samples[CASES[0][0]])
    print(f"{'case':28} {'best ms':>8} {'median ms':>10} {'best - floor':>13}")
    for name, values in samples.items():
        best = min(values)
        print(f"{name:28} {best * 1e3:8.1f} {statistics.median(values) * 1e3:10.1f} "
              f"{(best - floor) * 1e3:13.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
