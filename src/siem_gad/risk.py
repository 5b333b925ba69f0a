"""One score scale for every detector: `event.risk_score` from 0 to 100.

Raw scores are in each detector's own units (0.27 for `iforest`, 450 for `gcn_hmm`, a
probability for the supervised models), so an analyst cannot compare or rank them. Each model
keeps 101 quantiles of its reference scores (its training scores, or the held-out ones it set
its threshold from: `Detector.score_reference_`), and a raw score maps to

- below the threshold: 50 x F(raw) / F(threshold), F the empirical distribution of the
  reference scores, so a typical item scores about 25-50 and the threshold is exactly 50;
- at or above it: 50 + 50 x (1 - exp(-(raw - threshold) / spread)), spread = the distance from
  the reference median to the threshold, so an alert as far above the threshold as the
  threshold is above typical scores 82, twice as far 93, and 100 is never quite reached.

The map is continuous and non-decreasing in the raw score, fixed by the model, so a pass
repeated after a crash gives the same alert the same score (Elastic renormalises old scores as
new extremes arrive; siem-gad keeps the first, `siem_gad.initial_score`, immutable). A model
without reference quantiles (saved before this scale existed) uses raw / threshold for F.

Severity follows the bands below unless a rule sets its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

QUANTILES = 101
BANDS = ((90.0, "critical"), (75.0, "high"), (50.0, "medium"), (0.0, "low"))
FULL_TRAINING_WINDOWS = 24  # a day of hourly windows: fewer and the model is still warming up
FULL_WINDOW_EVENTS = 50  # fewer events in a window and its graph says little


def reference_quantiles(scores: Any) -> list[float]:
    """The `QUANTILES` quantiles (0 .. 100 %) of finite reference scores (empty: none)."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return []
    return [float(v) for v in np.quantile(values, np.linspace(0, 1, QUANTILES))]


@dataclass(frozen=True)
class RiskScale:
    threshold: float
    reference: Sequence[float] = ()  # reference_quantiles of the model's scores

    def _share_below(self, raw: float) -> float:
        """F(raw): the share of reference scores below `raw` (interpolated)."""
        q = self.reference
        if len(q) < 2 or q[-1] <= q[0]:
            return min(max(raw / self.threshold, 0.0), 1.0) if self.threshold > 0 else (1.0 if raw >= self.threshold else 0.0)
        if raw <= q[0]:
            return 0.0
        if raw >= q[-1]:
            return 1.0
        lo, hi = 0, len(q) - 1
        while hi - lo > 1:  # the last quantile at or below raw
            mid = (lo + hi) // 2
            if q[mid] <= raw:
                lo = mid
            else:
                hi = mid
        step = q[hi] - q[lo]
        within = (raw - q[lo]) / step if step > 0 else 0.0
        return (lo + within) / (len(q) - 1)

    @property
    def spread(self) -> float:
        median = self.reference[len(self.reference) // 2] if self.reference else 0.0
        return max(self.threshold - median, abs(self.threshold) * 0.1, 1e-9)

    def score(self, raw: float) -> float:
        """The 0-100 risk score of a raw score (NaN: 0)."""
        if raw != raw:
            return 0.0
        if raw >= self.threshold:
            return 50.0 + 50.0 * (1.0 - math.exp(-(raw - self.threshold) / self.spread))
        at_threshold = self._share_below(self.threshold)
        return 50.0 * self._share_below(raw) / at_threshold if at_threshold > 0 else 0.0


def severity_of(risk: float) -> str:
    """The severity band of a risk score."""
    return next(name for floor, name in BANDS if risk >= floor)


def confidence(training_windows: int | None, window_events: int) -> dict[str, Any]:
    """How much an alert can be trusted from how it was made: low while the model trained on
    less than a day of windows, or when the window held few events."""
    model = min((training_windows or 0) / FULL_TRAINING_WINDOWS, 1.0)
    data = min(window_events / FULL_WINDOW_EVENTS, 1.0)
    value = round(model * data, 3)
    level = "high" if value >= 0.67 else "medium" if value >= 0.34 else "low"
    return {"level": level, "value": value, "training_windows": int(training_windows or 0),
            "window_events": int(window_events)}
