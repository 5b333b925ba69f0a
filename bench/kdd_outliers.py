"""Benchmark: the tabular detectors on KDD Cup 99 (10 %) under the published outlier protocol.

Protocol (the VAE/AEGMM/VAEGMM outlier-detection setting): the 18 continuous features, label
normal vs any attack; standardise with the statistics of the normal training rows; train on
normal rows only; set the threshold at the 95th percentile of the scores of a batch of 1,000
rows with 5 % outliers; report F1 on batches of 1,000 rows with 10 % outliers. Published F1:
VAE 0.9754, VAEGMM 0.9515, AEGMM 0.3352. Reported here: median and spread over `--seeds`
training seeds x `--batches` evaluation batches, ROC-AUC on the whole file, with Isolation
Forest under the same protocol as the baseline. Per seed it also prints where the threshold and
the commonest attack record fall among the normal rows' scores (see `tail_position`).

Data: ../shared/data/kddcup99/kddcup.data_10_percent.gz (KDD Cup 1999, UCI), 494,021 rows.
Usage: python bench/kdd_outliers.py [--seeds 5] [--first-seed 0] [--batches 20] [--epochs 30] [--detectors vae,aegmm,...]
       [--supervised-reference]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kddcup99" / "kddcup.data_10_percent.gz"
COLUMNS = ["duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land", "wrong_fragment", "urgent",
           "hot", "num_failed_logins", "logged_in", "num_compromised", "root_shell", "su_attempted", "num_root",
           "num_file_creations", "num_shells", "num_access_files", "num_outbound_cmds", "is_host_login",
           "is_guest_login", "count", "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
           "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count", "dst_host_srv_count",
           "dst_host_same_srv_rate", "dst_host_diff_srv_rate", "dst_host_same_src_port_rate",
           "dst_host_srv_diff_host_rate", "dst_host_serror_rate", "dst_host_srv_serror_rate", "dst_host_rerror_rate",
           "dst_host_srv_rerror_rate", "label"]
CONTINUOUS = ["srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate", "same_srv_rate",
              "diff_srv_rate", "srv_diff_host_rate", "dst_host_count", "dst_host_srv_count", "dst_host_same_srv_rate",
              "dst_host_diff_srv_rate", "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate",
              "dst_host_serror_rate", "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate"]


def load(rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(DATA, names=COLUMNS, usecols=[*CONTINUOUS, "label"], nrows=rows)
    return frame[CONTINUOUS].to_numpy(np.float32), (frame["label"] != "normal.").to_numpy()


def batch_rows(y: np.ndarray, size: int, outliers: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a batch of `size` rows, `outliers` of them attacks, drawn without replacement."""
    n_out = int(size * outliers)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    return np.concatenate([rng.choice(neg, size - n_out, replace=False), rng.choice(pos, n_out, replace=False)])


def protocol(scores: np.ndarray, y: np.ndarray, seed: int, batches: int) -> tuple[list[float], float]:
    """The published threshold and F1 protocol on the scores of every row: the threshold is the
    95th percentile of a reference batch of 1,000 rows with 5 % outliers, F1 is taken on
    `batches` batches of 1,000 rows with 10 % outliers. Returns (F1 per batch, threshold)."""
    rng = np.random.default_rng(1000 + seed)
    threshold = float(np.percentile(scores[batch_rows(y, 1000, 0.05, rng)], 95))
    rows = [batch_rows(y, 1000, 0.10, rng) for _ in range(batches)]
    return [f1(y[r], scores[r] > threshold) for r in rows], threshold


