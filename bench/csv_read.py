"""CSV source read speed: the record scanner (a malformed record costs only itself) against the
plain `csv` module reading the same file (which loses rows after a stray quote), in one run.

    .venv/bin/python bench/csv_read.py --hours 720            # ~1M rows of the simulated enterprise
    .venv/bin/python bench/csv_read.py --hours 720 --load 2   # with two CPU burners beside it
    git worktree add /tmp/old REV && .venv/bin/python bench/csv_read.py --compare-src /tmp/old/src
                                                             # also time another revision's reader

Prints a Markdown table for docs/benchmarks.md; each figure is the best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpu_load import cpu_load


def plain_csv(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def scanner_only(path: Path) -> int:
    from siem_gad.sources.csv_records import RecordScanner

    with path.open("rb") as handle:
        width = len(handle.readline().split(b","))
        scanner, offset, line, total = RecordScanner(handle), handle.tell(), 1, 0
        while True:
            scan = scanner.scan(offset, line, width, 50_000)
            total += len(scan.records)
            if scan.end_offset == offset:
                return total
            offset, line = scan.end_offset, scan.end_line


def source_read(path: Path, state: Path) -> int:
    from siem_gad.sources.csv_source import CsvSource
    from siem_gad.state import StateStore

    src = CsvSource(path=path).bind("bench", StateStore(state))
    first, horizon = src.bounds(None)
    return len(src.read(first, horizon, None).events)


def source_read_elsewhere(src: Path, path: Path, state: Path) -> int:
    """`source_read` with another checkout's siem_gad (a subprocess; prints the event count)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from siem_gad.sources.csv_source import CsvSource; "
            "from siem_gad.state import StateStore; from pathlib import Path; "
            "s = CsvSource(path=Path(sys.argv[2])).bind('bench', StateStore(Path(sys.argv[3]))); f, h = s.bounds(None); "
            "import time; t = time.perf_counter(); n = len(s.read(f, h, None).events); print(n, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(src), str(path), str(state)], check=True, capture_output=True,
                         text=True).stdout.split()
    return int(out[0]), float(out[1])


def best(fn, repeat: int) -> tuple[float, int]:
    times, result = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=int, default=720)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--load", type=int, default=0)
    parser.add_argument("--compare-src", type=Path, help="the src/ folder of another checkout to time as well")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.csv"
        subprocess.run([sys.executable, "-m", "siem_gad", "simulate", "--out", str(path), "--hours", str(args.hours)],
                       check=True, capture_output=True)
        with cpu_load(args.load, 3600):
            base, rows = best(lambda: plain_csv(path), args.repeat)
            scan, scanned = best(lambda: scanner_only(path), args.repeat)
            full, events = best(lambda: source_read(path, Path(tmp) / f"state-{time.monotonic_ns()}"), args.repeat)
            other = None
            if args.compare_src:
                runs = [source_read_elsewhere(args.compare_src, path, Path(tmp) / f"old-{n}") for n in range(args.repeat)]
                other = min(seconds for _, seconds in runs)
    assert rows == scanned == events, (rows, scanned, events)
    print(f"{rows:,} rows, {args.load} CPU burners beside it")
    print("| path | seconds | rows/s | time vs plain csv |")
    print("|---|---|---|---|")
    for label, seconds in (("plain `csv.reader` over the file (baseline)", base), ("record scanner (rows only)", scan),
                           ("`csv` source read: scanner, frame, timestamps, ids", full),
                           *([(f"`csv` source read of {args.compare_src}", other)] if other else [])):
        print(f"| {label} | {seconds:.2f} | {rows / seconds:,.0f} | {seconds / base:.2f}x |")


if __name__ == "__main__":
    main()
