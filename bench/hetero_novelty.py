"""`hetero_gnn` with and without its novelty half, IoT-23 leave one capture out.

Every capture is scored by a `hetero_gnn` trained on the five others (corrected C&C labels, as
the label audit does; the first `--rows` flows of each capture, 10-minute windows of 128 flows),
its threshold fixed on those five: best F1 on their held-out flows. `novelty: true` adds the
isolation forest over the benign training flows, combined as max(P, threshold x novelty /
novelty threshold). Figures per held-out capture: flow ROC-AUC, F1 at the fixed threshold,
and the false-positive rate on its benign flows. Median over `--seeds` seeds (range).

    .venv/bin/python bench/hetero_novelty.py [--rows 20000] [--seeds 3] [--epochs 30] [--time-features both]

`--time-features both` also trains on graphs whose flows carry the time of day and of week
(the `host_flow` builder's `time_features`), in the same run: what those features do on a
network the model never saw.

Data: ../shared/data/iot23. About 3 minutes here (2 cores). Prints Markdown.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import numpy as np

from flow_data import IOT23_CAPTURES, iot23
from graph_detectors import build


def figures(model, test: list, truth: np.ndarray) -> tuple[float, float, float]:
    from sklearn.metrics import f1_score, roc_auc_score

    scores = np.concatenate(model.target_scores(test))
    alerted = scores >= model.threshold_
    auc = roc_auc_score(truth, scores) if 0 < truth.sum() < len(truth) else float("nan")
    f1 = f1_score(truth, alerted) if truth.any() else float("nan")
    return auc, f1, float(alerted[~truth].mean())


def cell(values: list[float]) -> str:
    if all(np.isnan(values)):
        return "-"
    return f"{np.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main(argv: list[str] | None = None) -> None:
    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
    from siem_gad.graphs.host_flow import FLOW, HostFlowGraphBuilder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="flows read from the start of each capture")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--time-features", choices=["default", "both"], default="default",
                        help="both: also the builder with the time of day and of week as flow features")
    args = parser.parse_args(argv)
    variants = [False, True] if args.time_features == "both" else [HostFlowGraphBuilder().params.time_features]
    captures = {c: iot23(c, rows=args.rows, corrected_labels=True) for c in IOT23_CAPTURES}
    windows = {}
    for timed in variants:
        builder = HostFlowGraphBuilder(flows_per_graph=128, label_field="label", class_field="label.detailed",
                                       time_features=timed)
        windows[timed] = {c: build(builder, events, timedelta(minutes=10)) for c, events in captures.items()}
    print("| held-out capture | attack flows / flows | model | ROC-AUC | F1 at the fixed threshold | "
          "false-positive rate |\n|---|---|---|---|---|---|")
    for held in IOT23_CAPTURES:
        for timed in variants:
            train = [w for c in IOT23_CAPTURES if c != held for w in windows[timed][c]]
            truth = np.concatenate([w.node_label[w.node_kind == FLOW] for w in windows[timed][held]]) != "benign"
            for novelty in (False, True):
                runs = [figures(HeteroGnnDetector(epochs=args.epochs, hidden=32, seed=seed, novelty=novelty).fit(train),
                                windows[timed][held], truth) for seed in range(1, args.seeds + 1)]
                auc, f1, fpr = (list(v) for v in zip(*runs))
                name = "`hetero_gnn`, `novelty: true`" if novelty else "`hetero_gnn`"
                if len(variants) > 1:
                    name += ", time features" if timed else ", no time features"
                print(f"| {held} | {int(truth.sum())} / {len(truth)} | {name} | {cell(auc)} | {cell(f1)} | "
                      f"{cell(fpr)} |", flush=True)


if __name__ == "__main__":
    main()
