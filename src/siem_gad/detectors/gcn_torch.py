"""Torch parts of the `gcn_hmm` detector (imported only when it trains or scores).

The encoder is a two-layer GCN trained self-supervised by edge reconstruction (as in a graph
autoencoder): node embeddings whose inner product predicts which entity pairs interact in a
window, contrasted with negative pairs made by replacing each edge's target with another
target-side entity of the same window. Negatives come from a seeded `torch.Generator`, so the
same data and seed always give the same model (PyG's samplers draw from Python's `random`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GCNConv
from torch_geometric.utils import to_undirected

from ..graphs import GraphWindow
from .batching import window_groups
from .pair_logits import pair_logits
from .sparse_gcn import normalized_adjacency, propagate
from .training import fit_network


class GcnEncoder(nn.Module):
    """Two GCN layers; `forward` takes the batch's `sparse_gcn.normalized_adjacency`.

    The first layer is computed as (A x) W + b, not A (x W) + b: the same product, but A x does
    not depend on the weights, so training computes it once (`from_propagated`) instead of
    two sparse products per epoch (forward and backward)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.conv1 = GCNConv(in_dim, hidden)
        self.act = nn.ReLU()
        self.conv2 = GCNConv(hidden, out_dim)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return self.from_propagated(torch.sparse.mm(adjacency, x), adjacency)

    def from_propagated(self, propagated: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """The embeddings, given `propagated` = adjacency @ x."""
        hidden = self.act(self.conv1.lin(propagated) + self.conv1.bias)
        return propagate(self.conv2, hidden, adjacency)


def window_data(window: GraphWindow, mean: np.ndarray, std: np.ndarray) -> Data:
    x = torch.from_numpy(((window.x - mean) / std).astype(np.float32))
    directed = torch.from_numpy(np.ascontiguousarray(window.edge_index))
    return Data(x=x, edge_index=to_undirected(directed, num_nodes=window.num_nodes), pos_edge_index=directed,
                kind=torch.from_numpy(window.node_kind.astype(np.int64)), num_nodes=window.num_nodes)


def batch_of(windows: list[GraphWindow], mean: np.ndarray, std: np.ndarray) -> tuple[Batch, torch.Tensor]:
    """The windows as one block-diagonal graph, and its normalized adjacency."""
    batch = Batch.from_data_list([window_data(w, mean, std) for w in windows])
    return batch, normalized_adjacency(batch.edge_index, batch.num_nodes)


class TargetCorruptor:
    """Negative edges: each positive (u, v) with v replaced by a random target-side node of v's window."""

    def __init__(self, batch: Batch, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        targets = torch.nonzero(batch.kind == 1).flatten()  # sorted, so grouped by window
        graph_of_target = batch.batch[targets]
        counts = torch.bincount(graph_of_target, minlength=batch.num_graphs)
        self.targets = targets
        self.first = torch.cumsum(counts, 0) - counts
        self.counts = counts

    def __call__(self, positive: torch.Tensor, graph_of_edge: torch.Tensor) -> torch.Tensor:
        pick = torch.rand(positive.shape[1], generator=self.generator)
        offset = (pick * self.counts[graph_of_edge]).long()
        return torch.stack([positive[0], self.targets[self.first[graph_of_edge] + offset]])


def train_encoder(windows: list[GraphWindow], mean: np.ndarray, std: np.ndarray, *, hidden: int, embedding: int,
                  epochs: int, learning_rate: float, seed: int, progress: bool) -> tuple[GcnEncoder, list[float]]:
    torch.manual_seed(seed)
    batch, adjacency = batch_of(windows, mean, std)
    encoder = GcnEncoder(batch.x.shape[1], hidden, embedding)
    loss_fn = nn.BCEWithLogitsLoss()
    positive = batch.pos_edge_index  # "index" in the name: PyG offsets it per graph
    corrupt = TargetCorruptor(batch, seed)
    graph_of_edge = batch.batch[positive[1]]

    propagated = torch.sparse.mm(adjacency, batch.x)  # fixed while the weights train

    def step_losses(epoch: int):  # one step per epoch: the whole batch of windows at once
        z = encoder.from_propagated(propagated, adjacency)
        negative = corrupt(positive, graph_of_edge)
        logits = torch.cat([pair_logits(z, positive), pair_logits(z, negative)])
        labels = torch.cat([torch.ones(positive.shape[1]), torch.zeros(negative.shape[1])])
        yield loss_fn(logits, labels)

    losses = fit_network(encoder, step_losses, epochs=epochs, learning_rate=learning_rate, progress=progress,
                         desc="gcn_hmm: training encoder").losses
    return encoder, losses


@torch.no_grad()
def embed(encoder: GcnEncoder, windows: list[GraphWindow], mean: np.ndarray, std: np.ndarray,
          batch_nodes: int = 200_000) -> list[np.ndarray]:
    """Node embeddings of each window. Windows go through the encoder together, as one
    block-diagonal graph of about `batch_nodes` nodes: a GCN never passes messages between
    the blocks, so each window's embedding is what it would be alone (to float rounding),
    at a fraction of the per-call cost of one forward pass per window."""
    out: list[np.ndarray] = []
    for group in window_groups(windows, batch_nodes):
        batch, adjacency = batch_of(group, mean, std)
        z = encoder(batch.x, adjacency).numpy().astype(np.float64)
        out.extend(np.split(z, batch.ptr[1:-1].numpy()))
    return out
