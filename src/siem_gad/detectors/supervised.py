"""The shared base of the supervised graph detectors (`hetero_gnn`, `cat_gnn`).

They learn from labeled nodes: builders with a `label_field` attach 'benign', an attack class
or None (unlabeled) to the nodes they classify (`GraphWindow.node_label`). Training:

- classes are 'benign', each attack class with at least `min_class_rows` training nodes, and
  'other attack' for the rest (multi-class when the labels allow, binary otherwise);
- features are standardized with training statistics; classes are weighted inversely to
  their frequency (attacks are rare in a SOC's data);
- a seeded `validation` share of the labeled nodes is held out for early stopping and for
  the alert threshold: the probability of 'not benign' that maximizes F1 on those held-out
  nodes, unless `threshold` fixes one. A threshold fixed on training data is what a SOC
  deploys, so benchmarks report F1 at this threshold and not at the best one on test data.

A node's score is its probability of not being benign. With `novelty`, labels and novelty are
combined (`novelty.NoveltyHalf`): a node is novel when one of its behaviour features takes a
value the training nodes rarely or never took, beyond the `novelty_percentile` of held-out
benign nodes, and a flow's novelty counts only when its sender sent at least `novelty_burst`
novel flows per ten minutes of the window. A node's score is max(P(not benign), threshold x
novelty / novelty threshold), so it alerts when either half does. An attack family that
training never labeled is still new (IoT-23 34-1's DDoS flood: docs/benchmarks.md,
leave-one-capture-out).
Subclasses supply the network (`graph_nets.py`, imported only when they train or score), how
windows become tensors, and which nodes are scored.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np
from pydantic import Field, model_validator

from ..graphs import GraphWindow
from ..labeling import BENIGN
from . import BaseDetectorParams, Detector
from .batching import split_rows, window_groups

if TYPE_CHECKING:
    from .novelty import NoveltyHalf

OTHER_ATTACK = "other attack"


class SupervisedParams(BaseDetectorParams):
    """Supervised graph networks set their threshold from labeled held-out nodes, not from a
    percentile of training scores: `threshold_percentile` does not apply to them."""

    hidden: int = Field(64, ge=4, description="width of the hidden layers")
    layers: int = Field(2, ge=1, le=4, description="message-passing layers")
    epochs: int = Field(100, ge=1, description="most training epochs (early stopping usually ends sooner)")
    learning_rate: float = Field(5e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    validation: float = Field(0.2, gt=0, lt=1, description="share of labeled nodes held out (early stopping, threshold)")
    patience: int = Field(15, ge=1, description="epochs without a better validation loss before training stops")
    min_class_rows: int = Field(100, ge=1, description="attack classes with fewer training nodes join 'other attack'")
    threshold: float | None = Field(None, gt=0, lt=1,
                                    description="fixed alert threshold on P(not benign); default: best F1 on held-out nodes")
    batch_nodes: int = Field(200_000, ge=1, description="windows are trained and scored in batches of about this many nodes")
    novelty: bool = Field(False, description="combine P(not benign) with the nodes' novelty against everything "
                                             "training saw (a feature value it rarely or never took): alert when "
                                             "either crosses its threshold")
    novelty_percentile: float = Field(99.0, gt=50, lt=100,
                                      description="the novelty threshold: this percentile of held-out benign nodes' "
                                                  "novelty")
    novelty_burst: int = Field(50, ge=1, description="a flow's novelty counts only when its sender sent at least this "
                                                     "many novel flows per ten minutes of the window (1: each flow "
                                                     "alone)")

    @model_validator(mode="before")
    @classmethod
    def _no_percentile(cls, data: Any) -> Any:
        if isinstance(data, dict) and "threshold_percentile" in data:
            logging.getLogger("siem_gad.config").warning(
                "supervised detector: threshold_percentile does not apply (the threshold is the best F1 on held-out "
                "labeled nodes, or `threshold`); ignored")
            data = {k: v for k, v in data.items() if k != "threshold_percentile"}
        return data


def class_vocabulary(labels: np.ndarray, min_rows: int) -> list[str]:
    """'benign', then attack classes by frequency; rare ones fold into 'other attack'."""
    import pandas as pd

    counts = pd.Series(labels[labels != BENIGN]).value_counts()
    kept = [str(c) for c, n in counts.items() if n >= min_rows]
    if (counts < min_rows).any() or not kept:
        kept.append(OTHER_ATTACK)
    return [BENIGN, *kept]


def best_f1_threshold(is_attack: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The score threshold with the best F1 (midway between neighbouring scores), and that F1."""
    if is_attack.sum() == 0 or is_attack.sum() == len(is_attack):
        return 0.5, float("nan")
    order = np.argsort(-scores, kind="stable")
    s, hits = scores[order], is_attack[order].astype(np.float64)
    tp = np.cumsum(hits)
    precision, recall = tp / np.arange(1, len(s) + 1), tp / hits.sum()
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a threshold cannot split equal scores
    f1 = np.where(last_of_tie, f1, -1)
    i = int(np.argmax(f1))
    below = s[i + 1] if i + 1 < len(s) else 0.0
    return float((s[i] + below) / 2), float(f1[i])


