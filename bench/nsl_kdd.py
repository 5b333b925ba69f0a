"""Benchmark: the tabular detectors on NSL-KDD, with and without a few labeled anomalies.

Protocol: train on the normal records of KDDTrain+ (all 41 features; protocol_type, service and
flag one-hot; counts and byte totals log1p-scaled; everything standardised with the normal
training rows' statistics), score KDDTest+
(which adds 15 attack types never seen in training); ROC-AUC and average precision on the whole
test file. Deep SAD additionally sees 1 % or 5 % of the training anomalies, labeled (as many
labeled anomalous rows as 1 % / 5 % of the training attacks), next to the unsupervised models
and Isolation Forest in the same run. Median and range over `--seeds` training seeds.

`--validation` is the split the options were chosen on, without looking at KDDTest+: the models
train on 80 % of the KDDTrain+ normal records and score the other 20 % against 95 % of the
KDDTrain+ attacks; Deep SAD's labels come from the other 5 %. Unlike on KDDTest+, the attacks
scored here are of the same types and from the same capture as the labeled ones.

`--label-worth` asks what the labels could add at all on KDDTest+, with a learner other than
Deep SAD: a gradient-boosted classifier trained on the normal records against 1 %, 5 % or all
of the training attacks, alone and combined with the best unsupervised `vae` (a weighted mean
of the two ranks, or a bonus for the classifier's most confident rows). The best combination
is picked on KDDTest+ itself, which flatters the labels.

Data: ../shared/data/nsl-kdd (Tavallaee et al., CISDA 2009; UNB CIC).
Usage: python bench/nsl_kdd.py [--seeds 3] [--epochs 30] [--validation | --label-worth] [--detectors a,b]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nsl-kdd"
CATEGORICAL = [1, 2, 3]
LABEL_POOL = 0.05  # the largest share of the training attacks that is labeled (validation sets it aside)


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


def validation_split(X_train: np.ndarray, y_train: np.ndarray,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(training rows, rows to score, their labels, attacks Deep SAD may see labeled): 80 % of the
    KDDTrain+ normal records train; a random 5 % of the KDDTrain+ attacks are set aside for the
    labels; the other 20 % of the normal records and 95 % of the attacks are scored. KDDTest+ is
    not touched."""
    rng = np.random.default_rng(100 + seed)
    normal, attacks = rng.permutation(np.flatnonzero(~y_train)), rng.permutation(np.flatnonzero(y_train))
    cut, set_aside = int(0.8 * len(normal)), int(LABEL_POOL * len(attacks))
    scored = np.concatenate([normal[cut:], attacks[set_aside:]])
    return X_train[normal[:cut]], X_train[scored], y_train[scored], X_train[attacks[:set_aside]]


def models(seed: int, epochs: int) -> dict:
    from siem_gad.detectors.deep_sad import DeepSadDetector
    from siem_gad.detectors.gmm import VaeGmmDetector
    from siem_gad.detectors.vae import VaeDetector

    common = {"epochs": epochs, "seed": seed, "validation": 0.0, "patience": epochs, "batch_size": 256}
    vae = {"hidden": [64, 32], "latent": 8, **common}
    vaegmm = {"hidden": [64, 32, 10], "latent": 2, "components": 2, **common}
    sad = {"hidden": [64, 32], "latent": 16, "pretrain_epochs": 20, **common}
    wide_sad = {**sad, "hidden": [128], "latent": 64}
    return {
        "vae": lambda: VaeDetector(**vae),  # its defaults: error_power 1, min_variance 0.1
        # the defaults until 2026-12-07 (error_power 2, min_variance 0), and one option at a time
        "vae + squared error": lambda: VaeDetector(error_power=2.0, min_variance=0.0, **vae),
        "vae + error_power 1 + min_variance 0": lambda: VaeDetector(error_power=1.0, min_variance=0.0, **vae),
        "vae + error_power 0.5 + min_variance 0": lambda: VaeDetector(error_power=0.5, min_variance=0.0, **vae),
        "vae + error_power 2 + min_variance 0.1": lambda: VaeDetector(error_power=2.0, min_variance=0.1, **vae),
        BEST_VAE: lambda: VaeDetector(error_power=0.5, min_variance=0.1, **vae),
        "vaegmm": lambda: VaeGmmDetector(**vaegmm),
        "vaegmm + recon_origin mean": lambda: VaeGmmDetector(recon_origin="mean", **vaegmm),
        "deep_sad, no labels (Deep SVDD)": lambda: DeepSadDetector(**sad),
        "deep_sad, 1 % anomalies labeled": lambda: DeepSadDetector(**sad),
        "deep_sad, 5 % anomalies labeled": lambda: DeepSadDetector(**sad),
        "deep_sad 128 to 64, no labels (Deep SVDD)": lambda: DeepSadDetector(**wide_sad),
        "deep_sad 128 to 64, 5 % anomalies labeled": lambda: DeepSadDetector(**wide_sad),
    }


