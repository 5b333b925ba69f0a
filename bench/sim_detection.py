"""Detection quality on the simulator's labeled data, through `siem-gad evaluate`.

The default config (`config.example.yaml`: 72 one-hour windows, 40 workstations) is evaluated
with the product's own evaluation code, so these figures are what a user gets from
`siem-gad evaluate`, once per simulator seed (`--seeds`: other realisations of the same
enterprise and attack schedule), with medians and ranges over them:

1. every attack type positive (`labels.attack` != benign): the entity-window figures;
2. every attack type but the low-and-slow beaconing, which runs through 19 of the 24 scored
   windows and would make almost every window positive: the window-level figures.

`--gate-off` adds `gcn_hmm` with `hold_state_on_outliers: false`, in the same run, as the
baseline of that setting. `--extrapolate` adds every `iforest` with `extrapolate` switched the
other way (`iforest_extrapolate` or `iforest_plain`), likewise.

Split: each detector trains on the first 48 windows (its `training.windows`) and scores 48-71.

Usage: python bench/sim_detection.py [--seeds 7,11,13] [--gate-off] [--extrapolate] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import yaml

from siem_gad.evaluate.report import write_report
from siem_gad.evaluate.runner import evaluate
from siem_gad.pipeline import App

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = ["ssh_bruteforce", "port_scan", "lateral_movement", "exfiltration"]
METRICS = ("roc_auc", "average_precision", "precision_at_20")


def config_for(folder: Path, seed: int, gate_off: bool, extrapolate: bool = False) -> Path:
    """The default config with simulator seed `seed` (and a gcn_hmm without the gate, and
    each iforest with `extrapolate` switched)."""
    config = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    config["sources"]["sim"]["seed"] = seed
    config["rules_dir"] = str(ROOT / "rules")
    if gate_off:
        network = config["jobs"]["network"]["detectors"]
        network["gcn_hmm_no_gate"] = {**network["gcn_hmm"], "hold_state_on_outliers": False}
    if extrapolate:
        for job in config["jobs"].values():
            for name, detector in list(job["detectors"].items()):
                if detector["type"] == "iforest":
                    switched = not detector.get("extrapolate", False)
                    job["detectors"][f"iforest_{'extrapolate' if switched else 'plain'}"] = {
                        **detector, "extrapolate": switched}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cell(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="7", help="simulator seeds, comma-separated (7: the default config)")
    parser.add_argument("--gate-off", action="store_true", help="also gcn_hmm with hold_state_on_outliers: false")
    parser.add_argument("--extrapolate", action="store_true", help="also every iforest with extrapolate switched")
    parser.add_argument("--out", type=Path, default=None, help="also write each evaluation's report here")
    args = parser.parse_args(argv)
    rows: dict[tuple, dict] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, positives in (("all attacks", None), ("without beaconing", ATTACKS)):
            with tempfile.TemporaryDirectory() as folder:
                app = App.open(config_for(Path(folder), seed, args.gate_off, args.extrapolate), state_dir=Path(folder) / "state")
                try:
                    result = evaluate(app, label_field="labels.attack", positives=positives)
                finally:
                    app.close()
            if args.out:
                write_report(result, args.out / f"seed-{seed}" / name.replace(" ", "-"))
            for d in result.detectors:
                if (d.level == "window") != (positives is not None):
                    continue
                graph = " x ".join(app.job(d.job).builder.entity_fields)
                row = rows.setdefault((graph, d.detector, d.level, name), {m: [] for m in (*METRICS, "counts")})
                for m in METRICS:
                    row[m].append(float(d.metrics[m]))
                row["counts"].append(f"{d.metrics['positives']} / {d.metrics['items']}")
    print("| graph | detector | level | positives | ROC-AUC | AP | precision@20 | positives / items |")
    print("|---|---|---|---|---|---|---|---|")
    for (graph, detector, level, name), row in rows.items():
        counts = sorted(set(row["counts"]))
        print(f"| {graph} | {detector} | {level} | {name} | {cell(row['roc_auc'])} | "
              f"{cell(row['average_precision'])} | {cell(row['precision_at_20'], 2)} | {', '.join(counts)} |")
    return rows


if __name__ == "__main__":
    main()