class SupervisedGraphDetector(Detector):
    learns_from_labels = True
    level = "node"
    worker_imports = ("pandas", "siem_gad.detectors.graph_nets", "siem_gad.detectors.novelty")
    Params: ClassVar[type[SupervisedParams]] = SupervisedParams
    target_kind: ClassVar[int] = 0  # the node kind that is classified
    scaling: ClassVar[tuple[str, ...]] = ()  # the numpy attributes `_fit_scaling` sets (saved with the model)
    # Where target nodes are single events: who each counts with for the novelty burst (a flow:
    # its sender); None where each node is judged alone (`novelty.NoveltyHalf`)
    novelty_groups: ClassVar["Callable[[GraphWindow], np.ndarray] | None"] = None
    novelty_: "NoveltyHalf | None" = None  # the unsupervised half, with `novelty: true`

    # ------------------------------------------------------------------ subclass parts
    @abstractmethod
    def _new_model(self, dims: dict[str, int], classes: int) -> Any:
        """The torch network, given the feature widths found by `_fit_scaling`."""

    @abstractmethod
    def _fit_scaling(self, windows: list[GraphWindow]) -> dict[str, int]:
        """Learn feature statistics from training windows; return the input widths."""

    @abstractmethod
    def _tensors(self, windows: list[GraphWindow]) -> dict[str, Any]:
        """A batch of windows as the network's input (targets are added by the base)."""

    @abstractmethod
    def _node_scores(self, window: GraphWindow, target_scores: np.ndarray) -> np.ndarray:
        """Per-node alert scores of a window from the scores of its target-kind nodes."""

    # ------------------------------------------------------------------ fit / score
    def _targets(self, window: GraphWindow) -> np.ndarray:
        """Labels of the window's target-kind nodes (None: unlabeled)."""
        if window.node_label is None:
            return np.full(int((window.node_kind == self.target_kind).sum()), None, dtype=object)
        return window.node_label[window.node_kind == self.target_kind]

    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "SupervisedGraphDetector":
        import torch

        from . import graph_nets

        p = self.params
        windows = [w for w in windows if w.num_nodes]
        labels = np.concatenate([self._targets(w) for w in windows]) if windows else np.zeros(0, object)
        labeled = np.array([v is not None for v in labels], dtype=bool)
        if labeled.sum() < 2:
            raise ValueError(f"{type(self).__name__} is supervised and the training windows carry no node labels: set "
                             "`label_field` on the graph builder (see docs/detectors.md, 'Training on your incidents')")
        self.classes_ = class_vocabulary(labels[labeled].astype(str), p.min_class_rows)
        index = {c: i for i, c in enumerate(self.classes_)}
        other = index.get(OTHER_ATTACK, -1)
        y = np.array([-1 if v is None else index.get(str(v), other) for v in labels], dtype=np.int64)
        rng = np.random.default_rng(p.seed)
        held_out = labeled & (rng.random(len(y)) < p.validation)
        self.dims_ = self._fit_scaling(windows)
        torch.manual_seed(p.seed)
        self.model_ = self._new_model(self.dims_, len(self.classes_))
        counts = np.bincount(y[labeled & ~held_out], minlength=len(self.classes_)).astype(np.float64)
        weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32)
        batches = []
        offset = 0
        for group in window_groups(windows, p.batch_nodes):
            tensors = self._tensors(group)
            size = sum(int((w.node_kind == self.target_kind).sum()) for w in group)
            part = slice(offset, offset + size)
            offset += size
            tensors["y"] = torch.from_numpy(y[part])
            tensors["train"] = torch.from_numpy((y[part] >= 0) & ~held_out[part])
            tensors["val"] = torch.from_numpy(held_out[part])
            batches.append(tensors)
        self.losses_ = graph_nets.train_classifier(
            self.model_, batches, weight=weight, epochs=p.epochs, learning_rate=p.learning_rate,
            weight_decay=p.weight_decay, patience=p.patience, progress=progress, desc=f"{type(self).__name__}: training")
        val_scores = np.concatenate([self._attack_probability(b) for b in batches])[held_out]
        val_attack = y[held_out] > 0
        auto, f1 = best_f1_threshold(val_attack, val_scores)
        self.threshold_ = float(p.threshold) if p.threshold is not None else auto
        self.novelty_ = None
        if p.novelty:
            from .novelty import NoveltyHalf

            features = np.concatenate([w.kind_x(self.target_kind) for w in windows])
            calibration = (y == 0) & held_out
            seen = ~calibration
            if calibration.sum() < 10:  # too few held out: calibrate on the benign training nodes themselves
                calibration, seen = y == 0, np.ones(len(y), dtype=bool)
            self.novelty_ = NoveltyHalf.fit(features[seen], features[calibration],
                                            windows[0].kind_feature_names(self.target_kind), p.novelty_percentile,
                                            p.novelty_burst, p.seed)
            novelty = np.concatenate(self.novelty_ratios_of(windows))
            val_scores = np.maximum(val_scores, self.threshold_ * novelty[held_out])
        self.remember_scores(val_scores)
        self.metrics_ = {"classes": list(self.classes_), "training_nodes": int((labeled & ~held_out).sum()),
                         "validation_nodes": int(held_out.sum()), "validation_f1": f1, "epochs_run": len(self.losses_),
                         "class_counts": counts.astype(int).tolist()}
        return self

    def _attack_probability(self, tensors: dict[str, Any]) -> np.ndarray:
        import torch

        self.model_.eval()
        with torch.no_grad():
            probability = torch.softmax(self.model_(tensors), dim=-1)
        return (1 - probability[:, 0]).numpy().astype(np.float64)

    def predict_proba(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        """Class probabilities (columns: `classes_`) of each window's target-kind nodes,
        computed for many windows per forward pass (`batch_nodes`)."""
        import torch

        self.check_fitted()
        targets = [int((w.node_kind == self.target_kind).sum()) for w in windows]
        scored = [w for w, n in zip(windows, targets) if n]
        self.model_.eval()
        rows = []
        for group in window_groups(scored, self.params.batch_nodes):
            with torch.no_grad():
                rows.append(torch.softmax(self.model_(self._tensors(group)), dim=-1).numpy().astype(np.float64))
        per_window = iter(split_rows(np.concatenate(rows), [n for n in targets if n]) if rows else [])
        return [next(per_window) if n else np.zeros((0, len(self.classes_))) for n in targets]

    def target_scores(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        """P(not benign) of each window's target-kind nodes, combined with their novelty when
        the model has its novelty half (see the module)."""
        return [self._combined(p, r) for p, r in zip(self.predict_proba(windows), self.novelty_ratios_of(windows))]

    def scores_from(self, window: GraphWindow, probabilities: np.ndarray) -> np.ndarray:
        """The target-kind nodes' scores of `window` from their class probabilities
        (`predict_proba`), so an explanation that needs both runs the network once."""
        return self._combined(probabilities, self.novelty_ratios(window))

    def _combined(self, probabilities: np.ndarray, ratios: np.ndarray | None) -> np.ndarray:
        """max(P(not benign), threshold x novelty ratio): at or above the threshold when either half is."""
        if not len(probabilities):
            return np.zeros(0)
        scores = 1 - probabilities[:, 0]
        return scores if ratios is None else np.maximum(scores, self.threshold_ * ratios)

    def target_position(self, window: GraphWindow, node: int) -> int:
        """Where node `node` (of the target kind) stands among the window's target-kind nodes."""
        return int((window.node_kind[:node] == self.target_kind).sum())

    def novelty_ratios(self, window: GraphWindow) -> np.ndarray | None:
        """Each target-kind node's novelty over the novelty threshold (1: at it), or None."""
        return self.novelty_ratios_of([window])[0]

    def novelty_ratios_of(self, windows: list[GraphWindow]) -> list[np.ndarray | None]:
        """`novelty_ratios` of many windows at once (a scoring pass: one lookup for all)."""
        if self.novelty_ is None:
            return [None] * len(windows)
        return self.novelty_.window_ratios(windows, self.target_kind, self.novelty_groups)

    def score(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        return [self._node_scores(w, s) if w.num_nodes else np.zeros(0)
                for w, s in zip(windows, self.target_scores(windows))]

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, Any]:
        import torch

        state = {"classes": list(self.classes_), "dims": dict(self.dims_), "model": self.model_.state_dict(),
                 "scaling": {name: torch.from_numpy(getattr(self, name)) for name in self.scaling}}
        if self.novelty_ is not None:
            state["novelty"] = self.novelty_.get_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self.classes_ = list(state["classes"])
        self.dims_ = dict(state["dims"])
        for name in self.scaling:
            setattr(self, name, state["scaling"][name].numpy())
        self.model_ = self._new_model(self.dims_, len(self.classes_))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
        self.novelty_ = None
        if "novelty" in state:
            from .novelty import NoveltyHalf

            self.novelty_ = NoveltyHalf.from_state(state["novelty"], self.params.novelty_burst)

