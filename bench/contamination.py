"""Training on contaminated history: NSL-KDD with attacks mixed into the training rows.

Real history holds attacks and internet noise, and nobody labels it. This bench trains on the
KDDTrain+ normal records plus a share of the KDDTrain+ attacks (0, 5, 10 and 20 % of the
training rows, drawn at random, unlabeled) and scores KDDTest+, next to the same model trained
on clean history in the same run. Two row detectors of the product, through their matrix API:

- `iforest` (no entity baseline: the records have no entity): 0, 5, 10 and 20 % attacks, each
  with `contamination` 0 (fit once on everything) and 0.05 / 0.10 (fit, drop that share of the
  highest-scoring training rows, fit again; the threshold is the percentile of the kept rows'
  scores);
- `vae`, the NSL-KDD bench's best settings (error power 0.5, minimum variance 0.1), 10 epochs
  (a fit takes about a minute here): 0 and 10 % attacks, `contamination` 0 and 0.10.

Figures: ROC-AUC on KDDTest+, and at the model's own threshold (99th percentile,
fixed before KDDTest+ is seen) recall of the attacks and the false-positive rate on the normal
records. Median over `--seeds` seeds (range in brackets).

    .venv/bin/python bench/contamination.py [--seeds 3] [--epochs 10]

Data: ../shared/data/nsl-kdd. Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nsl_kdd import load

GRID = {"iforest": ((0.0, 0.05, 0.10, 0.20), (0.0, 0.05, 0.10)),  # (attack shares, contamination settings)
        "vae": ((0.0, 0.10), (0.0, 0.10))}


def contaminated(X_train: np.ndarray, y_train: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """The normal training records plus attacks making up `rate` of the result."""
    rng = np.random.default_rng(1000 + seed)
    normal, attacks = X_train[~y_train], X_train[y_train]
    count = int(round(rate * len(normal) / (1 - rate)))
    return np.concatenate([normal, attacks[rng.choice(len(attacks), count, replace=False)]])


def detector(name: str, contamination: float, seed: int, epochs: int):
    from siem_gad.detectors.iforest import IsolationForestDetector
    from siem_gad.detectors.vae import VaeDetector

    if name == "iforest":
        return IsolationForestDetector(seed=seed, entity_baseline=False, contamination=contamination)
    return VaeDetector(hidden=[64, 32], latent=8, epochs=epochs, seed=seed, validation=0.0, patience=epochs,
                       batch_size=256, error_power=0.5, min_variance=0.1, contamination=contamination)


def figures(model, X_test: np.ndarray, y_test: np.ndarray) -> tuple[float, float, float]:
    from sklearn.metrics import roc_auc_score

    scores = model.score_matrix(X_test)
    alerted = scores >= model.threshold_
    return roc_auc_score(y_test, scores), float(alerted[y_test].mean()), float(alerted[~y_test].mean())


def cell(values: list[float], digits: int = 3) -> str:
    return f"{np.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    X_train, y_train, X_test, y_test = load()
    began = time.monotonic()
    print("| detector | attacks in training | contamination | ROC-AUC | recall at threshold | false-positive rate |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (rates, settings) in GRID.items():
        for rate in rates:
            for setting in settings:
                runs = []
                for seed in range(args.seeds):
                    model = detector(name, setting, seed, args.epochs)
                    runs.append(figures(model.fit_matrix(contaminated(X_train, y_train, rate, seed)), X_test, y_test))
                auc, recall, fpr = (list(column) for column in zip(*runs))
                print(f"| {name} | {rate:.0%} | {setting:.2f} | {cell(auc)} | {cell(recall)} | {cell(fpr, 4)} |",
                      flush=True)
    print(f"\n{args.seeds} seeds, {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
