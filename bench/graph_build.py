"""Benchmark: building per-window entity graphs from 1M simulated events (1-hour windows).

Compares, on the same events in the same run:
- `loop`: the research notebook's way, per window: select its rows, find the unique nodes,
  a dict from node to index, a list comprehension over the edges;
- `per-window vectorized`: a plain vectorized rebuild that factorizes the entity strings of
  every window again;
- `siem-gad bipartite`: the product's builder, which encodes each entity to an integer once for
  the whole batch and builds every window in two compiled passes (edges, node and edge
  features, evidence index), on one thread and on one thread per core (the default: chunks of
  whole windows build in parallel).

Every method runs on the events as sources deliver them (entity fields as pandas Categoricals,
encoded once per read) and on plain string columns (so the string hashing is included).

Usage: python bench/graph_build.py [--events 1000000] [--repeat 3]
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import subprocess
import sys
import tempfile
import platform
import resource
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

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
        # plain strings, as a CSV or JSON reader gives them (the simulator delivers Categoricals)
        frames.append(frame.astype({name: "str" for name in frame.columns if frame[name].dtype in ("category", object)}))
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


def siem_gad_builder(threads: int):
    def build(events: pd.DataFrame, grid: WindowGrid) -> int:
        return sum(w.num_edges for w in BipartiteGraphBuilder(threads=threads).build(events, grid))
    return build


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


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def builder_process_memory(events: pd.DataFrame, grid: WindowGrid) -> tuple[float, float]:
    """RSS of a fresh process that holds only the delivered events before it builds every window
    with the default builder, and its peak while building: the memory the product itself needs,
    apart from this benchmark's generator, string copy and baselines."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.pkl"
        with path.open("wb") as out:
            pickle.dump((events, grid), out)
        child = subprocess.run([sys.executable, __file__, "--memory-child", str(path)], check=True,
                               capture_output=True, text=True)
    before, after, _ = child.stdout.split()
    return float(before), float(after)


def proc_status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def memory_child(path: str) -> None:
    with open(path, "rb") as source:
        events, grid = pickle.load(source)
    BipartiteGraphBuilder().build(events.iloc[:1000], grid)  # imports and compiled kernels in place
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM): loading the pickle peaked higher
    before = proc_status_mib("VmRSS")
    windows = BipartiteGraphBuilder().build(events, grid)
    print(before, proc_status_mib("VmHWM"), len(windows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child)
    strings, grid = simulated_events(args.events)
    encoding = time.perf_counter()
    delivered = finalize_events(strings.copy(), "bench")
    encoding = time.perf_counter() - encoding
    rss_events = rss_mib()
    cores = len(os.sched_getaffinity(0))
    methods = [("research loop (per window: unique, dict, list comprehension)", research_loop),
               ("plain vectorized rebuild per window", per_window_vectorized),
               ("siem-gad `bipartite` (whole batch, with features and evidence), 1 thread", siem_gad_builder(1)),
               (f"siem-gad `bipartite`, default: {cores} threads (one per core)", siem_gad_builder(0))]
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
    print(f"\nthis benchmark's process peak RSS: {rss_mib():.0f} MiB (of which {rss_events:.0f} MiB after "
          f"generating the events and their string copy)")
    before, after = builder_process_memory(delivered, grid)
    print(f"a process holding only the delivered events: RSS {before:.0f} MiB before building, peak "
          f"{after:.0f} MiB while building every window (default threads)")


if __name__ == "__main__":
    main()
