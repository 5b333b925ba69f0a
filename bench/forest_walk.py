"""The isolation forest's compiled walk, plain and with `extrapolate`, idle and loaded, in one run.

An `iforest` of 200 trees of 256 rows is fitted on 20,000 rows of 12 log-normal features (the
shape of the default config's node features) and scores 150,000 others, one thread, best of
`--repeat`: `FlatForest.isolation(rows)` against `isolation(rows, extrapolate=True)`, whose walk
also reads each node's sample range and sums an expected depth (`forest_kernels`).

    .venv/bin/python bench/forest_walk.py [--repeat 5] [--load 1]

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cpu_load import cpu_load


def best_seconds(score, rows: np.ndarray, repeat: int) -> float:
    score(rows[:100])  # compiled kernels loaded
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        score(rows)
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    from siem_gad.detectors.flat_forest import FlatForest

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--load", type=int, default=1, help="CPU-bound processes beside the loaded runs")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    forest = FlatForest.fit(rng.lognormal(size=(20_000, 12)).astype(np.float32), n_estimators=200, max_samples=256,
                            seed=1, ranges=True)
    rows = rng.lognormal(size=(150_000, 12)).astype(np.float32)
    walks = {"plain": forest.isolation, "extrapolate": lambda r: forest.isolation(r, extrapolate=True)}
    seconds = {}
    for loaded in (False, True):
        with cpu_load(args.load if loaded else 0):
            for name, walk in walks.items():
                seconds[(name, loaded)] = best_seconds(walk, rows, args.repeat)
    print(f"| walk | idle (s) | loaded, {args.load} CPU burner(s) (s) | x plain, idle | x plain, loaded |")
    print("|---|---|---|---|---|")
    for name in walks:
        idle, loaded = seconds[(name, False)], seconds[(name, True)]
        print(f"| {name} | {idle:.3f} | {loaded:.3f} | {idle / seconds[('plain', False)]:.2f} | "
              f"{loaded / seconds[('plain', True)]:.2f} |")


if __name__ == "__main__":
    main()
