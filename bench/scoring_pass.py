"""The default config's scoring pass on about 1 M simulated events, idle and loaded, in one run.

The jobs `network` and `auth` of `config.example.yaml` (`network`: bipartite source.ip x destination.ip scored by
`gcn_hmm` and `iforest`; `auth`: user.name x host.name scored by `iforest`) run on the
simulated enterprise grown to `--hosts` workstations over `--hours` hours (1,000 x 90: 1.0 M
events). Each measurement is a fresh process:

1. `train`: the first pass's model training (`training.windows: 48` per detector), timed per
   detector (`fit_seconds` of the model record) with the threshold it chose;
2. `score`: a pass over every window, from a copy of the trained state, so every measurement
   scores the same windows: timed from loading the models to the commit. Two passes in one
   process, each from its own copy: the first pays what a new process pays once (compiled
   kernels loaded, first allocations), the next is a pass of `siem-gad run` after its first.
   With `--repeat N` the next pass runs N times (each from its own copy) and the row reports
   the one with the median events/s: on a shared VM a single pass can be off by a third.
   torch and PyG are imported before either (5 s that `siem-gad run` pays at start-up).
   Reported: events/s of the whole pass (the source's read included) and without the
   source's own read time (a SIEM source has its own read cost), model loading, and the
   seconds in each detector's `score`.

Loaded means `--load` CPU-bound processes (started by this bench) running beside it.
`--baseline REV` runs the same measurements with the code of git revision REV (its `src/`, on
its own config.example.yaml and rules), so a speed-up is measured against the old code in the
same run; with `--baseline-config-only` this code runs REV's config instead, which measures
what a change of the default config costs.

    .venv/bin/python bench/scoring_pass.py --baseline c6672c8 --load 1 --repeat 5

Prints a Markdown table for docs/benchmarks.md and writes bench/results/scoring_pass.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cpu_load import cpu_load

ROOT = Path(__file__).resolve().parents[1]

PHASE = r"""
import json, sys, time
phase, configs = sys.argv[1], sys.argv[2:]
import torch, torch_geometric  # imported before the clock starts: a scheduled pass has them loaded
from siem_gad.pipeline import App
out = {"passes": [], "threads": torch.get_num_threads()}
for config in configs:  # score: the same windows from fresh copies of the trained state, in one process
    app = App.open(config)
    jobs = {}
    for job in app.config.jobs:
        runner = app.job(job)
        if phase == "train":
            runner.ensure_models(runner.plan())
            jobs[job] = {name: {"fit_seconds": m.record.metrics["fit_seconds"],
                                "threshold": m.record.metrics["threshold"]} for name, m in runner.models.loaded.items()}
            continue
        read_seconds, score_seconds = [0.0], {}
        def timed_read(*args, _read=type(runner.source).read, _source=runner.source, **kwargs):
            began = time.perf_counter()
            try:
                return _read(_source, *args, **kwargs)
            finally:
                read_seconds[0] += time.perf_counter() - began
        runner.source.read = timed_read  # the jobs share the source: each job times its own reads
        began = time.perf_counter()
        for name in app.config.jobs[job].detectors:  # loads the model
            assert runner.models.current(name) is not None, f"{job}/{name}: not trained"
        load_seconds = time.perf_counter() - began
        for name, loaded in runner.models.loaded.items():
            def timed_score(windows, _score=loaded.detector.score, _name=name):
                began = time.perf_counter()
                try:
                    return _score(windows)
                finally:
                    score_seconds[_name] = score_seconds.get(_name, 0.0) + time.perf_counter() - began
            loaded.detector.score = timed_score
        began = time.perf_counter()
        outcome = runner.run_pass()
        seconds = time.perf_counter() - began + load_seconds
        assert outcome.status == "ok", outcome.message
        jobs[job] = {"seconds": seconds, "read_seconds": read_seconds[0], "load_seconds": load_seconds,
                     "score_seconds": score_seconds, "events": outcome.events, "windows": outcome.windows,
                     "alerts": outcome.alerts}
    out["passes"].append(jobs)
    if phase == "train":
        out["jobs"] = jobs