def tail_position(scores: np.ndarray, y: np.ndarray, X: np.ndarray, threshold: float) -> tuple[float, float]:
    """(share of normal rows below the threshold, share of normal rows below the median score of
    the most frequent attack record): where F1 under this protocol is decided. The record (one
    smurf connection) is 57 % of the attacks; the threshold falls in the normals' top half
    percent, so F1 turns on whether the record scores above almost every normal row."""
    normal = np.sort(scores[~y])
    _, inverse, counts = np.unique(X[y], axis=0, return_inverse=True, return_counts=True)
    commonest = scores[np.flatnonzero(y)[inverse.ravel() == np.argmax(counts)]]
    return (float(np.searchsorted(normal, threshold) / len(normal)),
            float(np.searchsorted(normal, np.median(commonest)) / len(normal)))


def f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    tp = np.sum(predicted & labels)
    return 2 * tp / (np.sum(predicted) + np.sum(labels)) if tp else 0.0


def detectors(seed: int, epochs: int) -> dict:
    from siem_gad.detectors.gmm import AeGmmDetector, VaeGmmDetector
    from siem_gad.detectors.iforest import IsolationForestDetector
    from siem_gad.detectors.vae import VaeDetector

    common = {"epochs": epochs, "seed": 5 * seed, "patience": epochs, "validation": 0.0}
    vae = {"hidden": [20, 15, 7], "latent": 2, "batch_size": 100, **common}
    vaegmm = {"hidden": [60, 30, 10], "latent": 2, "components": 2, "batch_size": 1024, **common}
    aegmm = {**vaegmm, "latent": 1}
    squared = {"error_power": 2.0, "min_variance": 0.0}  # the published VAE's MSE: `vae`'s defaults until 2026-12-07
    return {
        # The published shapes: VAE 20-15-7 encoder, 2-d code, MSE score averaged over 10 draws;
        # AEGMM and VAEGMM 60-30-10 encoders, 1-d and 2-d codes, 2 mixture components.
        "vae": VaeDetector(**vae),  # its defaults: error_power 1, min_variance 0.1
        "vae + squared error": VaeDetector(**squared, **vae),  # error_power 2, min_variance 0
        "vae + squared error + normalized errors": VaeDetector(normalize_errors=True, **squared, **vae),
        # the settings that gave `vae` its best NSL-KDD figure (bench/nsl_kdd.py), on other data, together and apart
        "vae + error_power 0.5 + min_variance 0.1": VaeDetector(error_power=0.5, min_variance=0.1, **vae),
        "vae + error_power 0.5 + min_variance 0": VaeDetector(error_power=0.5, min_variance=0.0, **vae),
        "vae + error_power 2 + min_variance 0.1": VaeDetector(error_power=2.0, min_variance=0.1, **vae),
        # Seed s trains the networks 5s .. 5s+4: the ensembles of different seeds share none.
        "vae + squared error + normalized errors + 5 networks": VaeDetector(normalize_errors=True, ensemble=5,
                                                                            **squared, **vae),
        "aegmm": AeGmmDetector(**aegmm),
        "aegmm + recon_origin mean": AeGmmDetector(recon_origin="mean", **aegmm),
        "vaegmm": VaeGmmDetector(**vaegmm),
        "vaegmm + 5 networks": VaeGmmDetector(ensemble=5, **vaegmm),
        # The reconstruction features measured from the mean of the standardised rows (before recon_origin).
        "vaegmm + recon_origin mean": VaeGmmDetector(recon_origin="mean", **vaegmm),
        # every normal row goes to the forest (the product samples 50,000 by default)
        "iforest (baseline)": IsolationForestDetector(seed=seed, entity_baseline=False, max_training_rows=10**7),
    }


WORD = re.compile(r"\w+")
SUPERVISED = "supervised reference (2-fold CV, labels)"


