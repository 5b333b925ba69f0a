"""Ray against the local engine: training one job with four detectors, the scoring pass at
scale, and what one run of windows costs in Ray.

    .venv/bin/python bench/scale_out.py [--part training|scoring|all] [--repeat 2]
        [--hosts 300 --hours 72] [--scale-hosts 2000 --scale-hours 180] [--baseline-rev REV [--baseline-ray]]
        [--loaded]

Every measurement is a fresh process on a copy of the same config (the simulated enterprise).

- `training`: `siem-gad train` of a job with `gcn_hmm`, `graph_ae`, `iforest` and `rare_links`
  (48 training windows) under `local` and a local Ray of 1 and 2 CPUs, then `run --once` over
  every window with the local engine's models; also starting a local Ray alone, and one run of
  windows through Ray (object store, scheduling, return) against scoring it in the driver.
- `scoring`: the scoring pass on about 5 M events (`--scale-hosts` x `--scale-hours`): models
  trained once (locally) on the first 24 windows, then `run --once` over every window under
  `local`, under `local` with the code of `--baseline-rev` (the commit before this change:
  "local is not slower than before"), and under Ray with 1 and 2 CPUs (`--baseline-ray`: also
  with the code of `--baseline-rev`). Reported: the command's wall time, the pass's own time (the
  batches' durations, without starting the process or loading the models), the batches after
  the first (the steady state of a long-running `siem-gad run`, whose workers are warm), events
  per second, and the ratios. `--loaded` repeats the Ray rows with a CPU-bound
  process running beside them.
Prints Markdown tables for docs/scale-out.md (medians of `--repeat` runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
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


def write_config(folder: Path, hosts: int, hours: int, execution: dict, detectors: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "rules").mkdir()
    config = {"state_dir": "state", "rules_dir": "rules",
              "sources": {"sim": {"type": "simulate", "seed": 7, "hosts": hosts, "hours": hours}},
              "sinks": {"alerts": {"type": "jsonl", "path": "state/alerts.jsonl"}},
              "execution": execution,
              "jobs": {"network": {"source": "sim", "window": "1h", "graph": {"type": "bipartite"},
                                   "detectors": detectors or DETECTORS, "sinks": ["alerts"]}}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def timed(command: list[str], cwd: Path, env: dict | None = None) -> float:
    began = time.perf_counter()
    subprocess.run(command, cwd=cwd, capture_output=True, check=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - began


OVERHEAD = r"""
import json, statistics, sys, time
from datetime import timedelta
import ray
from siem_gad.detectors.iforest import IsolationForestDetector
from siem_gad.events import finalize_events
from siem_gad.execution.arrow import runs_of_events, to_table
from siem_gad.graphs import WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.simulator import Enterprise

hosts, repeat = int(sys.argv[1]), int(sys.argv[2])
enterprise = Enterprise(seed=7, hosts=hosts, hours=30)
events = finalize_events(enterprise.events(enterprise.start, enterprise.end), "sim")
windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), 30))
detector = IsolationForestDetector().fit(windows[:24])
run = windows[24:30]  # a run of six one-hour windows
grid = WindowGrid(enterprise.start, timedelta(hours=1), 30)
run_events = runs_of_events(events, [(grid.start_ns + 24 * grid.size_ns, grid.start_ns + 30 * grid.size_ns)])[0]
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
    "events": len(run_events),
    "put_events_ms": median_ms(lambda: ray.put(to_table(run_events))),
    "put_run_ms": median_ms(lambda: ray.put(run)),
    "noop_task_on_a_run_ms": median_ms(lambda: ray.get(noop.remote(ray.put(run)))),
    "score_task_ms": median_ms(lambda: ray.get(score.remote(model, ray.put(run)))),
    "score_locally_ms": median_ms(lambda: detector.score(run)),
}))
ray.shutdown()
"""


def training_part(args: argparse.Namespace) -> None:
    rows, passes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, execution in ENGINES.items():
            times, fits, scoring = [], {}, []
            for run in range(args.repeat):
                config = write_config(Path(tmp) / slug(f"{label}-{run}"), args.hosts, args.hours, execution)
                times.append(timed([sys.executable, "-m", "siem_gad", "train", "-c", str(config)], config.parent))
                trained = Path(tmp) / "local-0"  # every engine scores with the local engine's models
                scored = Path(tmp) / slug(f"score-{label}-{run}")
                shutil.copytree(trained, scored)
                set_execution(scored / "config.yaml", execution)
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
    print()
    print("| engine | `siem-gad run --once` with trained models, wall (s) | vs local |")
    print("|---|---|---|")
    for label, wall in passes.items():
        print(f"| {label} | {wall:.1f} | {passes['local'] / wall:.2f}x |")
    overhead_part(args)


def overhead_part(args: argparse.Namespace) -> None:
    overhead = json.loads(subprocess.run([sys.executable, "-c", OVERHEAD, str(args.hosts), "20"], capture_output=True,
                                         text=True, check=True).stdout.strip().splitlines()[-1])
    print()
    print(f"Per run of 6 windows ({overhead['nodes_per_window']:.0f} nodes a window, {overhead['events']} events), "
          "warm workers, median of 20 (ms):")
    print()
    print("| the run's events into the object store as Arrow | its graphs into the object store "
          "| a no-op task on the graphs (put + schedule + return) | an `iforest` scoring task "
          "| the same scoring in the driver |")
    print("|---|---|---|---|---|")
    print(f"| {overhead['put_events_ms']:.1f} | {overhead['put_run_ms']:.1f} | {overhead['noop_task_on_a_run_ms']:.1f} "
          f"| {overhead['score_task_ms']:.1f} | {overhead['score_locally_ms']:.1f} |")


SCALE_DETECTORS = {"gcn_hmm": {"type": "gcn_hmm", "training": {"windows": 24}},
                   "graph_ae": {"type": "graph_ae", "training": {"windows": 24}},
                   "iforest": {"type": "iforest", "training": {"windows": 24}},
                   "rare_links": {"type": "rare_links", "training": {"windows": 24}}}
SPIN = "import time\nwhile True:\n    sum(i * i for i in range(10000))\n"
# A fixed amount of single-threaded work, half interpreter and half numpy, like a scoring task.
FIXED_WORK = ("import numpy as np\nrows = np.random.default_rng(0).random(1_000_000)\n"
              "for _ in range(25):\n    np.sort(rows[::-1].copy())\nsum(i * i for i in range(4_000_000))\n")


def parallel_ceiling() -> float:
    """Throughput of two identical single-threaded processes side by side against one alone:
    the most a second CPU can give on this machine at this moment, whatever the engine."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", FIXED_WORK], check=True, env=env)
    alone = time.perf_counter() - began
    began = time.perf_counter()
    pair = [subprocess.Popen([sys.executable, "-c", FIXED_WORK], env=env) for _ in range(2)]
    for process in pair:
        process.wait()
    return 2 * alone / (time.perf_counter() - began)


