"""Shared base of the tabular neural detectors: one row per entity and window (node features).

`fit_matrix(X, y=None)` / `score_matrix(X)` work on plain matrices (the benchmarks use them on
KDD Cup 99); `fit(windows)` / `score(windows)` stack the windows' node-feature tables. What the
base does for every subclass:

- feature scaling (mean and standard deviation of the training rows; `standardizer`);
- mini-batch training with Adam, a validation split and early stopping on its loss;
- `ensemble` networks, trained from the seeds seed, seed+1, ...; every score is their mean. One
  network's score in the far tail depends on which rare training rows it happened to fit; the
  mean does not (docs/benchmarks.md, KDD Cup 99);
- the threshold: the `threshold_percentile` of the training scores, or mean + k sigma
  (`threshold_method: sigma`), the usual rule for reconstruction errors;
- explanations: SHAP values of the score for the row (expected gradients against a background
  sample of training rows), falling back to the per-feature scores (reconstruction error per
  feature) when SHAP is not installed;
- save/load as plain tensors (`torch.load(weights_only=True)`).

A subclass builds the network (`build_model`), defines the training loss (`loss`) and the
anomaly score per row and per feature (`score_rows`, `feature_scores`). Activations must be
`nn.Module`s (`nn.ReLU`), not functional calls, so that SHAP's explainers can follow them.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from ..graphs import GraphWindow, require_finite
from . import (Detector, ErrorThresholdParams, Explanation, contamination_field, kept_after_trimming, readable,
               standardizer, subsample_index)
from .training import fit_network

if TYPE_CHECKING:
    import torch


class TabularParams(ErrorThresholdParams):
    hidden: list[int] = Field(default_factory=lambda: [32, 16], description="sizes of the hidden layers")
    latent: int = Field(4, ge=1, description="size of the code")
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(128, ge=8)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    validation: float = Field(0.1, ge=0, lt=0.5, description="share of training rows held out for early stopping")
    patience: int = Field(5, ge=1, description="epochs without a better validation loss before stopping")
    max_training_rows: int = Field(200_000, ge=100)
    shap_background: int = Field(100, ge=10, description="training rows SHAP compares against")
    ensemble: int = Field(1, ge=1, le=20, description="networks trained from the seeds seed, seed+1, ...; the score is "
                                                       "their mean (steadier across seeds, at ensemble x the training time)")
    contamination: float = contamination_field()


class TabularDetector(Detector):
    level = "node"
    worker_imports = ("pandas", "torch")
    Params = TabularParams

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def build_model(self, n_features: int) -> "torch.nn.Module":
        """A fresh network for rows of `n_features` (activations as nn.Modules)."""

    @abstractmethod
    def loss(self, model: "torch.nn.Module", batch: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
        """The training loss of a mini-batch of scaled rows; `labels` are +1 known normal,
        -1 known anomalous, 0 unlabeled (unsupervised detectors ignore them)."""

    @abstractmethod
    def score_rows(self, model: "torch.nn.Module", rows: "torch.Tensor") -> "torch.Tensor":
        """Anomaly score per (scaled) row, differentiable (SHAP explains it)."""

    @abstractmethod
    def feature_scores(self, model: "torch.nn.Module", rows: "torch.Tensor") -> "torch.Tensor":
        """Per-feature part of the score, the fallback explanation."""

    def before_training(self, model: "torch.nn.Module", rows: "torch.Tensor", rng: np.random.Generator) -> None:
        """Called once with all (scaled) training rows before training (Deep SAD's pretraining)."""

    def after_training(self, model: "torch.nn.Module", rows: "torch.Tensor") -> None:
        """Called once with all (scaled) training rows before they are scored: fit what the
        score needs beyond the network (the mixture of aegmm/vaegmm)."""

    def added_buffers(self, n_features: int) -> dict[str, "torch.Tensor"]:
        """Network buffers that model files saved by earlier versions lack, each with the value
        that reproduces how those files scored; `set_state` fills them in."""
        return {}

    # ------------------------------------------------------------------ matrices
    def fit_matrix(self, X: np.ndarray, y: np.ndarray | None = None, feature_names: list[str] | None = None,
                   progress: bool = False) -> "TabularDetector":
        p = self.params
        X = np.asarray(X, dtype=np.float32)
        y = np.zeros(len(X), np.float32) if y is None else np.asarray(y, dtype=np.float32)
        if len(X) < 10:
            raise ValueError(f"{type(self).__name__} needs at least 10 training rows, got {len(X)}")
        rng = np.random.default_rng(p.seed)
        keep = subsample_index(len(X), p.max_training_rows, rng)
        if keep is not None:
            X, y = X[keep], y[keep]
        self.feature_names_ = list(feature_names or [f"f{i}" for i in range(X.shape[1])])
        require_finite(X, self.feature_names_, f"{type(self).__name__}: training rows")
        self._fit_rows(X, y, rng, progress)
        if p.contamination:
            # labeled rows (Deep SAD's verdicts, either way) are labels, not noise: they stay
            keep = kept_after_trimming(self.score_matrix(X), p.contamination) | (y != 0)
            self._fit_rows(X[keep], y[keep], rng, progress)
            self.metrics_["trimmed_rows"] = int((~keep).sum())
        return self

    def _fit_rows(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, progress: bool) -> None:
        """Scale, train the networks, set the threshold from the rows' scores."""
        import torch

        p = self.params
        self.mean_, self.std_ = standardizer(X)
        scaled, labels = torch.from_numpy((X - self.mean_) / self.std_), torch.from_numpy(y)
        self.networks_, epochs, losses = [], [], []
        for member in range(p.ensemble):
            # Member 0 draws from the same streams as a single network, so ensemble: 1 is unchanged.
            member_rng = rng if member == 0 else np.random.default_rng(p.seed + member)
            label = f"network {member + 1}/{p.ensemble}: " if p.ensemble > 1 else ""
            network, trained, best = self._fit_network(scaled, labels, p.seed + member, member_rng, progress, label)
            self.networks_.append(network)
            epochs.append(trained)
            losses.append(best)
        scores = self._scores(scaled)
        self.threshold_ = self.threshold_from(scores)
        self.background_ = scaled[rng.choice(len(scaled), min(p.shap_background, len(scaled)), replace=False)]
        self.metrics_ = {"training_rows": int(len(X)), "epochs": epochs, "validation_loss": losses,  # per network
                         "score_mean": float(scores.mean()), "score_std": float(scores.std())}

    def _fit_network(self, scaled: "torch.Tensor", labels: "torch.Tensor", seed: int, rng: np.random.Generator,
                     progress: bool, label: str = "") -> tuple["torch.nn.Module", int, float | None]:
        """One network: built from `seed`, trained, and fitted for scoring (after_training)."""
        import torch

        p = self.params
        torch.manual_seed(seed)
        network = self.build_model(scaled.shape[1])
        self.before_training(network, scaled, rng)
        order = torch.from_numpy(rng.permutation(len(scaled)))
        n_val = int(len(scaled) * p.validation) if len(scaled) >= 50 else 0
        val = (scaled[order[:n_val]], labels[order[:n_val]])
        train = (scaled[order[n_val:]], labels[order[n_val:]])
        epochs, best = self._train(network, train, val, rng, progress, label)
        network.eval()
        with torch.no_grad():
            self.after_training(network, scaled)
        return network, epochs, best

    def _scores(self, rows: "torch.Tensor") -> np.ndarray:
        """The score of (scaled) rows: the mean over the networks."""
        import torch

        with torch.no_grad():
            return torch.stack([self.score_rows(n, rows) for n in self.networks_]).mean(dim=0).numpy().astype(np.float64)

    def _train(self, network: "torch.nn.Module", train: tuple["torch.Tensor", "torch.Tensor"],
               val: tuple["torch.Tensor", "torch.Tensor"], rng: np.random.Generator,
               progress: bool, label: str = "") -> tuple[int, float | None]:
        import torch

        p = self.params
        rows, labels = train

        def step_losses(epoch: int):
            order = torch.from_numpy(rng.permutation(len(rows)))
            for start in range(0, len(rows), p.batch_size):
                pick = order[start:start + p.batch_size]
                yield self.loss(network, rows[pick], labels[pick])

        result = fit_network(network, step_losses, epochs=p.epochs, learning_rate=p.learning_rate,
                             weight_decay=p.weight_decay, patience=p.patience, progress=progress,
                             desc=f"{type(self).__name__}: {label}epochs",
                             validation=lambda: float(self.loss(network, *val)) if len(val[0]) else None)
        return result.epochs, result.best

    def score_matrix(self, X: np.ndarray) -> np.ndarray:
        self.check_fitted()
        X = np.asarray(X, dtype=np.float32)
        require_finite(X, self.feature_names_, f"{type(self).__name__}: rows to score")
        return self._scores(self.scaled(X))

    def scaled(self, X: np.ndarray) -> "torch.Tensor":
        """Rows as the networks see them: standardised with the training statistics."""
        import torch

        return torch.from_numpy(((np.asarray(X, dtype=np.float32) - self.mean_) / self.std_).astype(np.float32))

    def attributions(self, row: np.ndarray) -> tuple[np.ndarray, str]:
        """(contribution of each feature to the row's score, method): SHAP expected gradients,
        or the per-feature scores when SHAP is not available."""
        import torch

        scaled = self.scaled(np.asarray(row)[None, :])
        try:
            import shap
        except ImportError:
            with torch.no_grad():
                per_network = [self.feature_scores(n, scaled) for n in self.networks_]
            return torch.stack(per_network).mean(dim=0).numpy()[0], "per-feature score"
        explainer = shap.GradientExplainer(_score_module(self), self.background_)
        values = explainer.shap_values(scaled, nsamples=200, rseed=self.params.seed)
        return np.asarray(values).reshape(-1)[: scaled.shape[1]], "SHAP"

    # ------------------------------------------------------------------ windows
    @staticmethod
    def _stack(windows: list[GraphWindow]) -> np.ndarray:
        rows = [w.x for w in windows if w.num_nodes]
        return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)

    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "TabularDetector":
        names = next((list(w.feature_names) for w in windows if w.num_nodes), None)
        return self.fit_matrix(self._stack(windows), feature_names=names, progress=progress)

    def score(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        self.check_fitted()
        rows = self._stack(windows)
        if not len(rows):
            return [np.zeros(0) for _ in windows]
        return np.split(self.score_matrix(rows), np.cumsum([w.num_nodes for w in windows])[:-1])

    def explain(self, window: GraphWindow, item: int, top_k: int = 5) -> Explanation:
        values, method = self.attributions(window.x[item])
        order = np.argsort(-np.abs(values))[:top_k]
        contributors = [{"name": window.feature_names[i], "value": readable(window, i, window.x[item, i]),
                         "typical": readable(window, i, self.mean_[i]), "weight": round(float(values[i]), 4)}
                        for i in order]
        evidence, count = window.node_evidence(item)
        entity = window.entity(item)
        field, value = next(iter(entity.items()))
        summary = ", ".join(f"{c['name']}={c['value']} (typical {c['typical']}, {c['weight']:+.3f})" for c in contributors[:3])
        return Explanation(entity, contributors, evidence, count, summary=f"{field} {value}: {summary}",
                           extra={"explained_by": method})

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, Any]:
        import torch

        return {"networks": [dict(n.state_dict()) for n in self.networks_], "mean": torch.from_numpy(self.mean_),
                "std": torch.from_numpy(self.std_), "background": self.background_,
                "feature_names": self.feature_names_}

    def set_state(self, state: dict[str, Any]) -> None:
        self.mean_ = state["mean"].numpy()
        self.std_ = state["std"].numpy()
        self.feature_names_ = list(state["feature_names"])
        self.background_ = state["background"]
        self.networks_ = []
        for weights in state["networks"] if "networks" in state else [state["model"]]:  # "model": one network (older files)
            network = self.build_model(len(self.mean_))
            network.load_state_dict({**self.added_buffers(len(self.mean_)), **weights})
            self.networks_.append(network.eval())


def _score_module(detector: TabularDetector) -> "torch.nn.Module":
    """The detector's score (the mean over its networks) as a module with one output column, for SHAP."""
    import torch

    class Score(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.networks = torch.nn.ModuleList(detector.networks_)

        def forward(self, rows: torch.Tensor) -> torch.Tensor:
            return torch.stack([detector.score_rows(n, rows) for n in self.networks]).mean(dim=0)[:, None]

    return Score().eval()


def mlp(sizes: list[int], last_activation: bool = False) -> "torch.nn.Sequential":
    """Linear layers with nn.ReLU modules between them."""
    import torch

    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)
