"""The `iforest` detector: Isolation Forest over node features (one row per entity and window).

The fast baseline every other detector is compared with. With `entity_baseline` (default) an
entity seen in training is scored against its own typical score (the median of its training
scores): servers that are always unusual do not alert every window, while an entity that
departs from its own habits does. Entities new since training are compared with the median of
all training scores. With `contamination`, the forest is fitted twice: the second time
without that share of the rows the first one isolated most easily, so attacks in the training
history neither shape the forest nor lift the threshold. With `extrapolate`, a value beyond the
range of the rows a tree was built on keeps raising the score the further out it lies, where a
plain isolation forest stops at the edge of its training range (`flat_forest`'s module
docstring). Its saved state is the forest's trees as arrays (`flat_forest`), not a pickle:
loading needs neither a refit nor scikit-learn.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..lazy import lazy_import
from ..graphs import GraphWindow, require_finite
from . import (Detector, DetectorParams, Explanation, contamination_field, feature_contributors, kept_after_trimming,
               nodes_summary, standardizer, subsample)

np = lazy_import("numpy")


class IsolationForestDetector(Detector):
    level = "node"
    worker_imports = ("pandas", "siem_gad.detectors.forest_kernels")

    class Params(DetectorParams):
        n_estimators: int = Field(200, ge=10)
        max_samples: int = Field(256, ge=16, description="rows per tree")
        max_training_rows: int = Field(50_000, ge=100, description="training rows kept (sampled) for the forest")
        entity_baseline: bool = Field(True, description="score relative to each entity's own typical training score")
        contamination: float = contamination_field()
        extrapolate: bool = Field(False, description="values beyond the training range keep raising the score the "
                                                     "further out they lie (a plain forest saturates at its edge)")

    def _stack(self, windows: list[GraphWindow]) -> np.ndarray:
        return np.concatenate([w.x for w in windows if w.num_nodes]) if any(w.num_nodes for w in windows) else np.zeros((0, 0))

    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "IsolationForestDetector":
        import pandas as pd

        all_rows = self._stack(windows)
        if len(all_rows) < 2:
            raise ValueError("iforest needs at least 2 entity rows to train; the training windows are empty")
        keep = self._fit_trimmed(all_rows)
        raw = self._score_rows(all_rows)
        keys = np.concatenate([self._keys(w) for w in windows if w.num_nodes])
        medians = pd.Series(raw[keep]).groupby(keys[keep]).median()
        self.global_median_ = float(np.median(raw[keep]))
        self.entity_median_ = dict(zip(medians.index, medians.to_numpy())) if self.params.entity_baseline else {}
        train_scores = (raw - self._baseline(keys))[keep]
        self.threshold_ = self.threshold_from(train_scores)
        self.metrics_ = {"training_rows": int(len(all_rows)), "training_windows": len(windows),
                         "trimmed_rows": int((~keep).sum()), "entities_with_baseline": len(self.entity_median_),
                         "score_mean": float(train_scores.mean()), "score_p99": float(np.percentile(train_scores, 99))}
        return self

    def fit_matrix(self, X: np.ndarray) -> "IsolationForestDetector":
        """Fit on plain rows without entities (benchmarks): no entity baseline."""
        X = np.asarray(X, dtype=np.float32)
        require_finite(X, [], "iforest: training rows")
        keep = self._fit_trimmed(X)
        raw = self._score_rows(X)
        self.global_median_, self.entity_median_ = float(np.median(raw[keep])), {}
        self.threshold_ = self.threshold_from(raw[keep] - self.global_median_)
        return self

    def score_matrix(self, X: np.ndarray) -> np.ndarray:
        self.check_fitted()
        X = np.asarray(X, dtype=np.float32)
        require_finite(X, [], "iforest: rows to score")
        return self._score_rows(X) - self.global_median_

    def _fit_trimmed(self, rows: np.ndarray) -> np.ndarray:
        """Fit the forest (twice with `contamination`); return the mask of the rows kept."""
        rng, limit = np.random.default_rng(self.params.seed), self.params.max_training_rows
        self._fit_rows(subsample(rows, limit, rng).astype(np.float32))
        keep = kept_after_trimming(self._score_rows(rows), self.params.contamination)
        if not keep.all():
            self._fit_rows(subsample(rows[keep], limit, rng).astype(np.float32))
        return keep

    def _fit_rows(self, rows: np.ndarray) -> None:
        from .flat_forest import FlatForest

        self.mean_, self.std_ = standardizer(rows)
        self.forest_ = FlatForest.fit(rows, **self._forest_params())

    def _forest_params(self) -> dict[str, Any]:
        p = self.params
        return {"n_estimators": p.n_estimators, "max_samples": p.max_samples, "seed": p.seed, "ranges": p.extrapolate}

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.forest_.isolation(rows, extrapolate=self.params.extrapolate)

    @staticmethod
    def _keys(window: GraphWindow) -> np.ndarray:
        prefixes = np.array([f"{field}=" for field in window.node_fields], dtype=object)[window.node_kind]
        values = window.node_value
        if values.dtype == object:  # strings already (entity values): no copy through numpy's fixed-width text
            try:
                return prefixes + values
            except TypeError:  # a value that is not a string
                pass
        return prefixes + values.astype(str).astype(object)

    def _baseline(self, keys: np.ndarray) -> np.ndarray:
        """Each row's baseline: its entity's median training score, or the global median."""
        import pandas as pd

        if not self.entity_median_:
            return np.full(len(keys), self.global_median_)
        cached = getattr(self, "_median_index", None)
        if cached is None or cached[0] is not self.entity_median_:  # one hash index per fitted table
            cached = (self.entity_median_, pd.Index(list(self.entity_median_), dtype=object),
                      np.append(np.fromiter(self.entity_median_.values(), dtype=np.float64), self.global_median_))
            self._median_index = cached
        _, index, medians = cached
        position = index.get_indexer(pd.Index(keys, dtype=object))
        return medians[np.where(position >= 0, position, len(medians) - 1)]

    def score(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        self.check_fitted()
        rows = self._stack(windows)
        if not len(rows):
            return [np.zeros(0) for _ in windows]
        keys = np.concatenate([self._keys(w) for w in windows if w.num_nodes])
        scores = self._score_rows(rows) - self._baseline(keys)
        sizes = np.cumsum([w.num_nodes for w in windows])[:-1]
        return np.split(scores, sizes)

    def explain(self, window: GraphWindow, item: int, top_k: int = 5) -> Explanation:
        contributors = feature_contributors(window, item, self.mean_, self.std_, top_k)
        evidence, count = window.node_evidence(item)
        entity = window.entity(item)
        field, value = next(iter(entity.items()))
        key = self._keys(window)[item]
        habit = "its own typical score" if key in self.entity_median_ else "the typical score (new entity)"
        return Explanation(entity, contributors, evidence, count,
                           summary=f"{field} {value} is isolated far more easily than {habit}: {nodes_summary(contributors)}",
                           extra={"new_entity": key not in self.entity_median_})

    def get_state(self) -> dict[str, Any]:
        import torch

        return {"forest": self.forest_.get_state(), "mean": torch.from_numpy(np.ascontiguousarray(self.mean_)),
                "std": torch.from_numpy(np.ascontiguousarray(self.std_)), "entity_keys": list(self.entity_median_),
                "entity_medians": torch.tensor(list(self.entity_median_.values()), dtype=torch.float64),
                "global_median": self.global_median_}

    def set_state(self, state: dict[str, Any]) -> None:
        from .flat_forest import FlatForest

        if "sample" in state:  # a model file from before the flat forest: refit from its sample
            self._fit_rows(state["sample"].numpy())
        else:
            self.forest_ = FlatForest.from_state(state["forest"], **self._forest_params())
            self.mean_, self.std_ = state["mean"].numpy(), state["std"].numpy()
        self.entity_median_ = dict(zip(state["entity_keys"], state["entity_medians"].tolist()))
        self.global_median_ = float(state["global_median"])
