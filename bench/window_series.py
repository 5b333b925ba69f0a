"""Benchmark: window anomalies from the time series of window aggregates (`lstm_ae`).

Data: the default config's simulated enterprise (seed 7, 72 one-hour windows, 40
workstations), network graph source.ip x destination.ip. Each window is one vector of
aggregates (`lstm_ae.window_vector`). The first 48 windows train, windows 48-71 are scored.
A window is positive when it holds attack events other than the low-and-slow beaconing (which
runs through 19 of the 24 scored windows). Threshold: mean + 3 sigma of the training scores for
both the LSTM autoencoder and the baseline, Isolation Forest on the same window vectors.
Precision, recall and F1 at that threshold, and ROC-AUC; median and range over `--seeds`.

Usage: python bench/window_series.py [--seeds 5] [--epochs N]
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import numpy as np

from siem_gad.detectors.lstm_ae import LstmAeDetector, window_vector
from siem_gad.evaluate.metrics import score_metrics
from siem_gad.events import finalize_events
from siem_gad.graphs import WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.simulator import Enterprise

ATTACKS = {"ssh_bruteforce", "port_scan", "lateral_movement", "exfiltration"}
BASELINE = "iforest on window vectors (baseline)"


def evaluate(seeds: int = 5, epochs: int | None = None) -> dict[str, list[dict]]:
    """Train both detectors on windows 0-47 per seed; metrics on windows 48-71 at mean + 3 sigma.

    Returns, per detector, one `score_metrics` result per seed. `epochs` overrides the
    detector's default (the test suite's reduced run)."""
    from sklearn.ensemble import IsolationForest

    windows, labels = labeled_windows()
    width = windows[0].x.shape[1]
    vectors = np.stack([window_vector(w, width) for w in windows])
    results: dict[str, list] = {"lstm_ae": [], BASELINE: []}
    for seed in range(seeds):
        lstm = LstmAeDetector(seed=seed, **({"epochs": epochs} if epochs else {})).fit(windows[:48])
        scores = np.concatenate(lstm.score(windows[48:]))
        results["lstm_ae"].append(score_metrics(labels, scores, lstm.threshold_, k=5))
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(vectors[:48])
        train, test = -forest.score_samples(vectors[:48]), -forest.score_samples(vectors[48:])
        results[BASELINE].append(score_metrics(labels, test, float(train.mean() + 3 * train.std()), k=5))
    return results


def labeled_windows():
    """The 72 simulated windows and, for the scored windows 48-71, whether each holds an attack."""
    enterprise = Enterprise(seed=7)
    events = finalize_events(enterprise.events(enterprise.start, enterprise.end), "sim")
    windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), 72))
    hour = ((events["@timestamp"] - events["@timestamp"].min().floor("h")) // np.timedelta64(1, "h")).to_numpy()
    attack_hours = set(hour[events["labels.attack"].astype(str).isin(ATTACKS).to_numpy()])
    return windows, np.array([w.index in attack_hours for w in windows[48:]])


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="override lstm_ae's epochs (quick runs)")
    args = parser.parse_args(argv)
    results = evaluate(args.seeds, args.epochs)
    print(f"72 windows (train 0-47, score 48-71), {results['lstm_ae'][0]['positives']} positive of 24; "
          f"{args.seeds} seeds\n")
    print("| detector | precision | recall | F1 | ROC-AUC | (median; range of F1) |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        get = lambda key: np.array([r["at_threshold"][key] for r in runs])  # noqa: E731
        f1 = get("f1")
        print(f"| {name} | {np.median(get('precision')):.2f} | {np.median(get('recall')):.2f} | {np.median(f1):.2f} | "
              f"{np.median([r['roc_auc'] for r in runs]):.3f} | {f1.min():.2f}-{f1.max():.2f} |")
    return results


if __name__ == "__main__":
    main()
