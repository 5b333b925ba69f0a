"""Benchmark: the tabular detectors on NSL-KDD, with and without a few labeled anomalies.

Protocol: train on the normal records of KDDTrain+ (all 41 features; protocol_type, service and
flag one-hot; counts and byte totals log1p-scaled; everything standardised with the normal
training rows' statistics), score KDDTest+
(which adds 15 attack types never seen in training); ROC-AUC and average precision on the whole
test file. Deep SAD additionally sees 1 % or 5 % of the training anomalies, labeled (as many
labeled anomalous rows as 1 % / 5 % of the training attacks), next to the unsupervised models
and Isolation Forest in the same run. Median and range over `--seeds` training seeds.

`--validation` is the split the options were chosen on, without looking at KDDTest+: the
unsupervised models train on 80 % of the KDDTrain+ normal records and score the other 20 %
against the KDDTrain+ attacks.

Data: ../shared/data/nsl-kdd (Tavallaee et al., CISDA 2009; UNB CIC).
Usage: python bench/nsl_kdd.py [--seeds 3] [--epochs 30] [--validation]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nsl-kdd"
CATEGORICAL = [1, 2, 3]


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = pd.read_csv(DATA / "KDDTrain+.txt.gz", header=None)
    test = pd.read_csv(DATA / "KDDTest+.txt.gz", header=None)
    frame = pd.concat([train, test], keys=["train", "test"])
    labels = frame[41] != "normal"
    numeric = frame.iloc[:, :41].drop(columns=CATEGORICAL)
    # Counts and byte totals span orders of magnitude: log1p them (the columns that go above 1
    # in training; the rates in [0, 1] stay as they are), as the product's builders do.
    counts = [c for c in numeric.columns if numeric.loc["train", c].max() > 1]
    numeric[counts] = np.log1p(numeric[counts].clip(lower=0))
    features = pd.concat([numeric, pd.get_dummies(frame[CATEGORICAL], columns=CATEGORICAL, dtype=np.float32)],
                         axis=1).astype(np.float32)
    X_train, X_test = features.loc["train"].to_numpy(), features.loc["test"].to_numpy()
    y_train, y_test = labels.loc["train"].to_numpy(), labels.loc["test"].to_numpy()
    from siem_gad.detectors import standardizer

    mean, std = standardizer(X_train[~y_train])
    return (X_train - mean) / std, y_train, (X_test - mean) / std, y_test


def validation_split(X_train: np.ndarray, y_train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training rows, rows to score, their labels): 80 % of the KDDTrain+ normal records train;
    the other 20 % and every KDDTrain+ attack are scored. KDDTest+ is not touched."""
    normal = np.random.default_rng(100 + seed).permutation(np.flatnonzero(~y_train))
    cut = int(0.8 * len(normal))
    held_out = np.concatenate([normal[cut:], np.flatnonzero(y_train)])
    return X_train[normal[:cut]], X_train[held_out], y_train[held_out]


def models(seed: int, epochs: int) -> dict:
    from siem_gad.detectors.deep_sad import DeepSadDetector
    from siem_gad.detectors.gmm import VaeGmmDetector
    from siem_gad.detectors.vae import VaeDetector

    common = {"epochs": epochs, "seed": seed, "validation": 0.0, "patience": epochs, "batch_size": 256}
    vae = {"hidden": [64, 32], "latent": 8, **common}
    vaegmm = {"hidden": [64, 32, 10], "latent": 2, "components": 2, **common}
    return {
        "vae": lambda: VaeDetector(**vae),
        "vae + error_power 1": lambda: VaeDetector(error_power=1.0, **vae),
        "vae + error_power 0.5": lambda: VaeDetector(error_power=0.5, **vae),
        "vae + min_variance 0.1": lambda: VaeDetector(min_variance=0.1, **vae),
        "vae + error_power 0.5 + min_variance 0.1": lambda: VaeDetector(error_power=0.5, min_variance=0.1, **vae),
        "vaegmm": lambda: VaeGmmDetector(**vaegmm),
        "vaegmm + recon_origin mean": lambda: VaeGmmDetector(recon_origin="mean", **vaegmm),
        "deep_sad, no labels (Deep SVDD)": lambda: DeepSadDetector(hidden=[64, 32], latent=16, pretrain_epochs=20, **common),
        "deep_sad, 1 % anomalies labeled": lambda: DeepSadDetector(hidden=[64, 32], latent=16, pretrain_epochs=20, **common),
        "deep_sad, 5 % anomalies labeled": lambda: DeepSadDetector(hidden=[64, 32], latent=16, pretrain_epochs=20, **common),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--validation", action="store_true",
                        help="unsupervised models only, on the validation split of KDDTrain+ (see above)")
    args = parser.parse_args()
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score, roc_auc_score

    X_train, y_train, X_test, y_test = load()
    attacks = np.flatnonzero(y_train)
    results: dict[str, list] = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        if args.validation:
            normal, X_scored, y_scored = validation_split(X_train, y_train, seed)
        else:
            normal, X_scored, y_scored = X_train[~y_train], X_test, y_test
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(normal)
        runs = {"iforest (baseline)": (None, -forest.score_samples(X_scored), 0.0)}
        for name, make in models(seed, args.epochs).items():
            if args.validation and name.startswith("deep_sad"):
                continue  # its labeled attacks would come from the rows it is scored on
            share = 0.01 if "1 %" in name else 0.05 if "5 %" in name else 0.0
            rows, labels = normal, None
            if share:
                picked = rng.choice(attacks, int(share * len(attacks)), replace=False)
                rows = np.concatenate([normal, X_train[picked]])
                labels = np.concatenate([np.zeros(len(normal)), -np.ones(len(picked))])
            began = time.perf_counter()
            detector = make().fit_matrix(rows, labels)
            runs[name] = (detector, detector.score_matrix(X_scored), time.perf_counter() - began)
        for name, (_, scores, seconds) in runs.items():
            auc, ap = roc_auc_score(y_scored, scores), average_precision_score(y_scored, scores)
            results.setdefault(name, []).append((auc, ap, seconds))
            print(f"seed {seed} {name}: ROC-AUC {auc:.4f}, AP {ap:.4f}, fit {seconds:.0f}s", flush=True)
    scored = "validation split" if args.validation else "KDDTest+"
    print(f"\nKDDTrain+ normal rows used: {len(normal):,} of {len(y_train):,}; {scored}: {len(y_scored):,} "
          f"({y_scored.sum():,} attacks); {X_train.shape[1]} features; {args.seeds} seeds\n")
    print("| detector | ROC-AUC median (range) | AP median (range) | fit seconds |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        aucs, aps, secs = (np.array(c) for c in zip(*rows))
        print(f"| {name} | {np.median(aucs):.4f} ({aucs.min():.4f}-{aucs.max():.4f}) | "
              f"{np.median(aps):.4f} ({aps.min():.4f}-{aps.max():.4f}) | {np.median(secs):.0f} |")


if __name__ == "__main__":
    main()
