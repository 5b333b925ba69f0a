"""Detection quality on the simulator's labeled data, through `siem-gad evaluate`.

The default config (`config.example.yaml`: seed 7, 72 one-hour windows, 40 workstations) is
evaluated twice with the product's own evaluation code, so these figures are what a user gets
from `siem-gad evaluate`:

1. every attack type positive (`labels.attack` != benign): the entity-window figures;
2. every attack type but the low-and-slow beaconing, which runs through 19 of the 24 scored
   windows and would make almost every window positive: the window-level figures.

Split: each detector trains on the first 48 windows (its `training.windows`) and scores 48-71.

Usage: python bench/sim_detection.py [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from siem_gad.evaluate.report import write_report
from siem_gad.evaluate.runner import evaluate
from siem_gad.pipeline import App

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = ["ssh_bruteforce", "port_scan", "lateral_movement", "exfiltration"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None, help="also write the two reports here")
    args = parser.parse_args()
    print("| graph | detector | level | positives | ROC-AUC | AP | precision@20 | positives / items |")
    print("|---|---|---|---|---|---|---|---|")
    for name, positives in (("all attacks", None), ("without beaconing", ATTACKS)):
        with tempfile.TemporaryDirectory() as state:
            app = App.open(ROOT / "config.example.yaml", state_dir=Path(state))
            try:
                result = evaluate(app, label_field="labels.attack", positives=positives)
            finally:
                app.close()
        if args.out:
            write_report(result, args.out / name.replace(" ", "-"))
        for d in result.detectors:
            if (d.level == "window") != (positives is not None):
                continue
            graph = " x ".join(app.job(d.job).builder.entity_fields)
            m = d.metrics
            print(f"| {graph} | {d.detector} | {d.level} | {name} | {m['roc_auc']:.3f} | {m['average_precision']:.3f} | "
                  f"{m['precision_at_20']:.2f} | {m['positives']} / {m['items']} |")


if __name__ == "__main__":
    main()