def run_sampling_memory(command: list[str], cwd: Path, env: dict | None) -> tuple[float, float, float]:
    """Run `command`; return its wall time, the driver's peak RSS and the largest Ray worker's
    peak RSS (MiB), sampled every 0.2 s over the process tree."""
    import threading

    import psutil

    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    peaks = {"driver": 0.0, "worker": 0.0}

    def sample() -> None:
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                peaks["driver"] = max(peaks["driver"], root.memory_info().rss / 2**20)
                for child in root.children(recursive=True):
                    try:  # Ray titles its workers `ray::IDLE`, `ray::score_run` ... (not its agents)
                        title = " ".join(child.cmdline())
                        if title.startswith("ray::") and "Agent" not in title:
                            peaks["worker"] = max(peaks["worker"], child.memory_info().rss / 2**20)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if process.wait() != 0:
        raise subprocess.CalledProcessError(process.returncode, command)
    sampler.join()
    return time.perf_counter() - began, peaks["driver"], peaks["worker"]


def pass_seconds(folder: Path) -> tuple[float, float, int]:
    """The batches' own durations, those of the batches after the first (the steady state of a
    process whose workers and models are warm) and the events, from the state store."""
    with sqlite3.connect(folder / "state" / "state.sqlite") as db:
        durations = [float(d) for d, in db.execute("SELECT duration_s FROM passes WHERE window_start IS NOT NULL "
                                                   "ORDER BY window_start")]
        events = db.execute("SELECT SUM(events) FROM passes WHERE window_start IS NOT NULL").fetchone()[0]
    return sum(durations), sum(durations[1:]), int(events or 0)


