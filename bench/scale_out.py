"""Training and scoring on Ray against the local engine, for one job with four detectors.

    .venv/bin/python bench/scale_out.py [--hosts 300] [--hours 72] [--repeat 2]

Each measurement is a fresh process on a copy of the same config, whose `network` job has
`gcn_hmm`, `graph_ae`, `iforest` and `rare_links` (48 training windows of the simulated
enterprise): `siem-gad train`, then `siem-gad run --once` over every window with the models
of the local training (scoring; `gcn_hmm`, a sequence model, scores in the driver under every
engine). Engines: `local`, and `ray` with a local Ray of 1 and of 2 CPUs. Also measured in the
same run: starting and stopping a local Ray alone, the fixed cost `engine: ray` adds, and the
cost of one run of windows going through Ray (object store, scheduling, return) against
scoring it in the driver.
Prints a Markdown table for docs/scale-out.md (median wall time of `--repeat` runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DETECTORS = {"gcn_hmm": {"type": "gcn_hmm", "training": {"windows": 48}},
             "graph_ae": {"type": "graph_ae", "training": {"windows": 48}},
             "iforest": {"type": "iforest", "training": {"windows": 48}},
             "rare_links": {"type": "rare_links", "training": {"windows": 48}}}
ENGINES = {"local": {"engine": "local"}, "ray, 1 CPU": {"engine": "ray", "workers": 1},
           "ray, 2 CPUs": {"engine": "ray", "workers": 2}}
RAY_START = "import ray; ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False); ray.shutdown()"


def write_config(folder: Path, hosts: int, hours: int, execution: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "rules").mkdir()
    config = {"state_dir": "state", "rules_dir": "rules",
              "sources": {"sim": {"type": "simulate", "seed": 7, "hosts": hosts, "hours": hours}},
              "sinks": {"alerts": {"type": "jsonl", "path": "state/alerts.jsonl"}},
              "execution": execution,
              "jobs": {"network": {"source": "sim", "window": "1h", "graph": {"type": "bipartite"},
                                   "detectors": DETECTORS, "sinks": ["alerts"]}}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def timed(command: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(command, cwd=cwd, capture_output=True, check=True)
    return time.perf_counter() - began


OVERHEAD = r"""
import json, statistics, sys, time
from datetime import timedelta
import ray
from siem_gad.detectors.iforest import IsolationForestDetector
from siem_gad.events import finalize_events
from siem_gad.graphs import WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.simulator import Enterprise

hosts, repeat = int(sys.argv[1]), int(sys.argv[2])
enterprise = Enterprise(seed=7, hosts=hosts, hours=30)
events = finalize_events(enterprise.events(enterprise.start, enterprise.end), "sim")
windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), 30))
detector = IsolationForestDetector().fit(windows[:24])
run = windows[24:30]  # a run of six one-hour windows
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
noop = ray.remote(lambda run: len(run))
score = ray.remote(lambda detector, run: detector.score(run))
model = ray.put(detector)
ray.get([noop.remote(ray.put(run)), score.remote(model, ray.put(run))])  # workers started and warm

def median_ms(action):
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)

print(json.dumps({
    "nodes_per_window": statistics.median(w.num_nodes for w in run),
    "put_run_ms": median_ms(lambda: ray.put(run)),
    "noop_task_on_a_run_ms": median_ms(lambda: ray.get(noop.remote(ray.put(run)))),
    "score_task_ms": median_ms(lambda: ray.get(score.remote(model, ray.put(run)))),
    "score_locally_ms": median_ms(lambda: detector.score(run)),
}))
ray.shutdown()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=300)
    parser.add_argument("--hours", type=int, default=72)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rows, passes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, execution in ENGINES.items():
            times, fits, scoring = [], {}, []
            for run in range(args.repeat):
                config = write_config(Path(tmp) / f"{label}-{run}".replace(" ", "").replace(",", ""), args.hosts,
                                      args.hours, execution)
                times.append(timed([sys.executable, "-m", "siem_gad", "train", "-c", str(config)], config.parent))
                trained = Path(tmp) / "local-0"  # every engine scores with the local engine's models
                scored = Path(tmp) / f"score-{label}-{run}".replace(" ", "").replace(",", "")
                shutil.copytree(trained, scored)
                settings = yaml.safe_load((scored / "config.yaml").read_text())
                settings["execution"] = execution
                (scored / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
                scoring.append(timed([sys.executable, "-m", "siem_gad", "run", "-c", str(scored / "config.yaml"),
                                      "--once"], scored))
                status = subprocess.run([sys.executable, "-m", "siem_gad", "status", "-c", str(config), "--json"],
                                        capture_output=True, text=True, check=True, cwd=config.parent).stdout
                for model in json.loads(status)[0]["models"]:
                    fits.setdefault(model["detector"], []).append(model["fit_seconds"])
            passes[label] = statistics.median(scoring)
            rows[label] = (statistics.median(times), {k: statistics.median(v) for k, v in fits.items()})
        ray_start = statistics.median(timed([sys.executable, "-c", RAY_START], ROOT) for _ in range(args.repeat))
    local = rows["local"][0]
    print(f"{args.hosts} hosts x {args.hours} h, {os.cpu_count()} cores, median of {args.repeat}")
    print("| engine | `siem-gad train` wall (s) | vs local | " + " | ".join(f"`{d}` fit (s)" for d in DETECTORS) + " |")
    print("|---" * (3 + len(DETECTORS)) + "|")
    for label, (wall, fits) in rows.items():
        print(f"| {label} | {wall:.1f} | {local / wall:.2f}x | " + " | ".join(f"{fits.get(d, float('nan')):.1f}"
                                                                        for d in DETECTORS) + " |")
    print(f"| starting and stopping a local Ray (2 CPUs) alone | {ray_start:.1f} | | | | | |")
    overhead = json.loads(subprocess.run([sys.executable, "-c", OVERHEAD, str(args.hosts), "20"], capture_output=True,
                                         text=True, check=True).stdout.strip().splitlines()[-1])
    print()
    print("| engine | `siem-gad run --once` with trained models, wall (s) | vs local |")
    print("|---|---|---|")
    for label, wall in passes.items():
        print(f"| {label} | {wall:.1f} | {passes['local'] / wall:.2f}x |")
    print()
    print(f"Per run of 6 windows ({overhead['nodes_per_window']:.0f} nodes a window), warm workers, median of 20 (ms):")
    print()
    print("| putting the run into the object store | a no-op task on it (put + schedule + return) "
          "| an `iforest` scoring task | the same scoring in the driver |")
    print("|---|---|---|---|")
    print(f"| {overhead['put_run_ms']:.1f} | {overhead['noop_task_on_a_run_ms']:.1f} | {overhead['score_task_ms']:.1f} "
          f"| {overhead['score_locally_ms']:.1f} |")


if __name__ == "__main__":
    main()