BEST_VAE = "vae + error_power 0.5 + min_variance 0.1"


def mean_distance(normal: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The simplest score: squared Euclidean distance from the mean of the normal training rows,
    each column standardised with their statistics."""
    from siem_gad.detectors import standardizer

    mean, std = standardizer(normal)
    return (((rows - mean) / std) ** 2).sum(axis=1)


def labeled_attacks(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` rows of the attack rows `pool`, drawn with `rng`."""
    return pool[rng.choice(len(pool), count, replace=False)]


def label_worth(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                seeds: int, epochs: int) -> None:
    """What 1 %, 5 % and 100 % labeled training attacks add to the best unsupervised `vae` on
    KDDTest+, with a gradient-boosted classifier as the label learner (see the module text)."""
    from scipy.stats import rankdata
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    normal = X_train[~y_train]
    combinations = {f"rank mean, classifier weight {w}": (w, None) for w in (0.1, 0.25, 0.5)}
    combinations.update({f"+{b} for p > {t}": (b, t) for t in (0.99, 0.999) for b in (0.05, 0.1, 0.3)})
    print("| seed | labeled | classifier alone | `vae` alone | best `vae` + classifier (which) |")
    print("|---|---|---|---|---|")
    for seed in range(seeds):
        vae = models(seed, epochs)[BEST_VAE]().fit_matrix(normal).score_matrix(X_test)
        vae_rank = rankdata(vae) / len(vae)
        for share in (0.01, 0.05, 1.0):
            attacks = labeled_attacks(X_train[y_train], int(share * y_train.sum()), np.random.default_rng(seed))
            classifier = HistGradientBoostingClassifier(random_state=seed).fit(
                np.concatenate([normal, attacks]), np.r_[np.zeros(len(normal)), np.ones(len(attacks))])
            p = classifier.predict_proba(X_test)[:, 1]
            combined = {name: roc_auc_score(y_test, vae_rank + weight * (p > cut) if cut else
                                            (1 - weight) * vae_rank + weight * rankdata(p) / len(p))
                        for name, (weight, cut) in combinations.items()}
            best = max(combined, key=combined.get)
            print(f"| {seed} | {share:.0%} | {roc_auc_score(y_test, p):.4f} | {roc_auc_score(y_test, vae):.4f} | "
                  f"{combined[best]:.4f} ({best}) |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--validation", action="store_true",
                      help="score a validation split of KDDTrain+ instead of KDDTest+ (see above)")
    mode.add_argument("--label-worth", action="store_true",
                      help="what the labels add on KDDTest+ with a gradient-boosted classifier (see above)")
    parser.add_argument("--detectors", help="comma-separated subset of the models' names (default: all, and the "
                                            "two baselines always)")
    args = parser.parse_args()
    names = list(models(0, 1))
    wanted = set(names) if args.detectors is None else {d.strip() for d in args.detectors.split(",")}
    if wanted - set(names):
        parser.error(f"--detectors: no model named {', '.join(sorted(wanted - set(names)))} (names: {', '.join(names)})")
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score, roc_auc_score

    X_train, y_train, X_test, y_test = load()
    if args.label_worth:
        label_worth(X_train, y_train, X_test, y_test, args.seeds, args.epochs)
        return
    results: dict[str, list] = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        if args.validation:
            normal, X_scored, y_scored, pool = validation_split(X_train, y_train, seed)
        else:
            normal, X_scored, y_scored, pool = X_train[~y_train], X_test, y_test, X_train[y_train]
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(normal)
        runs = {"iforest (baseline)": (-forest.score_samples(X_scored), 0.0),
                "squared distance from the normal mean (baseline)": (mean_distance(normal, X_scored), 0.0)}
        for name, make in models(seed, args.epochs).items():
            if name not in wanted:
                continue
            share = 0.01 if "1 %" in name else 0.05 if "5 %" in name else 0.0
            rows, labels = normal, None
            if share:
                attacks = labeled_attacks(pool, int(share * y_train.sum()), rng)
                rows = np.concatenate([normal, attacks])
                labels = np.concatenate([np.zeros(len(normal)), -np.ones(len(attacks))])
            began = time.perf_counter()
            detector = make().fit_matrix(rows, labels)
            runs[name] = (detector.score_matrix(X_scored), time.perf_counter() - began)
        for name, (scores, seconds) in runs.items():
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
