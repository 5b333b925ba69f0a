"""`vae`'s error options on flow records: LUFlow days and IoT-23 captures.

The defaults of `vae` (`error_power`, `min_variance`) were first chosen on NSL-KDD
(bench/nsl_kdd.py), and NSL-KDD's best pair collapses on KDD Cup 99 (bench/kdd_outliers.py).
This bench adds two labeled data sets of another kind, flow records, so that a default is
judged on four. Each model trains on benign flows only and scores flows it never saw:

- LUFlow: the benign flows of the two earliest days (2020-07-08 and 07-09) train; each later
  attack day (07-11, 09-09) is scored alone, malicious flows against the rest. Features: the
  flows' own fields as the deployment bench's flow forest reads them (bytes, packets, duration,
  inter-packet time, entropy, port, protocol; log1p), a missing value counted as 0 as the
  builders count it.
- IoT-23: the `host_flow` builder's flow features without the time of day (numeric fields,
  transport and Zeek state one-hots, TCP flags), corrected labels, the first `--rows` flows of
  each capture; the benign flows of the other five captures train, and each malware capture
  with at least 100 attack flows (34-1, 42-1, 44-1) is scored alone.

Training rows are a random `--max-rows` of the benign flows. Each model has the product's
defaults but the options named; the baseline is an isolation forest (200 trees) on the same
rows, in the same run. ROC-AUC per day or capture, median over `--seeds` seeds (range).

    .venv/bin/python bench/vae_flows.py [--seeds 3] [--max-rows 20000] [--rows 20000] [--luflow-rows N]

Data: ../shared/data/luflow, ../shared/data/iot23. About 12 minutes here (2 cores). Prints
Markdown.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import numpy as np

from deployment import FlowForest
from flow_data import IOT23_CAPTURES, iot23, luflow
from graph_detectors import build

LUFLOW_HISTORY, LUFLOW_ATTACK_DAYS = ("2020.07.08", "2020.07.09"), ("2020.07.11", "2020.09.09")
IOT23_SCORED = ("CTU-Malware-Capture-34-1", "CTU-Malware-Capture-42-1", "CTU-Malware-Capture-44-1")
VARIANTS = {"`vae` (defaults: error_power 1, min_variance 0.1)": {},
            "`vae`, squared error (error_power 2, min_variance 0: the defaults before)": {"error_power": 2.0,
                                                                                          "min_variance": 0.0},
            "`vae`, error_power 0.5, min_variance 0.1 (NSL-KDD's best)": {"error_power": 0.5, "min_variance": 0.1}}


def luflow_rows(events) -> np.ndarray:
    return np.nan_to_num(FlowForest.rows(events))


def luflow_sets(rows: int | None) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    history = [luflow(day, rows) for day in LUFLOW_HISTORY]
    train = np.concatenate([luflow_rows(events[events["label"] == "benign"]) for events in history])
    scored = {}
    for day in LUFLOW_ATTACK_DAYS:
        events = luflow(day, rows)
        scored[day] = (luflow_rows(events), (events["label"] == "malicious").to_numpy())
    return train, scored


def iot23_flows(rows: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each capture's flow features and whether each flow is an attack."""
    from siem_gad.graphs.host_flow import FLOW, HostFlowGraphBuilder

    builder = HostFlowGraphBuilder(flows_per_graph=128, label_field="label", time_features=False)
    flows = {}
    for capture in IOT23_CAPTURES:
        windows = build(builder, iot23(capture, rows=rows, corrected_labels=True), timedelta(minutes=10))
        flows[capture] = (np.concatenate([w.kind_x(FLOW) for w in windows]),
                          np.concatenate([w.node_label[w.node_kind == FLOW] for w in windows]) != "benign")
    return flows


def rows_for(data: str, train: np.ndarray, scored: dict, seeds: int, max_rows: int) -> None:
    """One Markdown row per (scored set, model): ROC-AUC median (range) over the seeds."""
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    from siem_gad.detectors.vae import VaeDetector

    if len(train) > max_rows:
        train = train[np.random.default_rng(0).choice(len(train), max_rows, replace=False)]
    aucs: dict[tuple[str, str], list[float]] = {}
    for seed in range(seeds):
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(train)
        for name, (X, y) in scored.items():
            aucs.setdefault((name, "isolation forest (baseline)"), []).append(roc_auc_score(y, -forest.score_samples(X)))
        for variant, options in VARIANTS.items():
            model = VaeDetector(seed=seed, **options).fit_matrix(train)
            for name, (X, y) in scored.items():
                aucs.setdefault((name, variant), []).append(roc_auc_score(y, model.score_matrix(X)))
    for (name, model), values in sorted(aucs.items(), key=lambda item: item[0][0]):
        attacks = int(scored[name][1].sum())
        print(f"| {data} | {name} | {attacks:,} / {len(scored[name][1]):,} | {model} | {np.median(values):.3f} "
              f"({min(values):.3f}-{max(values):.3f}) |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=20_000, help="benign training flows drawn per model")
    parser.add_argument("--rows", type=int, default=20_000, help="IoT-23 flows read from the start of each capture")
    parser.add_argument("--luflow-rows", type=int, default=None, help="LUFlow flows read from the start of each day "
                                                                        "(default: all)")
    parser.add_argument("--data", choices=["both", "luflow", "iot23"], default="both")
    args = parser.parse_args(argv)
    print("| data | scored | attack flows / flows | model | ROC-AUC |\n|---|---|---|---|---|")
    if args.data in ("both", "luflow"):
        train, scored = luflow_sets(args.luflow_rows)
        rows_for("LUFlow, trained on 07-08 and 07-09's benign flows", train, scored, args.seeds, args.max_rows)
    if args.data in ("both", "iot23"):
        flows = iot23_flows(args.rows)
        for held in IOT23_SCORED:
            train = np.concatenate([X[~y] for capture, (X, y) in flows.items() if capture != held])
            rows_for("IoT-23, trained on the other captures' benign flows", train, {held: flows[held]}, args.seeds,
                     args.max_rows)


if __name__ == "__main__":
    main()