print(json.dumps(out))
"""

JOBS = ("network", "auth")  # the example config's jobs when issue 19 was measured (the baseline knows no others)


def write_config(folder: Path, hosts: int, hours: int, threads: str, tree: Path = ROOT) -> Path:
    """The `JOBS` of `tree`'s config.example.yaml, grown to `hosts` x `hours`, with the rules of
    `tree`'s rules/ that score them."""
    import yaml

    config = yaml.safe_load((tree / "config.example.yaml").read_text(encoding="utf-8"))
    config["sources"]["sim"].update(hosts=hosts, hours=hours)
    config["jobs"] = {name: job for name, job in config["jobs"].items() if name in JOBS}
    rules = folder / "rules"
    rules.mkdir()
    for rule in (tree / "rules").glob("*.yml"):
        spec = yaml.safe_load(rule.read_text(encoding="utf-8"))
        if spec["detector"] in config["jobs"].get(spec["job"], {}).get("detectors", {}):
            shutil.copy(rule, rules / rule.name)
    if threads != "auto":
        config["threads"] = int(threads)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def phase(name: str, configs: list[Path], src: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = str(src)
    result = subprocess.run([sys.executable, "-c", PHASE, name, *map(str, configs)], capture_output=True, text=True,
                            env=env, cwd=configs[0].parent)
    if result.returncode:
        raise SystemExit(f"{name} failed with the code in {src}:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def tree_of(revision: str, folder: Path) -> Path:
    """The `src/`, config.example.yaml and rules/ of a git revision, extracted into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", revision, "src", "config.example.yaml", "rules"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def measure(label: str, src: Path, tmp: Path, args: argparse.Namespace, threads: str, tree: Path = ROOT) -> list[dict]:
    """Rows of one code (`src`) on one config (`tree`'s), idle and loaded."""
    trained = tmp / f"{label}-trained"
    trained.mkdir()
    config = write_config(trained, args.hosts, args.hours, threads, tree)
    rows = []
    for loaded in (False, True):
        with cpu_load(args.load if loaded else 0, 3600):
            if not loaded:  # train once, idle; the loaded row trains again to time it under load
                training = phase("train", [config], src)
                shutil.copytree(trained, tmp / f"{label}-models")
            else:
                shutil.rmtree(trained)
                shutil.copytree(tmp / f"{label}-models", trained)
                for database in (trained / "state").glob("state.sqlite*"):
                    database.unlink()  # the models are forgotten: the pass trains them again
                training = phase("train", [config], src)
            copies = [tmp / f"{label}-{loaded}-{n}" for n in ("first", *(f"next{k}" for k in range(args.repeat)))]
            for copy in copies:
                shutil.copytree(tmp / f"{label}-models", copy)
            score = phase("score", [copy / "config.yaml" for copy in copies], src)
            for copy in copies:
                shutil.rmtree(copy)
        rows.append({"code": label, "loaded": loaded, "train": training, "score": score})
    return rows


def pass_summary(jobs: dict) -> dict:
    events = jobs["network"]["events"]  # both jobs read the same events
    seconds = sum(j["seconds"] for j in jobs.values())
    reading = sum(j["read_seconds"] for j in jobs.values())
    return {"events": events, "seconds": seconds, "read_seconds": reading,
            "load_seconds": sum(j["load_seconds"] for j in jobs.values()),
            "iforest_score_s": sum(j["score_seconds"]["iforest"] for j in jobs.values()),
            "events_per_s": events / seconds, "events_per_s_without_read": events / (seconds - reading),
            "gcn_hmm_score_s": jobs["network"]["score_seconds"]["gcn_hmm"],
            "alerts": sum(j["alerts"] for j in jobs.values())}


def summary(row: dict) -> dict:
    first, *repeats = (pass_summary(jobs) for jobs in row["score"]["passes"])
    following = sorted(repeats, key=lambda p: p["events_per_s"])[(len(repeats) - 1) // 2]  # the median one
    network = row["train"]["jobs"]["network"]["gcn_hmm"]
    return {"first": first, "next": following, "events": first["events"],
            "next_events_per_s_all": [p["events_per_s"] for p in repeats],
            "gcn_hmm_fit_s": network["fit_seconds"], "gcn_hmm_threshold": network["threshold"]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=90)
    parser.add_argument("--load", type=int, default=1, help="CPU-bound processes beside the loaded runs")
    parser.add_argument("--repeat", type=int, default=1, help="next passes per row; the median one is reported")
    parser.add_argument("--baseline", help="git revision whose code is measured the same way, in the same run")
    parser.add_argument("--baseline-config-only", action="store_true",
                        help="measure this code on the --baseline revision's config and rules (what a config change costs)")
    parser.add_argument("--baseline-threads", default="auto",
                        help="`threads` for the baseline's config (revisions before the policy ignore it)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scoring_pass.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.baseline:
            tree = tree_of(args.baseline, tmp / "baseline")
            if args.baseline_config_only:  # this code on the revision's config and rules
                rows += measure(f"this code, {args.baseline}'s config", ROOT / "src", tmp, args, "auto", tree)
            else:
                rows += measure(f"baseline {args.baseline}", tree / "src", tmp, args, args.baseline_threads, tree)
        rows += measure("this code", ROOT / "src", tmp, args, "auto")
    for row in rows:
        row["summary"] = summary(row)
    idle = {r["code"]: r["summary"] for r in rows if not r["loaded"]}
    now = idle["this code"]
    print(f"{now['events']:,} events, {args.hosts} hosts x {args.hours} h, {os.cpu_count()} cores; "
          f"loaded = {args.load} CPU-bound process(es) beside it")
    print("| code | machine | pass | events/s | without source read | vs idle | model loading (s) | "
          "iforest score (s) | gcn_hmm score (s) | gcn_hmm training (s) | threshold | alerts |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        s = row["summary"]
        nexts = "next, same process" + (f" (median of {args.repeat})" if args.repeat > 1 else "")
        for which, label in (("first", "first in a new process"), ("next", nexts)):
            p = s[which]
            print(f"| {row['code']} | {'loaded' if row['loaded'] else 'idle'} | {label} | {p['events_per_s']:,.0f} | "
                  f"{p['events_per_s_without_read']:,.0f} | "
                  f"{p['events_per_s'] / idle[row['code']][which]['events_per_s']:.2f}x | {p['load_seconds']:.2f} | "
                  f"{p['iforest_score_s']:.2f} | {p['gcn_hmm_score_s']:.2f} | {s['gcn_hmm_fit_s']:.1f} | "
                  f"{s['gcn_hmm_threshold']:.4g} | {p['alerts']} |")
    if args.baseline:
        base = {r["loaded"]: r["summary"] for r in rows if r["code"] != "this code"}
        for row in rows:
            if row["code"] == "this code":
                b, s = base[row["loaded"]], row["summary"]
                print(f"{'loaded' if row['loaded'] else 'idle'}: gcn_hmm training {b['gcn_hmm_fit_s'] / s['gcn_hmm_fit_s']:.1f}x "
                      f"faster; scoring pass {s['first']['events_per_s'] / b['first']['events_per_s']:.2f}x (first), "
                      f"{s['next']['events_per_s'] / b['next']['events_per_s']:.2f}x (next)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
