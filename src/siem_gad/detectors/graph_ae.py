"""The `graph_ae` detector: an unsupervised graph autoencoder in the style of DOMINANT.

A GCN encoder embeds each window's entities; an attribute decoder rebuilds their features and a
structure decoder rebuilds who talks to whom (sigmoid of embedding inner products). Trained on
windows assumed mostly benign, it scores an entity by how badly it is rebuilt:

    score = alpha * ||x - x_hat|| + (1 - alpha) * ||a - a_hat||

so an entity is anomalous when its activity is unlike what its neighbourhood predicts (the
attribute part) or when its connections are unlike the graph's usual structure (the structure
part). Edges are scored by reconstruction too (`score_edges`): an edge the structure decoder
finds unlikely between endpoints that are themselves badly rebuilt scores high.

Works on any single-kind graph (`bipartite`, `temporal`). Windows up to `dense_limit` nodes
use the exact adjacency error; larger ones a sampled estimate (`graph_nets.structure_errors`).
The explanation names the features rebuilt worst and the edges the model least expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from ..graphs import GraphWindow
from . import Detector, DetectorParams, Explanation, readable
from . import standardizer
from .batching import split_rows, window_groups


class GraphAeDetector(Detector):
    level = "node"
    worker_imports = ("siem_gad.detectors.graph_nets", "siem_gad.detectors.sparse_gcn", "torch_geometric.utils")

    class Params(DetectorParams):
        hidden: int = Field(64, ge=4, description="width of the GCN layers")
        layers: int = Field(3, ge=1, le=5, description="encoder layers")
        alpha: float = Field(0.8, ge=0, le=1, description="weight of attribute versus structure error")
        epochs: int = Field(100, ge=1)
        learning_rate: float = Field(5e-3, gt=0)
        weight_decay: float = Field(0.0, ge=0)
        dropout: float = Field(0.0, ge=0, lt=1)
        dense_limit: int = Field(3000, ge=10, description="windows with more nodes use a sampled structure error")
        batch_nodes: int = Field(200_000, ge=1, description="windows are trained and scored in batches of about this many nodes")

    # ------------------------------------------------------------------ tensors
    def _tensors(self, windows: list[GraphWindow]) -> dict[str, Any]:
        import torch

        xs, edges, graphs, offset = [], [], [], 0
        for number, w in enumerate(windows):
            xs.append((w.x - self.mean_) / self.std_)
            edges.append(w.edge_index + offset)
            graphs.append(np.full(w.num_nodes, number))
            offset += w.num_nodes
        edge_index = torch.from_numpy(np.concatenate(edges, axis=1).astype(np.int64))
        from torch_geometric.utils import to_undirected

        from .sparse_gcn import normalized_adjacency

        undirected = to_undirected(edge_index, num_nodes=offset)
        return {"x": torch.from_numpy(np.concatenate(xs).astype(np.float32)), "edge_index": edge_index,
                "undirected": undirected, "adjacency": normalized_adjacency(undirected, offset),
                "graph": torch.from_numpy(np.concatenate(graphs).astype(np.int64))}

    def _errors(self, tensors: dict[str, Any], generator=None) -> tuple[Any, Any, Any, Any]:
        """(node scores, attribute error per node, structure error per node, embeddings z)."""
        import torch

        from .graph_nets import structure_errors

        x_hat, z = self.model_(tensors["x"], tensors["adjacency"])
        attribute = torch.sqrt(((tensors["x"] - x_hat) ** 2).sum(dim=1) + 1e-12)
        structure = torch.sqrt(structure_errors(z, tensors["undirected"], tensors["graph"], self.params.dense_limit,
                                                generator) + 1e-12)
        a = self.params.alpha
        return a * attribute + (1 - a) * structure, attribute, structure, z

    # ------------------------------------------------------------------ fit / score
    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "GraphAeDetector":
        import torch

        from .graph_nets import DominantNet
        from .training import fit_network

        p = self.params
        windows = [w for w in windows if w.num_nodes]
        if not windows:
            raise ValueError("graph_ae needs training windows with entities; the training windows are empty")
        self.mean_, self.std_ = standardizer(np.concatenate([w.x for w in windows]))
        torch.manual_seed(p.seed)
        generator = torch.Generator().manual_seed(p.seed)
        self.model_ = DominantNet(len(self.mean_), p.hidden, p.layers, p.dropout)
        batches = [self._tensors(group) for group in window_groups(windows, p.batch_nodes)]
        self.losses_ = fit_network(self.model_, lambda epoch: (self._errors(b, generator)[0].mean() for b in batches),
                                   epochs=p.epochs, learning_rate=p.learning_rate, weight_decay=p.weight_decay,
                                   progress=progress, desc="graph_ae: training").losses
        train_scores = np.concatenate(self.score(windows))
        self.threshold_ = self.threshold_from(train_scores)
        self.metrics_ = {"training_nodes": int(len(train_scores)), "training_windows": len(windows),
                         "final_loss": self.losses_[-1], "score_p99": float(np.percentile(train_scores, 99))}
        return self

    def _check(self) -> None:
        """A model is enough to score: fit() scores its training windows before it has a threshold."""
        if not hasattr(self, "model_"):
            self.check_fitted()

    def score(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        return [parts[0] for parts in self._window_parts(windows)]

    def _window_parts(self, windows: list[GraphWindow]) -> list[tuple[np.ndarray, ...]]:
        """Per window: (node scores, attribute errors, structure errors, edge probabilities),
        for many windows per forward pass (`batch_nodes`). Sampled structure errors draw from
        one generator, window after window in either path, so they repeat exactly."""
        import torch

        self._check()
        generator = torch.Generator().manual_seed(self.params.seed)
        present = [w for w in windows if w.num_nodes]
        parts: list[tuple[np.ndarray, ...]] = []
        for group in window_groups(present, self.params.batch_nodes):
            with torch.no_grad():
                tensors = self._tensors(group)
                scores, attribute, structure, z = self._errors(tensors, generator)
                src, dst = tensors["edge_index"]
                probability = torch.sigmoid((z[src] * z[dst]).sum(-1))
            nodes = [split_rows(t.numpy().astype(np.float64), [w.num_nodes for w in group])
                     for t in (scores, attribute, structure)]
            edges = split_rows(probability.numpy().astype(np.float64), [w.num_edges for w in group])
            parts.extend(zip(*nodes, edges))
        filled = iter(parts)
        empty = (np.zeros(0),) * 4
        return [next(filled) if w.num_nodes else empty for w in windows]

    def score_edges(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        """Per edge: alpha * mean attribute error of its endpoints + (1 - alpha) * (1 - P(edge))."""
        a = self.params.alpha
        out = []
        for w, (_, attribute, _, probability) in zip(windows, self._window_parts(windows)):
            if not w.num_edges:
                out.append(np.zeros(0))
                continue
            src, dst = w.edge_index
            out.append(a * (attribute[src] + attribute[dst]) / 2 + (1 - a) * (1 - probability))
        return out

    # ------------------------------------------------------------------ explanation
    def explain(self, window: GraphWindow, item: int, top_k: int = 5) -> Explanation:
        import torch

        self._check()
        with torch.no_grad():
            tensors = self._tensors([window])
            x_hat, z = self.model_(tensors["x"], tensors["adjacency"])
        error = (tensors["x"][item] - x_hat[item]).numpy()
        order = np.argsort(-np.abs(error))[:top_k]
        rebuilt = x_hat[item].numpy() * self.std_ + self.mean_
        contributors = [{"name": window.feature_names[i], "value": readable(window, i, window.x[item, i]),
                         "expected": readable(window, i, rebuilt[i]), "weight": round(float(error[i]), 3)}
                        for i in order]
        edges = window.node_edges(item)
        probability = torch.sigmoid((z[window.edge_index[0, edges]] * z[window.edge_index[1, edges]]).sum(-1)).numpy() \
            if len(edges) else np.zeros(0)
        unexpected = edges[np.argsort(probability, kind="stable")][:top_k]
        neighbors = []
        for e, prob in zip(unexpected, np.sort(probability)[:top_k]):
            other = window.edge_index[1, e] if window.edge_index[0, e] == item else window.edge_index[0, e]
            neighbors.append({"neighbor": next(iter(window.entity(int(other)).values())),
                              "edge_probability": round(float(prob), 4)})
        evidence, count = window.edge_evidence(unexpected)
        _, all_count = window.node_evidence(item)
        entity = window.entity(item)
        worst = ", ".join(f"{c['name']}={c['value']} (expected {c['expected']})" for c in contributors[:3])
        summary = f"{next(iter(entity.values()))} is rebuilt poorly from its neighbourhood: {worst}"
        if neighbors:
            summary += f"; least expected link: {neighbors[0]['neighbor']} (p={neighbors[0]['edge_probability']})"
        return Explanation(entity, contributors, evidence, all_count or count, summary=summary,
                           extra={"unexpected_neighbors": neighbors})

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, Any]:
        import torch

        return {"mean": torch.from_numpy(self.mean_), "std": torch.from_numpy(self.std_),
                "model": self.model_.state_dict()}

    def set_state(self, state: dict[str, Any]) -> None:
        from .graph_nets import DominantNet

        self.mean_, self.std_ = state["mean"].numpy(), state["std"].numpy()
        self.model_ = DominantNet(len(self.mean_), self.params.hidden, self.params.layers, self.params.dropout)
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