def scoring_part(args: argparse.Namespace) -> None:
    engines = {"local": ({"engine": "local"}, None)}
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_rev:
            baseline = Path(tmp) / "baseline"
            baseline.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline_rev, "src"], cwd=ROOT, capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
            engines[f"local, {args.baseline_rev} (before)"] = ({"engine": "local"}, {"PYTHONPATH": str(baseline / "src")})
            # its numba kernels compile (and cache) once here, as this tree's did long ago
            warm = write_config(Path(tmp) / "warm", 20, 30, {"engine": "local"}, SCALE_DETECTORS).parent
            for command in ("train", "run"):
                timed([sys.executable, "-m", "siem_gad", command, "-c", str(warm / "config.yaml"),
                       *(["--once"] if command == "run" else [])], warm, {"PYTHONPATH": str(baseline / "src")})
        engines["ray, 1 CPU"] = ({"engine": "ray", "workers": 1}, None)
        engines["ray, 2 CPUs"] = ({"engine": "ray", "workers": 2}, None)
        if baseline is not None and args.baseline_ray:  # Ray's workers inherit the driver's PYTHONPATH
            for label, execution in (("ray, 1 CPU", {"engine": "ray", "workers": 1}),
                                     ("ray, 2 CPUs", {"engine": "ray", "workers": 2})):
                engines[f"{label}, {args.baseline_rev} (before)"] = (execution, {"PYTHONPATH": str(baseline / "src")})
        trained = write_config(Path(tmp) / "trained", args.scale_hosts, args.scale_hours, {"engine": "local"},
                               SCALE_DETECTORS).parent
        train_s = timed([sys.executable, "-m", "siem_gad", "train", "-c", str(trained / "config.yaml")], trained)
        trained_before = None
        if baseline is not None:  # the baseline trains its own models: model files need not load across versions
            trained_before = write_config(Path(tmp) / "trained-before", args.scale_hosts, args.scale_hours,
                                          {"engine": "local"}, SCALE_DETECTORS).parent
            timed([sys.executable, "-m", "siem_gad", "train", "-c", str(trained_before / "config.yaml")], trained_before,
                  {"PYTHONPATH": str(baseline / "src")})
        rows = {}
        loads = [False, True] if args.loaded else [False]
        # Rows are measured round-robin, one run of each per round, so that a drift in this VM's
        # speed over the bench (it varies by up to 1.5x within an hour) spreads over every row.
        measured = [(label + (", loaded" if loaded else ""), execution, env, loaded)
                    for loaded in loads for label, (execution, env) in engines.items()
                    if not loaded or (label.startswith("ray") and not label.endswith("(before)"))]
        runs: dict[str, list[tuple]] = {row: [] for row, *_ in measured}
        ceilings = []
        for run in range(args.repeat):
            ceilings.append(parallel_ceiling())
            for row, execution, env, loaded in measured:
                folder = Path(tmp) / slug(f"{row}-{run}")
                shutil.copytree(trained_before if row.endswith("(before)") else trained, folder)
                set_execution(folder / "config.yaml", execution)
                spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if loaded else None
                try:
                    wall, driver, worker = run_sampling_memory(
                        [sys.executable, "-m", "siem_gad", "run", "-c", str(folder / "config.yaml"), "--once"],
                        folder, env)
                finally:
                    if spinner:
                        spinner.kill()
                runs[row].append((wall, *pass_seconds(folder), driver, worker))
                shutil.rmtree(folder)
        for row, measures in runs.items():
            walls, own, steady, counts, driver_mib, worker_mib = zip(*measures)
            events = counts[0]
            rows[row] = (statistics.median(walls), statistics.median(own), statistics.median(steady), events,
                         max(driver_mib), max(worker_mib))
    print(f"Scoring pass: {args.scale_hosts} hosts x {args.scale_hours} h = {events / 1e6:.2f} M events, "
          f"{args.scale_hours} one-hour windows, 4 detectors; {os.cpu_count()} cores, median of {args.repeat}; "
          f"models trained locally once ({train_s:.0f} s)")
    print()
    print(f"Two identical single-threaded processes side by side did {statistics.median(ceilings):.2f}x the work of one "
          f"alone (median of {len(ceilings)}, one per round: {', '.join(f'{c:.2f}' for c in ceilings)}): the most "
          "any 2-CPU row can gain over its 1-CPU row here.")
    print()
    print("| engine | `run --once` wall (s) | the pass alone (s) | events/s (pass) | pass vs local | pass vs ray 1 CPU "
          "| wall vs ray 1 CPU | batches after the first (s) | those vs ray 1 CPU | driver peak RSS (MiB) "
          "| largest worker peak RSS (MiB) |")
    print("|---" * 11 + "|")
    local = rows["local"][1]
    for label, (wall, seconds, after_first, events, driver, worker) in rows.items():
        one_wall, one_pass, one_steady = rows[one_cpu_row(label, rows)][:3]
        print(f"| {label} | {wall:.1f} | {seconds:.1f} | {events / seconds:,.0f} | {local / seconds:.2f}x "
              f"| {one_pass / seconds:.2f}x | {one_wall / wall:.2f}x | {after_first:.1f} | {one_steady / after_first:.2f}x "
              f"| {driver:,.0f} | {worker:,.0f} |")


def one_cpu_row(label: str, rows: dict) -> str:
    """The row a row's ratios are taken against: Ray with 1 CPU of the same code and load."""
    same = label.replace("2 CPUs", "1 CPU")
    if label.startswith("ray") and same in rows:
        return same
    return "ray, 1 CPU" + (", loaded" if label.endswith("loaded") else "")


def slug(label: str) -> str:
    return label.replace(" ", "").replace(",", "").replace("(", "").replace(")", "")


def set_execution(config: Path, execution: dict) -> None:
    settings = yaml.safe_load(config.read_text())
    settings["execution"] = execution
    config.write_text(yaml.safe_dump(settings, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["training", "scoring", "overhead", "all"], default="all")
    parser.add_argument("--hosts", type=int, default=300)
    parser.add_argument("--hours", type=int, default=72)
    parser.add_argument("--scale-hosts", type=int, default=2000)
    parser.add_argument("--scale-hours", type=int, default=180)
    parser.add_argument("--baseline-rev", default=None, help="a commit whose local engine the scoring part also runs")
    parser.add_argument("--baseline-ray", action="store_true", help="also run the Ray rows with --baseline-rev's code")
    parser.add_argument("--loaded", action="store_true", help="repeat the scoring part's Ray rows beside a busy process")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if args.part in ("training", "all"):
        training_part(args)
    elif args.part == "overhead":
        overhead_part(args)
    if args.part in ("scoring", "all"):
        print()
        scoring_part(args)


if __name__ == "__main__":
    main()
