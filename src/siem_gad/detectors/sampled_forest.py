"""An isolation forest stored as its training sample and seed, never as a pickle.

`iforest` and the novelty half of the supervised graph detectors (`supervised.NoveltyHalf`)
both keep a forest this way: loading refits it on the same rows with the same seed, which gives
an identical model and keeps model files free of executable pickles. Training needs no more
than a sample (`subsample`), since each tree sees only `max_samples` rows anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_import

np = lazy_import("numpy")

if TYPE_CHECKING:
    import numpy


class SampledForest:
    """scikit-learn's `IsolationForest` fitted on `sample` with `seed`; `isolation` is the
    negated `score_samples`: higher is easier to isolate, about 0.3-0.8."""

    def __init__(self, sample: "numpy.ndarray", *, n_estimators: int, max_samples: int, seed: int):
        from sklearn.ensemble import IsolationForest

        self.sample = np.ascontiguousarray(sample, dtype=np.float32)
        self.forest = IsolationForest(n_estimators=n_estimators, max_samples=min(max_samples, len(self.sample)),
                                      random_state=seed).fit(self.sample)

    def isolation(self, rows: "numpy.ndarray") -> "numpy.ndarray":
        if not len(rows):
            return np.zeros(0)
        return -self.forest.score_samples(np.asarray(rows, dtype=np.float32))
