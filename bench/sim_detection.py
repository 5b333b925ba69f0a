"""Detection quality on the simulator's labeled data (the default config's setting).

Split: the first 48 one-hour windows train, windows 48-71 are scored (they hold every attack).
Labels: an entity-window is positive when any of its events is an attack event
(`labels.attack` != benign); a window is positive when it holds attack events other than the
low-and-slow beaconing (which runs through 19 of the 24 test windows) and have the graph's
left-hand entity field (so the auth graph's positives are the brute-force and lateral-movement hours).
Metrics: ROC-AUC and average precision (scikit-learn), precision of the top 20.

Usage: python bench/sim_detection.py [--seed 7]
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from siem_gad.detectors.gcn_hmm import GcnHmmDetector
from siem_gad.detectors.iforest import IsolationForestDetector
from siem_gad.events import finalize_events
from siem_gad.graphs import WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.simulator import Enterprise


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    seed = parser.parse_args().seed
    enterprise = Enterprise(seed=seed)
    events = finalize_events(enterprise.events(enterprise.start, enterprise.end), "sim")
    hour = ((events["@timestamp"] - pd.Timestamp(enterprise.start)) // pd.Timedelta(hours=1)).to_numpy()
    attack = events["labels.attack"].astype(str).to_numpy() != "benign"
    print(f"seed {seed}: {len(events):,} events, 72 windows, train 0-47, test 48-71\n")
    print("| graph | detector | level | ROC-AUC | AP | precision@20 | positives / items |")
    print("|---|---|---|---|---|---|---|")
    for left, right in [("source.ip", "destination.ip"), ("user.name", "host.name")]:
        truth = set()
        for field in (left, right):
            values = events[field].astype(object).to_numpy()
            truth |= {(h, field, str(v)) for h, v in zip(hour[attack], values[attack]) if pd.notna(v)}
        windows = BipartiteGraphBuilder(source_field=left, target_field=right).build(
            events, WindowGrid(enterprise.start, timedelta(hours=1), 72))
        forest = IsolationForestDetector(seed=0).fit(windows[:48])
        labels, scores = [], []
        for window, values in zip(windows[48:], forest.score(windows[48:])):
            for node in range(window.num_nodes):
                (field, value), = window.entity(node).items()
                labels.append((window.index, field, value) in truth)
                scores.append(values[node])
        report(f"{left} x {right}", "iforest", "entity-window", np.array(labels), np.array(scores))
        gcn = GcnHmmDetector(seed=0).fit(windows[:48])
        window_scores = np.concatenate(gcn.score(windows[48:]))
        in_graph = attack & (events["labels.attack"].astype(str).to_numpy() != "beaconing") & events[left].notna().to_numpy()
        busy = set(hour[in_graph])
        window_labels = np.array([w.index in busy for w in windows[48:]])
        report(f"{left} x {right}", "gcn_hmm", "window", window_labels, window_scores)


def report(graph: str, detector: str, level: str, labels: np.ndarray, scores: np.ndarray) -> None:
    top = labels[np.argsort(-scores)[:20]].mean()
    print(f"| {graph} | {detector} | {level} | {roc_auc_score(labels, scores):.3f} | "
          f"{average_precision_score(labels, scores):.3f} | {top:.2f} | {labels.sum()} / {len(labels)} |")


if __name__ == "__main__":
    main()
