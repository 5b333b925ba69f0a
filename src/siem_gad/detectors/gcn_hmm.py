"""The `gcn_hmm` detector: GCN window embeddings and a Gaussian HMM over their sequence.

1. A GCN encoder, trained self-supervised by edge reconstruction, embeds every entity of a
   window graph (see `gcn_torch`).
2. Node embeddings are pooled to one vector per window (mean and max, so that one extreme
   entity is not averaged away among hundreds of ordinary ones), standardized and projected
   on their first principal components.
3. A Gaussian HMM (hmmlearn) learns the regimes of the window sequence (day, night, weekend ...).
   A window's score is its negative log-likelihood given all earlier windows (forward
   filtering), so both unlikely windows and unlikely regime changes score high. A window whose
   most likely state is rare in training (`rare_state_fraction`) scores at least the threshold.
   A window whose likelihood alone crosses the threshold is an outlier, and the filter does
   not condition the state on it (the belief carried forward is the prediction made before
   it): one attack window would otherwise drag the regime off course, and the normal windows
   after it would alert too.

The explanation decomposes the window's deviation from the expected state onto the nodes:
each node's share of the pooled embedding shift, weighted by the HMM's precision, so the
ranked contributors are the entities that moved the window most.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..lazy import lazy_import
from ..graphs import GraphWindow
from ..timeutil import isoformat
from . import Detector, DetectorParams, Explanation, standardizer

np = lazy_import("numpy")


def _logsumexp(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    peak = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - peak), axis=axis, keepdims=True)) + peak
    return np.squeeze(out, axis=axis) if axis is not None else out.item()


class GcnHmmDetector(Detector):
    level = "window"
    stateful = True
    worker_imports = ("siem_gad.detectors.gcn_torch",)

    class Params(DetectorParams):
        threshold_percentile: float = Field(95.0, gt=0, lt=100)
        hidden: int = Field(32, ge=2)
        embedding: int = Field(16, ge=2)
        epochs: int = Field(150, ge=1)
        learning_rate: float = Field(0.01, gt=0)
        states: int = Field(3, ge=1, le=20, description="hidden regimes of the window sequence")
        hmm_dims: int = Field(4, ge=1, description="principal components of the pooled embedding fed to the HMM")
        hmm_iterations: int = Field(100, ge=1)
        rare_state_fraction: float = Field(0.05, ge=0, lt=1)
        hold_state_on_outliers: bool = Field(True, description="do not condition the regime on a window whose "
                                             "likelihood crosses the threshold")
        batch_nodes: int = Field(200_000, ge=1, description="windows are embedded in batches of about this many nodes")

    # ------------------------------------------------------------------ fit
    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "GcnHmmDetector":
        from hmmlearn.hmm import GaussianHMM

        from .gcn_torch import train_encoder

        train = [w for w in windows if w.num_nodes and w.num_edges]
        if len(train) < 2:
            raise ValueError(f"gcn_hmm needs at least 2 non-empty training windows, got {len(train)}")
        p = self.params
        rows = np.concatenate([w.x for w in train])
        self.feature_mean_, self.feature_std_ = standardizer(rows)
        self.encoder_, losses = train_encoder(train, self.feature_mean_, self.feature_std_, hidden=p.hidden,
                                              embedding=p.embedding, epochs=p.epochs, learning_rate=p.learning_rate,
                                              seed=p.seed, progress=progress)
        pooled = np.stack([self._pool(z) for z in self._embed(train)])
        self.pool_mean_, self.pool_std_ = standardizer(pooled)
        standard = (pooled - self.pool_mean_) / self.pool_std_
        dims = max(1, min(p.hmm_dims, len(train) - 1, standard.shape[1]))
        # contiguous, as after loading: the same memory layout gives bit-identical scores
        self.components_ = np.ascontiguousarray(np.linalg.svd(standard, full_matrices=False)[2][:dims].T)
        observed = standard @ self.components_
        states = max(1, min(p.states, len(train) // 4))
        hmm = GaussianHMM(n_components=states, covariance_type="diag", n_iter=p.hmm_iterations, random_state=p.seed,
                          min_covar=1e-3)
        hmm.fit(observed)
        self.startprob_ = np.clip(hmm.startprob_, 1e-6, None)
        self.transmat_ = np.clip(hmm.transmat_, 1e-6, None)
        self.transmat_ /= self.transmat_.sum(axis=1, keepdims=True)
        self.means_ = hmm.means_
        self.vars_ = np.diagonal(hmm.covars_, axis1=1, axis2=2).copy()
        posteriors = hmm.predict_proba(observed)
        self.occupancy_ = posteriors.mean(axis=0)
        present = [True] * len(train)
        # the outlier gate needs a threshold: the first filtering pass, ungated, gives it
        scores, _ = self._filter(observed, present, None, rare_floor=False, gate=None)
        if p.hold_state_on_outliers:
            scores, _ = self._filter(observed, present, None, rare_floor=False, gate=self.threshold_from(scores))
        self.threshold_ = self.threshold_from(scores)
        self.metrics_ = {"training_windows": len(train), "final_loss": losses[-1], "first_loss": losses[0],
                         "states": states, "hmm_dims": dims, "occupancy": self.occupancy_.round(3).tolist(),
                         "train_score_median": float(np.median(scores))}
        self.explain_cache = {}
        return self

    # ------------------------------------------------------------------ pieces
    def _embed(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        from .gcn_torch import embed

        return embed(self.encoder_, windows, self.feature_mean_, self.feature_std_, self.params.batch_nodes)

    @staticmethod
    def _pool(z: np.ndarray) -> np.ndarray:
        return np.concatenate([z.mean(axis=0), z.max(axis=0)])

    def _observe(self, z: np.ndarray) -> np.ndarray:
        return ((self._pool(z) - self.pool_mean_) / self.pool_std_) @ self.components_

    def _log_emission(self, y: np.ndarray) -> np.ndarray:
        return -0.5 * (np.log(2 * np.pi * self.vars_) + (y - self.means_) ** 2 / self.vars_).sum(axis=1)

    def _filter(self, observed: np.ndarray, present: list[bool], alpha: np.ndarray | None,
                rare_floor: bool = True, gate: float | None | bool = True) -> tuple[np.ndarray, list[dict]]:
        """Forward filtering: -log p(y_t | y_<t) per window; absent windows only advance time.
        A window whose likelihood score reaches `gate` (True: the threshold; None: no gate) is
        not conditioned on: the state carried on is its prediction."""
        log_trans = np.log(self.transmat_)
        gate = (self.threshold_ if self.params.hold_state_on_outliers else None) if gate is True else gate
        scores, steps = [], []
        rows = iter(observed)
        for has_data in present:
            predicted = np.log(self.startprob_) if alpha is None else _logsumexp(alpha[:, None] + log_trans, axis=0)
            if not has_data:
                alpha = predicted
                scores.append(np.nan)
                steps.append({})
                continue
            y = next(rows)
            joint = predicted + self._log_emission(y)
            evidence = _logsumexp(joint)
            posterior = np.exp(joint - evidence)
            state = int(np.argmax(posterior))
            score = -float(evidence)
            outlier = gate is not None and score >= gate
            alpha = predicted if outlier else joint - evidence
            rare = self.occupancy_[state] < self.params.rare_state_fraction
            if rare and rare_floor:
                score = max(score, self.threshold_)
            scores.append(score)
            steps.append({"y": y, "posterior": posterior, "state": state, "rare": bool(rare), "carry": alpha,
                          "outlier": bool(outlier)})
        return np.asarray(scores), steps

    # ------------------------------------------------------------------ score / explain
    def score(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        self.check_fitted()
        present = [bool(w.num_nodes) for w in windows]
        embeddings = self._embed([w for w in windows if w.num_nodes])
        observed = np.stack([self._observe(z) for z in embeddings]) if embeddings else np.zeros((0, self.components_.shape[1]))
        alpha = self._resume(windows[0]) if windows else None
        scores, steps = self._filter(observed, present, alpha)
        z_iter = iter(embeddings)
        self.explain_cache = {}
        for window, step in zip(windows, steps):
            if step:
                self.explain_cache[isoformat(window.start)] = {**step, "z": next(z_iter)}
        if windows and steps[-1]:
            self.stream_state_ = {"alpha": steps[-1]["carry"].tolist(), "next_window": isoformat(windows[-1].end)}
        return [np.array([s]) for s in scores]

    def _resume(self, first: GraphWindow) -> np.ndarray | None:
        """The filtered state distribution carried over from the previous pass, if contiguous."""
        state = self.stream_state_
        if not state or state.get("next_window") != isoformat(first.start):
            return None
        return np.asarray(state["alpha"], dtype=np.float64)

    def explain(self, window: GraphWindow, item: int = 0, top_k: int = 5) -> Explanation:
        step = self.explain_cache.get(isoformat(window.start))
        if step is None:  # explained without a preceding score(): treat it as a fresh sequence
            self.score([window])
            step = self.explain_cache[isoformat(window.start)]
        contributions = self._node_contributions(step["z"], step["y"], step["posterior"])
        order = np.argsort(-contributions)[:top_k]
        contributors = [{"name": window.node_fields[int(window.node_kind[i])], "value": str(window.node_value[i]),
                         "weight": round(float(contributions[i]), 4)} for i in order]
        top = int(order[0])
        evidence, count = window.node_evidence(top)
        state, rare = step["state"], step["rare"]
        regime = f"state {state + 1} of {len(self.occupancy_)}" + (f", rare: {self.occupancy_[state]:.0%} of training" if rare else "")
        listed = ", ".join(f"{c['name']} {c['value']} ({c['weight']:+.2f})" for c in contributors[:3])
        return Explanation(window.entity(top), contributors, evidence, count,
                           summary=f"window graph unlikely under the sequence model ({regime}); moved most by {listed}",
                           extra={"state": state + 1, "rare_state": rare, "state_held": step["outlier"],
                                  "nodes": window.num_nodes,
                                  "edges": window.num_edges})

    def _node_contributions(self, z: np.ndarray, y: np.ndarray, posterior: np.ndarray) -> np.ndarray:
        """Each node's share of (y - mu)' Sigma^-1 (y - mu), chained back through pooling."""
        gradient_y = (posterior[:, None] * (y - self.means_) / self.vars_).sum(axis=0)
        gradient_pool = (self.components_ @ gradient_y) / self.pool_std_
        width = z.shape[1]
        mean_part, max_part = gradient_pool[:width], gradient_pool[width:]
        contributions = (z - self.pool_mean_[:width]) @ mean_part / len(z)
        holders = np.argmax(z, axis=0)
        np.add.at(contributions, holders, max_part * (z.max(axis=0) - self.pool_mean_[width:]))
        return contributions

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, Any]:
        import torch

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))

        return {
            "encoder": self.encoder_.state_dict(), "in_dim": int(len(self.feature_mean_)),
            "feature_mean": t(self.feature_mean_), "feature_std": t(self.feature_std_),
            "pool_mean": t(self.pool_mean_), "pool_std": t(self.pool_std_), "components": t(self.components_),
            "startprob": t(self.startprob_), "transmat": t(self.transmat_), "means": t(self.means_),
            "vars": t(self.vars_), "occupancy": t(self.occupancy_),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        from .gcn_torch import GcnEncoder

        self.encoder_ = GcnEncoder(int(state["in_dim"]), self.params.hidden, self.params.embedding)
        self.encoder_.load_state_dict(state["encoder"])
        self.encoder_.eval()
        for name in ("feature_mean", "feature_std", "pool_mean", "pool_std", "components", "startprob", "transmat",
                     "means", "vars", "occupancy"):
            setattr(self, f"{name}_", state[name].numpy())
        self.feature_mean_ = self.feature_mean_.astype(np.float32)
        self.feature_std_ = self.feature_std_.astype(np.float32)
        self.explain_cache = {}
