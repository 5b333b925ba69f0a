"""Start-up time of the light commands, idle and with the machine loaded, against `python -c pass`.

    .venv/bin/python bench/startup.py --repeat 7 --load 1

Prints a Markdown table for docs/benchmarks.md (median wall time of `--repeat` runs). The
commands run as an installed siem-gad does, with its bytecode cached: a warm-up run first, and
without `PYTHONDONTWRITEBYTECODE` (set on some build hosts, it would recompile every module on
every start).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cpu_load import cpu_load

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "siem-gad --help": [sys.executable, "-m", "siem_gad", "--help"],
    "siem-gad check -c config.example.yaml": [sys.executable, "-m", "siem_gad", "check", "-c", "config.example.yaml"],
    "siem-gad plugins": [sys.executable, "-m", "siem_gad", "plugins"],
    "siem-gad status -c config.example.yaml": [sys.executable, "-m", "siem_gad", "status", "-c", "config.example.yaml"],
}
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def median_seconds(command: list[str], repeat: int) -> float:
    subprocess.run(command, cwd=ROOT, capture_output=True, check=True, env=ENV)  # warm-up: bytecode written
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run(command, cwd=ROOT, capture_output=True, check=True, env=ENV)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--load", type=int, default=1)
    args = parser.parse_args()
    results = {}
    for loaded in (False, True):
        with cpu_load(args.load if loaded else 0):
            for label, command in COMMANDS.items():
                results[(label, loaded)] = median_seconds(command, args.repeat)
    print(f"| command | idle (s) | loaded, {args.load} CPU burner(s) (s) |")
    print("|---|---|---|")
    for label in COMMANDS:
        print(f"| `{label}` | {results[(label, False)]:.3f} | {results[(label, True)]:.3f} |")


if __name__ == "__main__":
    main()
