"""Benchmark: the tabular detectors on KDD Cup 99 (10 %) under the published outlier protocol.

Protocol (the VAE/AEGMM/VAEGMM outlier-detection setting): the 18 continuous features, label
normal vs any attack; standardise with the statistics of the normal training rows; train on
normal rows only; set the threshold at the 95th percentile of the scores of a batch of 1,000
rows with 5 % outliers; report F1 on batches of 1,000 rows with 10 % outliers. Published F1:
VAE 0.9754, VAEGMM 0.9515, AEGMM 0.3352. Reported here: median and spread over `--seeds`
training seeds x `--batches` evaluation batches, ROC-AUC on the whole file, with Isolation
Forest under the same protocol as the baseline.

Data: ../shared/data/kddcup99/kddcup.data_10_percent.gz (KDD Cup 1999, UCI), 494,021 rows.
Usage: python bench/kdd_outliers.py [--seeds 5] [--batches 20] [--epochs 30] [--detectors vae,aegmm,...]
"""

from __future__ import annotations

import argparse
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


def batch(X: np.ndarray, y: np.ndarray, size: int, outliers: float, rng: np.random.Generator):
    n_out = int(size * outliers)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    rows = np.concatenate([rng.choice(neg, size - n_out, replace=False), rng.choice(pos, n_out, replace=False)])
    return X[rows], y[rows]


def f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    tp = np.sum(predicted & labels)
    return 2 * tp / (np.sum(predicted) + np.sum(labels)) if tp else 0.0


def detectors(seed: int, epochs: int) -> dict:
    from siem_gad.detectors.gmm import AeGmmDetector, VaeGmmDetector
    from siem_gad.detectors.iforest import IsolationForestDetector
    from siem_gad.detectors.vae import VaeDetector

    common = {"epochs": epochs, "seed": seed, "patience": epochs, "validation": 0.0}
    return {
        # The published shapes: VAE 20-15-7 encoder, 2-d code, MSE score averaged over 10 draws;
        # AEGMM and VAEGMM 60-30-10 encoders, 1-d and 2-d codes, 2 mixture components.
        "vae": VaeDetector(hidden=[20, 15, 7], latent=2, batch_size=100, **common),
        "aegmm": AeGmmDetector(hidden=[60, 30, 10], latent=1, components=2, batch_size=1024, **common),
        "vaegmm": VaeGmmDetector(hidden=[60, 30, 10], latent=2, components=2, batch_size=1024, **common),
        "iforest (baseline)": _Forest(IsolationForestDetector(seed=seed, entity_baseline=False)),
    }


class _Forest:
    """Isolation Forest on plain matrices, the same protocol."""

    def __init__(self, detector):
        self.detector = detector

    def fit_matrix(self, X):
        self.detector._fit_rows(X)
        return self

    def score_matrix(self, X):
        return self.detector._score_rows(X)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=None, help="read only the first rows (quick runs, tests)")
    parser.add_argument("--detectors", default="vae,aegmm,vaegmm,iforest (baseline)",
                        help="comma-separated subset of: vae, aegmm, vaegmm, iforest (baseline)")
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    X, y = load(args.rows)
    normal = X[~y]
    mean, std = normal.mean(axis=0), normal.std(axis=0) + 1e-6
    Xs = (X - mean) / std
    results: dict[str, dict[str, list]] = {}
    for seed in range(args.seeds):
        wanted = [d.strip() for d in args.detectors.split(",")]
        for name, detector in detectors(seed, args.epochs).items():
            if name not in wanted:
                continue
            began = time.perf_counter()
            detector.fit_matrix(Xs[~y])
            fit_seconds = time.perf_counter() - began
            rng = np.random.default_rng(1000 + seed)
            threshold_batch, _ = batch(Xs, y, 1000, 0.05, rng)
            threshold = np.percentile(detector.score_matrix(threshold_batch), 95)
            scores = []
            for _ in range(args.batches):
                bx, by = batch(Xs, y, 1000, 0.10, rng)
                scores.append(f1(by, detector.score_matrix(bx) > threshold))
            auc = roc_auc_score(y, detector.score_matrix(Xs))
            entry = results.setdefault(name, {"f1": [], "auc": [], "fit": []})
            entry["f1"] += scores
            entry["auc"].append(auc)
            entry["fit"].append(fit_seconds)
            print(f"seed {seed} {name}: F1 median {np.median(scores):.3f}, ROC-AUC {auc:.4f}, fit {fit_seconds:.0f}s",
                  flush=True)
    print(f"\n{len(X):,} rows ({y.sum():,} attacks), {args.seeds} seeds x {args.batches} batches\n")
    print("| detector | F1 median | F1 25-75 % | F1 min-max | ROC-AUC (whole file) | fit seconds | published F1 |")
    print("|---|---|---|---|---|---|---|")
    published = {"vae": "0.9754", "aegmm": "0.3352", "vaegmm": "0.9515"}
    for name, entry in results.items():
        scores = np.array(entry["f1"])
        print(f"| {name} | {np.median(scores):.3f} | {np.percentile(scores, 25):.3f}-{np.percentile(scores, 75):.3f} | "
              f"{scores.min():.3f}-{scores.max():.3f} | {np.median(entry['auc']):.4f} "
              f"({min(entry['auc']):.4f}-{max(entry['auc']):.4f}) | {np.median(entry['fit']):.0f} | "
              f"{published.get(name, '-')} |")


if __name__ == "__main__":
    main()
