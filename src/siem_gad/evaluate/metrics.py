"""Detection metrics on scored items with binary labels.

Items are whatever a detector scores (windows, entity-windows, edges); `labels` says which
are positive. Threshold-free: ROC-AUC and average precision (scikit-learn's definitions).
At a threshold: precision, recall and F1 of `score >= threshold`, at the detector's own
threshold and at the threshold with the best F1. Precision@k: the share of positives among the
k highest scores, the items tied at the k-th score averaged over their order
(`expected_hits_at_k`). Per day (`day_metrics`): the same for each day alone, with recall at a
fixed alert budget, since a SOC deploys a detector day after day and never sees the pooled
figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def threshold_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = scores >= threshold
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1,
            "true_positives": tp, "false_positives": fp, "false_negatives": fn}


def best_f1(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The threshold among the scores that gives the highest F1 (ties: the higher threshold)."""
    best = threshold_metrics(labels, scores, float("inf"))
    for candidate in np.unique(scores)[::-1]:
        current = threshold_metrics(labels, scores, float(candidate))
        if current["f1"] > best["f1"]:
            best = current
    return best


def ranked_scores(scores: np.ndarray) -> np.ndarray:
    """Scores as the top-k metrics rank them: a missing score (NaN) last."""
    return np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)


def expected_hits_at_k(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Positives among the k best, averaged over every order of the items tied at the k-th
    score. Where many items share a saturated score (every link of a source new), the plain
    top k is the order the items were written or sorted in, and that order can make or unmake
    a comparison."""
    labels, scores = np.asarray(labels, dtype=bool), ranked_scores(scores)
    k = min(k, len(labels))
    if k <= 0:
        return 0.0
    cut = np.sort(scores)[::-1][k - 1]
    above, tied = scores > cut, scores == cut
    return float(labels[above].sum() + (k - above.sum()) * labels[tied].mean())


def precision_at_k(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """The share of positives among the k best (`expected_hits_at_k`); 0 for no items."""
    n = min(k, len(labels))
    return expected_hits_at_k(labels, scores, k) / n if n else 0.0


def expected_entities_at_k(labels: np.ndarray, scores: np.ndarray, entities: np.ndarray, k: int) -> float:
    """Distinct entities with a positive item among the k best, averaged over every order of the
    items tied at the k-th score: an entity not found above the tie is found with the chance
    that the r picks from the t tied items hold one of its m positive ones, 1 - C(t - m, r) /
    C(t, r) = 1 - prod over i < m of (t - r - i) / (t - i)."""
    labels, scores = np.asarray(labels, dtype=bool), ranked_scores(scores)
    entities = np.asarray(entities, dtype=object)
    k = min(k, len(labels))
    if k <= 0:
        return 0.0
    cut = np.sort(scores)[::-1][k - 1]
    above, tied = scores > cut, scores == cut
    found = set(entities[above & labels])
    picks, size = k - int(above.sum()), int(tied.sum())
    counts: dict = {}
    for entity in entities[tied & labels]:
        if entity not in found:
            counts[entity] = counts.get(entity, 0) + 1
    def missed(m: int) -> float:
        return float(np.prod([(size - picks - i) / (size - i) for i in range(m)])) if size - picks >= m else 0.0

    return len(found) + sum(1 - missed(m) for m in counts.values())


def score_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, k: int = 20) -> dict[str, Any]:
    """Every metric for one detector; AUC and AP are None when only one class is present."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf, neginf=-1e300, posinf=1e300)
    both = 0 < labels.sum() < len(labels)
    return {
        "items": int(len(labels)), "positives": int(labels.sum()),
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "average_precision": float(average_precision_score(labels, scores)) if both else None,
        f"precision_at_{k}": precision_at_k(labels, scores, k),
        "at_threshold": threshold_metrics(labels, scores, threshold),
        "at_best_f1": best_f1(labels, scores),
    }


ALERT_BUDGETS = (10, 50)  # alerts an analyst can read per day


def day_metrics(items: "pd.DataFrame", threshold: float, budgets: tuple[int, ...] = ALERT_BUDGETS) -> list[dict[str, Any]]:
    """Per UTC day of the scored items, as a SOC reads its detections: ROC-AUC and AP of that
    day alone (None on a day without attacks: a benign-only day has nothing to rank, and
    pooled with attack days it would flatter the figure), the alerts at the threshold, and at
    each alert budget k (the day's k highest scores, what an analyst with time for k alerts
    sees): recall of the day's attack items and attack entities, and precision@k.

    `items` needs the columns window_start, entity, score and positive.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = []
    days = items["window_start"].map(lambda t: t.date())
    for day, frame in items.groupby(days, sort=True):
        labels = frame["positive"].to_numpy(dtype=bool)
        scores = np.nan_to_num(frame["score"].to_numpy(dtype=np.float64), nan=-np.inf, neginf=-1e300, posinf=1e300)
        both = 0 < labels.sum() < len(labels)
        attackers = set(frame["entity"][labels])
        row: dict[str, Any] = {"day": day.isoformat(), "items": int(len(labels)), "positives": int(labels.sum()),
                               "attack_entities": len(attackers),
                               "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
                               "average_precision": float(average_precision_score(labels, scores)) if both else None,
                               "alerts_at_threshold": int((scores >= threshold).sum()),
                               "recall_at_threshold": threshold_metrics(labels, scores, threshold)["recall"]
                               if labels.any() else None}
        for k in budgets:  # items tied at the k-th score averaged over their order
            hits = expected_hits_at_k(labels, scores, k)
            found = expected_entities_at_k(labels, scores, frame["entity"].to_numpy(), k)
            row[f"recall_at_{k}"] = hits / labels.sum() if labels.any() else None
            row[f"entity_recall_at_{k}"] = found / len(attackers) if attackers else None
            row[f"precision_at_{k}"] = precision_at_k(labels, scores, k)
        out.append(row)
    return out
