"""Scoring speed under the thread policy, idle and with the machine loaded, in one run.

Trains the default config's detectors (`gcn_hmm`, `iforest`) once on the simulated enterprise,
then scores the same windows in fresh processes: with `threads: 1` (the policy's `auto`) and
with the libraries' own defaults (one thread per core, what siem-gad did before the policy),
each idle and with `--load` CPU-bound processes running beside it.

    .venv/bin/python bench/thread_policy.py --hours 168 --load 1

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cpu_load import cpu_load

SCORE = """
import json, sys, time
from pathlib import Path
threads = sys.argv[2]
if threads != "default":
    from siem_gad.threads import decide
    decide(int(threads)).apply()
from datetime import timedelta
from siem_gad.detectors.gcn_hmm import GcnHmmDetector
from siem_gad.detectors.iforest import IsolationForestDetector
from siem_gad.graphs import WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.simulator import Enterprise
hours = int(sys.argv[3])
enterprise = Enterprise(seed=7, hosts=40, hours=hours)
events = enterprise.events(enterprise.start, enterprise.end)
windows = BipartiteGraphBuilder(source_field="source.ip", target_field="destination.ip").build(
    events, WindowGrid(enterprise.start, timedelta(hours=1), hours))
models = Path(sys.argv[1])
out = {"events": len(events)}
for name, cls in (("gcn_hmm", GcnHmmDetector), ("iforest", IsolationForestDetector)):
    path = models / f"{name}.pt"
    if not path.exists():
        cls(seed=0).fit(windows[:48]).save(path)
    detector = cls.load(path)
    began = time.perf_counter()
    detector.score(windows)
    out[name] = time.perf_counter() - began
print(json.dumps(out))
"""


def score(models: Path, threads: str, hours: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", SCORE, str(models), threads, str(hours)], capture_output=True,
                            text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=int, default=168)
    parser.add_argument("--load", type=int, default=1, help="CPU-bound processes beside the loaded runs")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        score(models, "1", args.hours)  # trains and saves the models once
        for loaded in (False, True):
            with cpu_load(args.load if loaded else 0, 600):
                for threads in ("1", "default"):
                    rows.append((loaded, threads, score(models, threads, args.hours)))
    events = rows[0][2]["events"]
    print(f"{events:,} events, {args.hours} windows, {os.cpu_count()} cores; loaded = {args.load} CPU burner(s) beside it")
    print("| machine | threads | gcn_hmm score (s) | iforest score (s) | events/s (both) | vs idle, same threads |")
    print("|---|---|---|---|---|---|")
    idle = {t: r for loaded, t, r in rows if not loaded}
    for loaded, threads, r in rows:
        total = r["gcn_hmm"] + r["iforest"]
        base = idle[threads]["gcn_hmm"] + idle[threads]["iforest"]
        label = "policy (1)" if threads == "1" else "library defaults"
        print(f"| {'loaded' if loaded else 'idle'} | {label} | {r['gcn_hmm']:.2f} | {r['iforest']:.2f} | "
              f"{events / total:,.0f} | {base / total:.2f}x |")


if __name__ == "__main__":
    main()
