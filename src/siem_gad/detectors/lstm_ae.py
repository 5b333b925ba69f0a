"""The `lstm_ae` detector: an LSTM autoencoder over the time series of window aggregates.

Each window becomes one vector: log counts of events, entities and edges, and the mean and the
maximum of every node feature. The autoencoder (an LSTM encoder, its last state repeated
`sequence` times, an LSTM decoder) learns to reconstruct sequences of `sequence` consecutive
windows from the training period. A window's score is the reconstruction error of its own
step, the last of the sequence that ends with it, so a burst alerts in the window where it
happens. Threshold: mean + `sigma` x std of the scores (the usual rule for reconstruction
errors), or a percentile.

Those scores come from the latest `validation` share of the training windows, held out of the
fit (their sequences still see the windows before them), and training stops early when the
error on them stops falling. Errors on the windows a network was fitted to understate what new
quiet windows score: on LUFlow the threshold from training errors took precision from 0.88 to
0.44 (docs/benchmarks.md). With fewer than 10 windows to hold out (under 50 training windows at
the default 0.2), all of them are fitted and the threshold comes from their errors.

It is a sequence detector: the last `sequence - 1` window vectors are carried from one pass to
the next as stream state (stored with the checkpoint), so a window at the start of a pass is
scored with its real history. Without history (a gap, the first pass) the sequence is padded
with the first window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from ..graphs import GraphWindow
from ..timeutil import isoformat
from . import Detector, ErrorThresholdParams, Explanation, standardizer
from .training import fit_network

if TYPE_CHECKING:
    import torch


def window_vector(window: GraphWindow, width: int) -> np.ndarray:
    """[log1p events, log1p entities, log1p edges, mean of each node feature, max of each]."""
    counts = np.log1p([window.num_events, window.num_nodes, window.num_edges]).astype(np.float32)
    if window.num_nodes:
        return np.concatenate([counts, window.x.mean(axis=0), window.x.max(axis=0)])
    return np.concatenate([counts, np.zeros(2 * width, np.float32)])


MIN_VALIDATION_SEQUENCES = 10  # fewer give no usable mean + k sigma


class LstmAeDetector(Detector):
    level = "window"
    stateful = True
    worker_imports = ("torch",)

    class Params(ErrorThresholdParams):
        sequence: int = Field(12, ge=2, description="windows per sequence")
        hidden: int = Field(32, ge=2, description="LSTM state size")
        epochs: int = Field(60, ge=1)
        batch_size: int = Field(16, ge=1)
        learning_rate: float = Field(5e-3, gt=0)
        threshold_method: Literal["percentile", "sigma"] = Field("sigma", description="how the alert threshold is set")
        validation: float = Field(0.2, ge=0, lt=0.5, description="share of the training windows, the latest, held "
                                                                  "out for early stopping and the threshold; 0 "
                                                                  "takes the threshold from the fitted windows")
        patience: int = Field(10, ge=1, description="epochs without a lower validation error before stopping")

    # ------------------------------------------------------------------ fit
    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "LstmAeDetector":
        import torch

        p = self.params
        if len(windows) < p.sequence + 1:
            raise ValueError(f"lstm_ae needs more training windows than its sequence ({p.sequence}); got {len(windows)}")
        names = next((list(w.feature_names) for w in windows if w.num_nodes), None)
        if names is None:
            raise ValueError("lstm_ae: the training windows are empty")
        self.feature_names_ = ["events", "entities", "edges", *(f"mean {n}" for n in names), *(f"max {n}" for n in names)]
        self.width_ = len(names)
        vectors = np.stack([window_vector(w, self.width_) for w in windows])
        self.mean_, self.std_ = standardizer(vectors)
        scaled = (vectors - self.mean_) / self.std_
        sequences = torch.from_numpy(np.stack([scaled[i:i + p.sequence] for i in range(len(scaled) - p.sequence + 1)]))
        # The sequences that end in the latest `validation` share of the windows are held out,
        # unless that leaves too few on either side.
        held_out = int(round(p.validation * len(windows)))
        if held_out < MIN_VALIDATION_SEQUENCES or len(sequences) - held_out < 2:
            held_out = 0
        fitted, validation = sequences[:len(sequences) - held_out], sequences[len(sequences) - held_out:]
        torch.manual_seed(p.seed)
        self.model_ = _LstmAutoencoder(scaled.shape[1], p.hidden, p.sequence)
        epochs = self._train(fitted, validation, np.random.default_rng(p.seed), progress)
        scores = self._errors(validation if len(validation) else fitted).mean(axis=1)
        self.threshold_ = self.threshold_from(scores)
        self.metrics_ = {"training_windows": len(windows), "sequences": int(len(fitted)),
                         "validation_sequences": int(len(validation)), "epochs": epochs,
                         "score_mean": float(scores.mean()), "score_std": float(scores.std())}
        return self

    def _train(self, fitted: "torch.Tensor", validation: "torch.Tensor", rng: np.random.Generator,
               progress: bool = False) -> int:
        """Fit the network; with validation sequences, stop when their error has not fallen for
        `patience` epochs and keep the best weights. Returns the epochs run."""
        import torch

        p = self.params

        def step_losses(epoch: int):
            order = torch.from_numpy(rng.permutation(len(fitted)))
            for start in range(0, len(fitted), p.batch_size):
                batch = fitted[order[start:start + p.batch_size]]
                yield ((self.model_(batch) - batch) ** 2).mean()

        return fit_network(self.model_, step_losses, epochs=p.epochs, learning_rate=p.learning_rate,
                           patience=p.patience, progress=progress, desc="lstm_ae: epochs",
                           validation=lambda: float(self._errors(validation).mean()) if len(validation) else None).epochs

    def _errors(self, sequences: "torch.Tensor") -> np.ndarray:
        """Per-feature squared error of the last step of each sequence."""
        import torch

        with torch.no_grad():
            return ((self.model_(sequences)[:, -1] - sequences[:, -1]) ** 2).numpy()

    # ------------------------------------------------------------------ score / explain
    def score(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        import torch

        self.check_fitted()
        if not windows:
            return []
        p = self.params
        current = [(window_vector(w, self.width_) - self.mean_) / self.std_ for w in windows]
        state = self.stream_state_ or {}
        history = ([np.asarray(v, dtype=np.float32) for v in state["history"]]
                   if state.get("next_window") == isoformat(windows[0].start) else [])
        series = history + current
        offset = len(history)
        sequences = []
        for t in range(offset, len(series)):
            past = series[max(0, t - p.sequence + 1):t + 1]
            past = [past[0]] * (p.sequence - len(past)) + past  # pad a short history with its first window
            sequences.append(np.stack(past))
        errors = self._errors(torch.from_numpy(np.stack(sequences).astype(np.float32)))
        self.explain_cache = {isoformat(w.start): e for w, e in zip(windows, errors)}
        self.stream_state_ = {"history": [v.tolist() for v in series[-(p.sequence - 1):]],
                              "next_window": isoformat(windows[-1].end)}
        return [np.array([e.mean()]) for e in errors]

    def explain(self, window: GraphWindow, item: int = 0, top_k: int = 5) -> Explanation:
        errors = self.explain_cache.get(isoformat(window.start))
        if errors is None:
            self.score([window])
            errors = self.explain_cache[isoformat(window.start)]
        raw = window_vector(window, self.width_)
        order = np.argsort(-errors)[:top_k]
        contributors = [{"name": self.feature_names_[i], "value": round(float(raw[i]), 3),
                         "typical": round(float(self.mean_[i]), 3), "weight": round(float(errors[i]), 4)} for i in order]
        entity, evidence, count = {}, [], 0
        if window.num_nodes:  # point at the entity that drives the top node feature, if one does
            column = int(order[0]) - 3
            node = int(np.argmax(window.x[:, column % self.width_])) if column >= 0 else int(np.argmax(window.x[:, 1]))
            entity = window.entity(node)
            evidence, count = window.node_evidence(node)
        listed = ", ".join(f"{c['name']} {c['value']} (typical {c['typical']})" for c in contributors[:3])
        return Explanation(entity, contributors, evidence, count,
                           summary=f"window unlike the sequences of the training period: {listed}",
                           extra={"events": window.num_events, "entities": window.num_nodes})

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, Any]:
        import torch

        return {"model": dict(self.model_.state_dict()), "mean": torch.from_numpy(self.mean_),
                "std": torch.from_numpy(self.std_), "feature_names": self.feature_names_, "width": self.width_}

    def set_state(self, state: dict[str, Any]) -> None:
        self.mean_, self.std_ = state["mean"].numpy(), state["std"].numpy()
        self.feature_names_, self.width_ = list(state["feature_names"]), int(state["width"])
        self.model_ = _LstmAutoencoder(len(self.mean_), self.params.hidden, self.params.sequence)
        self.model_.load_state_dict(state["model"])
        self.model_.eval()


def _LstmAutoencoder(n_features: int, hidden: int, length: int) -> "torch.nn.Module":
    import torch

    class LstmAutoencoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.LSTM(n_features, hidden, batch_first=True)
            self.decoder = torch.nn.LSTM(hidden, hidden, batch_first=True)
            self.output = torch.nn.Linear(hidden, n_features)

        def forward(self, sequences: torch.Tensor) -> torch.Tensor:
            _, (state, _) = self.encoder(sequences)
            repeated = state[-1][:, None, :].repeat(1, length, 1)
            decoded, _ = self.decoder(repeated)
            return self.output(decoded)

    return LstmAutoencoder()
