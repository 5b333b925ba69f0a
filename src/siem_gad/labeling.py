"""Which events are attacks: one reading of label fields for evaluation and supervised training.

A label field holds free text in real data (`Malicious`, `benign`, `-`, `port_scan`, `1`), so
positives are read case-insensitively: the listed positive values, or without a list anything
that is not a negative value. Supervised graph builders attach these labels to nodes
(`node_label`); `evaluate` joins them to scored items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from .lazy import lazy_import

np = lazy_import("numpy")

if TYPE_CHECKING:
    import pandas as pd

NEGATIVE_VALUES = frozenset({"benign", "normal", "-", "", "0", "false", "none", "nan", "background"})
BENIGN = "benign"
MALICIOUS = "malicious"
ANALYST_TRUE_POSITIVE = "analyst_true_positive"  # the label an analyst's true-positive verdict gives (triage/feedback.py)


def positive_mask(values: "pd.Series", positives: Iterable[str] | None) -> np.ndarray:
    """Which events are positive: their label is one of `positives`, or, without that list,
    anything but a negative value (benign, normal, -, 0, false, empty), compared case-insensitively."""
    text = values.astype("string").fillna("").str.strip().str.lower()
    wanted = [str(p).strip().lower() for p in positives or ()]
    if wanted:
        return text.isin(wanted).to_numpy()
    return (~text.isin(NEGATIVE_VALUES)).to_numpy()


def event_classes(events: "pd.DataFrame", label_field: str | None, class_field: str | None,
                  positives: Iterable[str] | None, rows=slice(None)) -> np.ndarray | None:
    """Per event (of `rows`): 'benign', the attack class, or None where the label is missing.

    The attack class is the value of `class_field` (e.g. IoT-23's detailed label) when given and
    present, else 'malicious'. Returns None when the events carry no `label_field` at all.
    """
    if not label_field or label_field not in events.columns:
        return None
    labels = events[label_field]
    out = np.full(len(labels), BENIGN, dtype=object)
    positive = positive_mask(labels, positives)
    if class_field and class_field in events.columns:
        text = events[class_field].astype("string").fillna("").str.strip().to_numpy(dtype=object)
        named = ~np.isin(np.char.lower(text.astype(str)), list(NEGATIVE_VALUES))
        out[positive] = np.where(named[positive], text[positive], MALICIOUS)
    else:
        out[positive] = MALICIOUS
    out[labels.isna().to_numpy()] = None
    return out[rows]
