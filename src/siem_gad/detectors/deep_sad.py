"""The `deep_sad` detector: Deep Semi-supervised Anomaly Detection (Ruff et al., ICLR 2020).

A network maps rows into a space where normal rows gather around a centre `c`; the score is the
squared distance to it. Unlabeled rows pull towards the centre; rows labeled normal pull
harder (`eta`), rows labeled anomalous are pushed away (their inverse distance is minimised).
Without labels it is Deep SVDD. The network is first pretrained as the encoder of an
autoencoder, whose codes set the centre. Its layers have no bias terms (a bias would let the
network map everything onto the centre).

Labels in a job come from two places. Rows of a builder with a `label_field` (`profile`) carry
the events' labels: a row with an attack event is labeled anomalous, a row whose events are all
labeled benign is labeled normal, the rest stay unlabeled. And analysts' knowledge of entities:
`labeled_anomalous` (say, hosts of a past incident) and `labeled_normal` (say, the
vulnerability scanner) list entity values, whose rows in the training windows are labeled;
these lists win over event labels. `fit_matrix(X, y)` takes labels
directly: +1 normal, -1 anomalous, 0 unlabeled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from ..graphs import GraphWindow
from ..labeling import BENIGN
from .tabular import TabularDetector, TabularParams
from .training import fit_network

if TYPE_CHECKING:
    import torch


class DeepSadDetector(TabularDetector):
    learns_from_labels = True
    class Params(TabularParams):
        eta: float = Field(1.0, gt=0, description="weight of the labeled rows' terms")
        pretrain_epochs: int = Field(20, ge=0, description="autoencoder epochs that set the centre")
        labeled_anomalous: list[str] = Field(default_factory=list, description="entity values known to be bad")
        labeled_normal: list[str] = Field(default_factory=list, description="entity values known to be fine")

    EPS = 1e-6

    def build_model(self, n_features: int) -> "torch.nn.Module":
        return _Network(n_features, self.params.hidden, self.params.latent)

    def loss(self, model: "_Network", batch: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
        distance = ((model(batch) - model.center) ** 2).sum(dim=1)
        labeled = labels != 0
        terms = distance.clone()
        terms[labeled] = self.params.eta * (distance[labeled] + self.EPS) ** labels[labeled]
        return terms.mean()

    def score_rows(self, model: "_Network", rows: "torch.Tensor") -> "torch.Tensor":
        return ((model(rows) - model.center) ** 2).sum(dim=1)

    def feature_scores(self, model: "_Network", rows: "torch.Tensor") -> "torch.Tensor":
        # Without SHAP: each feature's share by gradient x input of the score.
        import torch

        with torch.enable_grad():
            rows = rows.clone().requires_grad_(True)
            self.score_rows(model, rows).sum().backward()
        return (rows.grad * rows).detach()

    def before_training(self, model: "_Network", rows: "torch.Tensor", rng: np.random.Generator) -> None:
        """Pretrain the network as an autoencoder's encoder; the mean code is the centre."""
        import torch

        self._pretrain(model, rows, rng)
        model.eval()
        with torch.no_grad():
            center = model(rows).mean(dim=0)
        center[(center.abs() < 0.1) & (center < 0)] = -0.1  # keep the centre off the trivial origin
        center[(center.abs() < 0.1) & (center >= 0)] = 0.1
        model.center.copy_(center)

    def _pretrain(self, model: "_Network", rows: "torch.Tensor", rng: np.random.Generator) -> None:
        import torch

        p = self.params
        decoder = _decoder(p.latent, p.hidden, rows.shape[1])

        def step_losses(epoch: int):
            order = torch.from_numpy(rng.permutation(len(rows)))
            for start in range(0, len(rows), p.batch_size):
                batch = rows[order[start:start + p.batch_size]]
                yield ((decoder(model(batch)) - batch) ** 2).sum(dim=1).mean()

        fit_network(model, step_losses, epochs=p.pretrain_epochs, learning_rate=p.learning_rate,
                    weight_decay=p.weight_decay, parameters=[*model.parameters(), *decoder.parameters()],
                    desc="deep_sad: pretraining")

    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "DeepSadDetector":
        labels = [self.row_labels(w) for w in windows if w.num_nodes]
        names = next((list(w.feature_names) for w in windows if w.num_nodes), None)
        y = np.concatenate(labels) if labels else np.zeros(0)
        return self.fit_matrix(self._stack(windows), y, feature_names=names, progress=progress)

    def row_labels(self, window: GraphWindow) -> np.ndarray:
        """+1 known normal, -1 known anomalous, 0 unlabeled, per row of the window: the rows'
        event labels (`node_label`), overridden by the entity lists."""
        values = window.node_value.astype(str)
        labels = np.zeros(len(values))
        if window.node_label is not None:
            known = np.array([v is not None for v in window.node_label], dtype=bool)
            labels[known] = np.where(window.node_label[known] == BENIGN, 1.0, -1.0)
        labels[np.isin(values, list(self.params.labeled_normal))] = 1.0
        labels[np.isin(values, list(self.params.labeled_anomalous))] = -1.0
        return labels

    def fit_matrix(self, X: np.ndarray, y: np.ndarray | None = None, feature_names: list[str] | None = None,
                   progress: bool = False) -> "DeepSadDetector":
        super().fit_matrix(X, y, feature_names, progress)
        labels = np.zeros(len(X)) if y is None else np.asarray(y)
        self.metrics_.update(labeled_normal=int((labels > 0).sum()), labeled_anomalous=int((labels < 0).sum()))
        return self


def _Network(n_features: int, hidden: list[int], latent: int) -> "torch.nn.Module":
    import torch

    class Network(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[torch.nn.Module] = []
            for a, b in zip([n_features, *hidden], hidden):
                layers += [torch.nn.Linear(a, b, bias=False), torch.nn.LeakyReLU(0.1)]
            layers.append(torch.nn.Linear(hidden[-1], latent, bias=False))
            self.net = torch.nn.Sequential(*layers)
            self.register_buffer("center", torch.zeros(latent))

        def forward(self, rows: torch.Tensor) -> torch.Tensor:
            return self.net(rows)

    return Network()


def _decoder(latent: int, hidden: list[int], n_features: int) -> "torch.nn.Module":
    import torch

    layers: list[torch.nn.Module] = []
    for a, b in zip([latent, *reversed(hidden)], reversed(hidden)):
        layers += [torch.nn.Linear(a, b, bias=False), torch.nn.LeakyReLU(0.1)]
    layers.append(torch.nn.Linear(hidden[0], n_features, bias=False))
    return torch.nn.Sequential(*layers)