class _CrossValidatedClassifier:
    """Not a detector: gradient-boosted trees trained on the labels, each row scored by the fold
    that did not see it (the log-odds, with ties between identical rows broken by 1e-9 noise as
    the VAE's sampled codes break them). Shows what ranking like a supervised model buys under
    this threshold protocol."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> "_CrossValidatedClassifier":
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        folds = StratifiedKFold(2, shuffle=True, random_state=self.seed)
        p = cross_val_predict(HistGradientBoostingClassifier(random_state=self.seed), X, y, cv=folds,
                              method="predict_proba")[:, 1].clip(1e-12, 1 - 1e-12)
        noise = np.random.default_rng(self.seed).normal(0, 1e-9, len(p))
        self.scores_ = np.log(p) - np.log1p(-p) + noise
        return self

    def score_matrix(self, X):
        """The out-of-fold scores of the rows it was fitted on (the bench scores the whole file)."""
        if len(X) != len(self.scores_):
            raise ValueError("the supervised reference only scores the rows it was fitted on")
        return self.scores_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="run the seeds first-seed .. first-seed+seeds-1 "
                                                                   "(a second, disjoint set of trainings)")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=None, help="read only the first rows (quick runs, tests)")
    parser.add_argument("--detectors", default="vae,aegmm,vaegmm,iforest (baseline)",
                        help="comma-separated subset of the names in detectors()")
    parser.add_argument("--supervised-reference", action="store_true",
                        help="also run gradient-boosted trees trained on the labels (2-fold CV) through the protocol")
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    from siem_gad.detectors import standardizer

    X, y = load(args.rows)
    mean, std = standardizer(X[~y])
    Xs = (X - mean) / std
    wanted = [d.strip() for d in args.detectors.split(",")]
    names = list(detectors(0, 1))
    if set(wanted) - set(names):
        parser.error(f"--detectors: no detector named {', '.join(sorted(set(wanted) - set(names)))} "
                     f"(names: {', '.join(names)})")
    results: dict[str, dict[str, list]] = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        # name -> fit(): the detectors learn from the normal rows, the reference from every labeled row
        runs = {name: (lambda d=detector: d.fit_matrix(Xs[~y]))
                for name, detector in detectors(seed, args.epochs).items() if name in wanted}
        if args.supervised_reference:
            runs[SUPERVISED] = lambda: _CrossValidatedClassifier(seed).fit(Xs, y)
        for name, fit in runs.items():
            began = time.perf_counter()
            detector = fit()
            fit_seconds = time.perf_counter() - began
            scores = detector.score_matrix(Xs)
            f1s, threshold = protocol(scores, y, seed, args.batches)
            auc = roc_auc_score(y, scores)
            below_threshold, record = tail_position(scores, y, X, threshold)
            entry = results.setdefault(name, {"f1": [], "auc": [], "fit": []})
            entry["f1"] += f1s
            entry["auc"].append(auc)
            entry["fit"].append(fit_seconds)
            print(f"seed {seed} {name}: F1 median {np.median(f1s):.3f}, ROC-AUC {auc:.4f}, fit {fit_seconds:.0f}s; "
                  f"normal rows below: the threshold {below_threshold:.5f}, the commonest attack record {record:.5f}",
                  flush=True)
    print(f"\n{len(X):,} rows ({y.sum():,} attacks), {args.seeds} seeds x {args.batches} batches\n")
    print("| detector | F1 median | F1 25-75 % | F1 min-max | ROC-AUC (whole file) | fit seconds | published F1 |")
    print("|---|---|---|---|---|---|---|")
    published = {"vae": "0.9754", "aegmm": "0.3352", "vaegmm": "0.9515"}  # by the name's first word
    for name, entry in results.items():
        scores = np.array(entry["f1"])
        print(f"| {name} | {np.median(scores):.3f} | {np.percentile(scores, 25):.3f}-{np.percentile(scores, 75):.3f} | "
              f"{scores.min():.3f}-{scores.max():.3f} | {np.median(entry['auc']):.4f} "
              f"({min(entry['auc']):.4f}-{max(entry['auc']):.4f}) | {np.median(entry['fit']):.0f} | "
              f"{published.get(re.match(WORD, name).group(), '-')} |")


if __name__ == "__main__":
    main()
