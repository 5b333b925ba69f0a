"""Benchmark: window anomalies from the time series of window aggregates (`lstm_ae`).

Each window of a graph source.ip x destination.ip is one vector of aggregates
(`lstm_ae.window_vector`). The LSTM autoencoder trains on a quiet stretch of windows and scores
the windows after it; each pass is scored in one call, so a window's sequence holds its real
history, as in `siem-gad run`. Threshold: mean + 3 sigma, for `lstm_ae` of the errors on its
held-out validation windows (the detector's default), for the baselines of their training
scores. Baselines on the same windows: Isolation Forest on the window vectors, and the log
event count alone. Precision, recall and F1 at the threshold, and ROC-AUC; median and range
over `--seeds`.

Data (`--data`):
- `simulator`: the default config's simulated enterprise (seed 7, 72 one-hour windows, 40
  workstations). Windows 0-47 train, 48-71 are scored. A window is positive when it holds
  attack events other than the low-and-slow beaconing (which runs through 19 of the 24
  scored windows).
- `luflow`: three LUFlow days (Mills et al., Lancaster University; real traffic of a
  university network with flows labeled by its honeypot-fed pipeline), 10-minute windows.
  About 130 malicious flows arrive in every 10 minutes; in bursts there are up to 3,000.
  Training: 2020-07-08 02:30 to 2020-07-09 12:00 UTC (201 windows, no burst). Scored:
  2020-07-09 12:00-24:00 (72 windows, continuing the training pass) and 2020-07-11 (144
  windows; 07-10 is missing, so that day starts without history). A window is positive when its
  malicious flows exceed 3 x the median of the training windows' (a burst).

Usage: python bench/window_series.py [--data simulator|luflow] [--seeds 5] [--epochs N]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from siem_gad.detectors.lstm_ae import LstmAeDetector, window_vector
from siem_gad.evaluate.metrics import score_metrics
from siem_gad.events import finalize_events
from siem_gad.graphs import GraphWindow, WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.simulator import Enterprise

ATTACKS = {"ssh_bruteforce", "port_scan", "lateral_movement", "exfiltration"}
BASELINE = "iforest on window vectors (baseline)"
EVENT_COUNT = "event count (baseline)"
NO_VALIDATION = "lstm_ae, validation: 0 (threshold from the fitted windows)"
LUFLOW_WINDOW = timedelta(minutes=10)


@dataclass
class Series:
    """Training windows and the passes that are scored after them. A pass is scored in one call;
    its first `history` windows only give the later ones their history and are not counted."""

    training: list[GraphWindow]
    passes: list[tuple[list[GraphWindow], int]]
    labels: np.ndarray  # one per counted window, in order

    def counted(self, scores: list[np.ndarray]) -> np.ndarray:
        """The counted windows' scores out of one score array per pass."""
        return np.concatenate([s[history:] for s, (_, history) in zip(scores, self.passes)])


def evaluate(seeds: int = 5, epochs: int | None = None, data: str = "simulator") -> dict[str, list[dict]]:
    """Per detector, one `score_metrics` result per seed. `epochs` overrides the LSTM
    autoencoder's default (the test suite's reduced run)."""
    from sklearn.ensemble import IsolationForest

    series = DATA_SETS[data]()
    width = series.training[0].x.shape[1]
    training = np.stack([window_vector(w, width) for w in series.training])
    scored = series.counted([np.stack([window_vector(w, width) for w in windows]) for windows, _ in series.passes])
    variants = {"lstm_ae": {}, NO_VALIDATION: {"validation": 0.0}}
    results: dict[str, list] = {**{name: [] for name in variants}, BASELINE: [], EVENT_COUNT: []}
    for seed in range(seeds):
        for name, options in variants.items():
            lstm = LstmAeDetector(seed=seed, **options, **({"epochs": epochs} if epochs else {})).fit(series.training)
            scores = series.counted([np.concatenate(lstm.score(windows)) for windows, _ in series.passes])
            results[name].append(score_metrics(series.labels, scores, lstm.threshold_, k=5))
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(training)
        results[BASELINE].append(sigma_rule(series.labels, -forest.score_samples(training), -forest.score_samples(scored)))
    # window_vector's first entry is log1p(events); the count has no seed
    results[EVENT_COUNT] = [sigma_rule(series.labels, training[:, 0], scored[:, 0])] * seeds
    return results


def sigma_rule(labels: np.ndarray, training: np.ndarray, scored: np.ndarray) -> dict:
    """Metrics of `scored` at mean + 3 sigma of the `training` scores."""
    return score_metrics(labels, scored, float(training.mean() + 3 * training.std()), k=5)


def simulator() -> Series:
    """The 72 simulated windows: 0-47 train; 48-71 are scored, positive when they hold an attack."""
    enterprise = Enterprise(seed=7)
    events = finalize_events(enterprise.events(enterprise.start, enterprise.end), "sim")
    windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), 72))
    hour = ((events["@timestamp"] - events["@timestamp"].min().floor("h")) // np.timedelta64(1, "h")).to_numpy()
    attack_hours = set(hour[events["labels.attack"].astype(str).isin(ATTACKS).to_numpy()])
    return Series(windows[:48], [(windows, 48)], np.array([w.index in attack_hours for w in windows[48:]]))


def luflow() -> Series:
    """Three LUFlow days in 10-minute windows (see the module text)."""
    first, first_malicious = luflow_windows(["2020.07.08", "2020.07.09"])
    second, second_malicious = luflow_windows(["2020.07.11"])
    per_hour = timedelta(hours=1) // LUFLOW_WINDOW
    start, end = int(2.5 * per_hour), 36 * per_hour  # 07-08 02:30 to 07-09 12:00
    burst = 3 * np.median(first_malicious[start:end])
    labels = np.concatenate([first_malicious[end:], second_malicious]) > burst
    return Series(first[start:end], [(first[start:], end - start), (second, 0)], labels)


def luflow_windows(days: list[str]) -> tuple[list[GraphWindow], np.ndarray]:
    """The windows of consecutive LUFlow days from their first midnight, and the malicious flows
    in each."""
    from flow_data import luflow as luflow_day

    events = pd.concat([luflow_day(day) for day in days], ignore_index=True)
    start = pd.Timestamp(days[0].replace(".", "-"), tz="UTC")
    count = len(days) * (timedelta(days=1) // LUFLOW_WINDOW)
    windows = BipartiteGraphBuilder().build(events, WindowGrid(start.to_pydatetime(), LUFLOW_WINDOW, count))
    index = ((events["@timestamp"] - start) // LUFLOW_WINDOW).to_numpy()
    malicious = (events["label"] == "malicious").to_numpy() & (index >= 0) & (index < count)
    return windows, np.bincount(index[malicious], minlength=count)


DATA_SETS = {"simulator": simulator, "luflow": luflow}


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(DATA_SETS), default="simulator")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="override lstm_ae's epochs (quick runs)")
    args = parser.parse_args(argv)
    results = evaluate(args.seeds, args.epochs, args.data)
    first = results["lstm_ae"][0]
    print(f"{args.data}: {first['items']} scored windows, {first['positives']} positive; {args.seeds} seeds\n")
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
