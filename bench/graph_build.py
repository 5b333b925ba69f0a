"""Benchmark: building per-window entity graphs from 1M simulated events (1-hour windows).

Compares, on the same events in the same run:
- `loop`: the research notebook's way, per window: select its rows, find the unique nodes,
  a dict from node to index, a list comprehension over the edges;
- `per-window vectorized`: a plain vectorized rebuild that factorizes the entity strings of
  every window again;
- `siem-gad bipartite`: the product's builder, which encodes each entity to an integer once for
  the whole batch and aggregates every window with bincounts (edges, node and edge features,
  evidence index).

Every method runs on the events as sources deliver them (entity fields as pandas Categoricals,
encoded once per read) and on plain string columns (so the string hashing is included).

Usage: python bench/graph_build.py [--events 1000000] [--repeat 3]
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
import tracemalloc
from datetime import timedelta

import numpy as np
import pandas as pd

from siem_gad.events import finalize_events
from siem_gad.graphs import WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.simulator import Enterprise

HOUR = timedelta(hours=1)
SRC, DST = "source.ip", "destination.ip"


def simulated_events(count: int) -> tuple[pd.DataFrame, WindowGrid]:
    enterprise = Enterprise(seed=1, hosts=600, hours=200)
    frames, total, hour = [], 0, 0
    while total < count:
        frame = enterprise.hour(hour)
        frames.append(frame)
        total += len(frame)
        hour += 1
    events = pd.concat(frames, ignore_index=True).iloc[:count].reset_index(drop=True)
    hours = int((events["@timestamp"].iloc[-1] - pd.Timestamp(enterprise.start)) / pd.Timedelta(hours=1)) + 1
    return events, WindowGrid(enterprise.start, HOUR, hours)


def research_loop(events: pd.DataFrame, grid: WindowGrid) -> int:
    window = ((events["@timestamp"] - pd.Timestamp(grid.start)) // pd.Timedelta(grid.size)).to_numpy()
    edges = 0
    for w in range(grid.count):
        part = events[window == w]
        nodes = pd.unique(pd.concat([part[SRC], part[DST]]))
        index = {node: i for i, node in enumerate(nodes)}
        edge_list = [(index[s], index[d]) for s, d in zip(part[SRC], part[DST])]
        edges += len(set(edge_list))
    return edges


def per_window_vectorized(events: pd.DataFrame, grid: WindowGrid) -> int:
    window = ((events["@timestamp"] - pd.Timestamp(grid.start)) // pd.Timedelta(grid.size)).to_numpy()
    order = np.argsort(window, kind="stable")
    bounds = np.searchsorted(window[order], np.arange(grid.count + 1))
    src_all, dst_all = events[SRC].to_numpy()[order], events[DST].to_numpy()[order]
    edges = 0
    for w in range(grid.count):
        src, dst = src_all[bounds[w]:bounds[w + 1]], dst_all[bounds[w]:bounds[w + 1]]
        codes, _ = pd.factorize(np.concatenate([src, dst]))
        pairs = codes[: len(src)].astype(np.int64) * (codes.max() + 1) + codes[len(src):]
        edges += len(pd.unique(pairs))
    return edges


def siem_gad_builder(events: pd.DataFrame, grid: WindowGrid) -> int:
    return sum(w.num_edges for w in BipartiteGraphBuilder().build(events, grid))


def measure(func, events: pd.DataFrame, grid: WindowGrid, repeat: int) -> tuple[float, int, float]:
    best, result = float("inf"), 0
    for _ in range(repeat):
        began = time.perf_counter()
        result = func(events, grid)
        best = min(best, time.perf_counter() - began)
    tracemalloc.start()
    func(events, grid)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, result, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    strings, grid = simulated_events(args.events)
    encoding = time.perf_counter()
    delivered = finalize_events(strings.copy(), "bench")
    encoding = time.perf_counter() - encoding
    rss_events = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    methods = [("research loop (per window: unique, dict, list comprehension)", research_loop),
               ("plain vectorized rebuild per window", per_window_vectorized),
               ("siem-gad `bipartite` (whole batch, with features and evidence)", siem_gad_builder)]
    print(f"{len(strings):,} events, {grid.count} one-hour windows, {strings[SRC].nunique():,} sources, "
          f"{strings[DST].nunique():,} destinations; {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}")
    print(f"(encoding the events once as the sources do, `finalize_events`: {encoding:.2f} s)\n")
    print("| input | method | seconds (best of %d) | events/s | x loop | edges | peak traced memory |" % args.repeat)
    print("|---|---|---|---|---|---|---|")
    for label, events in [("as sources deliver (categorical)", delivered), ("plain strings", strings)]:
        rows = [(name, *measure(func, events, grid, args.repeat)) for name, func in methods]
        loop_seconds = rows[0][1]
        for name, seconds, edges, peak in rows:
            print(f"| {label} | {name} | {seconds:.3f} | {len(events) / seconds / 1e6:.2f} M | "
                  f"{loop_seconds / seconds:.1f} | {edges:,} | {peak:.0f} MiB |")
    print(f"\nprocess peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
          f"(of which {rss_events:.0f} MiB after generating the events)")


if __name__ == "__main__":
    main()
