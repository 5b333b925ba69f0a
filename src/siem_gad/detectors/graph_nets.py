"""Torch networks of the graph detectors (imported only when they train or score).

- `HeteroFlowNet` (`hetero_gnn`): HeteroConv of SAGEConv layers over host and flow nodes.
- `CatGnnNet` (`cat_gnn`, arXiv 2402.14708): temporal graph attention with a causal inspector
  and a causal intervener; as ablations, the same without the intervener and a plain GAT.
- `DominantNet` (`graph_ae`): DOMINANT's GCN encoder with attribute and structure decoders.

Activations are `nn.Module`s (not `F.relu` calls), which gradient explainers need.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, HeteroConv, SAGEConv, TransformerConv

from .sparse_gcn import propagate
from .training import fit_network

HOST_SENDS = ("host", "sends", "flow")
FLOW_REACHES = ("flow", "reaches", "host")
FLOW_FROM = ("flow", "sent_by", "host")
HOST_RECEIVES = ("host", "receives", "flow")


# ---------------------------------------------------------------------------- training
def train_classifier(model: nn.Module, batches: list[dict[str, Any]], *, weight: torch.Tensor, epochs: int,
                     learning_rate: float, weight_decay: float, patience: int, progress: bool, desc: str) -> list[float]:
    """Class-weighted cross-entropy on each batch's `train` nodes, early stopping on `val` nodes.

    The model's `training_loss(batch, mask, weight)` gives the loss (the causal intervener adds
    its own term); the weights of the best validation epoch are kept.
    """
    has_val = any(bool(b["val"].any()) for b in batches)

    def step_losses(epoch: int):
        return (model.training_loss(b, b["train"], weight) for b in batches if b["train"].any())

    def validation() -> float:
        mask_name = "val" if has_val else "train"
        total = sum(float(nn.functional.cross_entropy(model(b)[b[mask_name]], b["y"][b[mask_name]], weight=weight,
                                                      reduction="sum")) for b in batches if b[mask_name].any())
        return total / max(sum(int(b[mask_name].sum()) for b in batches), 1)

    return fit_network(model, step_losses, epochs=epochs, learning_rate=learning_rate, weight_decay=weight_decay,
                       validation=validation, patience=patience, min_delta=1e-5, progress=progress,
                       desc=desc).validation


class Classifier(nn.Module):
    def training_loss(self, batch: dict[str, Any], mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self(batch)[mask], batch["y"][mask], weight=weight)


# ---------------------------------------------------------------------------- hetero_gnn
class HeteroFlowNet(Classifier):
    """Hosts and flows embedded separately, then `layers` HeteroConv(SAGEConv) rounds over
    host -> flow, flow -> host and the reverse relations; the flow's own embedding is kept
    beside its context (a skip connection) before the classification head."""

    def __init__(self, host_dim: int, flow_dim: int, hidden: int, classes: int, layers: int, dropout: float):
        super().__init__()
        self.host_in = nn.Sequential(nn.Linear(max(host_dim, 1), hidden), nn.ReLU())
        self.flow_in = nn.Sequential(nn.Linear(flow_dim, hidden), nn.ReLU())
        self.convs = nn.ModuleList(HeteroConv({relation: SAGEConv(hidden, hidden) for relation in
                                               (HOST_SENDS, FLOW_REACHES, FLOW_FROM, HOST_RECEIVES)}, aggr="sum")
                                   for _ in range(layers))
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.head(self.flow_embedding(batch["x_host"], batch["x_flow"], batch["edges"]))

    def flow_embedding(self, x_host: torch.Tensor, x_flow: torch.Tensor, edges: dict) -> torch.Tensor:
        own = self.flow_in(x_flow)
        h = {"host": self.host_in(x_host), "flow": own}
        for conv in self.convs:
            out = conv(h, edges)
            h = {kind: self.dropout(self.act(out.get(kind, h[kind]))) for kind in h}
        return torch.cat([own, h["flow"]], dim=-1)


def hetero_edges(sends: np.ndarray, reaches: np.ndarray) -> dict:
    """The four relations from host->flow (`sends`) and flow->host (`reaches`) index pairs."""
    sends_t, reaches_t = torch.from_numpy(sends), torch.from_numpy(reaches)
    return {HOST_SENDS: sends_t, FLOW_REACHES: reaches_t, FLOW_FROM: sends_t.flip(0), HOST_RECEIVES: reaches_t.flip(0)}


# ---------------------------------------------------------------------------- cat_gnn
class TimeEncoding(nn.Module):
    """cos(w t + b) with learned frequencies (as in TGAT), t in window fractions."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(1, dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.logspace(0, 2, dim).unsqueeze(1))
            self.linear.bias.zero_()

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(self.linear(t.unsqueeze(-1)))


class CatGnnNet(Classifier):
    """Temporal graph attention for node classification, with CaT-GNN's causal parts.

    Each layer is a TransformerConv whose keys and values of neighbour j add an embedding of
    the edge: its time encoding, direction (sent or received) and features, so attention sees
    when and how two hosts talked. `attention='gat'` replaces it with a plain GATConv without
    time (the paper's baseline).

    Causal inspector: after the first layer, a node's importance is the attention it receives
    from its neighbours (summed over edges, averaged over heads); the top `causal_ratio` of each
    window's nodes are causal, the rest environment. Causal intervener (training only): each
    environment node's representation is mixed with that of a random causal node of the same
    window, h_env <- (1 - lam) h_env + lam h_causal, lam ~ U(0, mix); the loss averages the
    original and the intervened graph, so the prediction must not lean on environment nodes.
    """

    def __init__(self, node_dim: int, edge_dim: int, hidden: int, classes: int, layers: int, dropout: float, *,
                 attention: str, heads: int, time_dim: int, intervene: bool, causal_ratio: float, mix: float):
        super().__init__()
        self.attention = attention
        self.intervene = intervene
        self.causal_ratio = causal_ratio
        self.mix = mix
        self.node_in = nn.Sequential(nn.Linear(node_dim, hidden), nn.ReLU())
        self.time = TimeEncoding(time_dim)
        in_edge = time_dim + 1 + edge_dim
        if attention == "temporal":
            self.convs = nn.ModuleList(TransformerConv(hidden, hidden // heads, heads=heads, edge_dim=in_edge, beta=True)
                                       for _ in range(layers))
        else:
            self.convs = nn.ModuleList(GATConv(hidden, hidden // heads, heads=heads, add_self_loops=False)
                                       for _ in range(layers))
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def _edge_input(self, batch: dict[str, Any]) -> torch.Tensor:
        return torch.cat([self.time(batch["edge_time"]), batch["direction"].unsqueeze(-1), batch["edge_attr"]], dim=-1)

    def _layer(self, conv: nn.Module, h: torch.Tensor, batch: dict[str, Any], edge_input: torch.Tensor | None):
        if self.attention == "temporal":
            return conv(h, batch["edge_index"], edge_input, return_attention_weights=True)
        return conv(h, batch["edge_index"], return_attention_weights=True)

    def encode(self, batch: dict[str, Any], intervene: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Node representations (own + context) and each layer's attention per edge (head mean)."""
        edge_input = self._edge_input(batch) if self.attention == "temporal" else None
        own = self.node_in(batch["x"])
        h, attentions = own, []
        for number, conv in enumerate(self.convs):
            out, (index, alpha) = self._layer(conv, h, batch, edge_input)
            alpha = alpha.mean(dim=-1)
            attentions.append(alpha)
            h = self.dropout(self.act(out))
            if intervene and number == 0:
                h = self._intervene(h, batch, attentions[0])
        return torch.cat([own, h], dim=-1), attentions

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.head(self.encode(batch)[0])

    def importance(self, batch: dict[str, Any], alpha: torch.Tensor) -> torch.Tensor:
        """Causal inspector: the attention each node receives from its neighbours."""
        source = batch["edge_index"][0]
        return torch.zeros(batch["x"].shape[0]).index_add_(0, source, alpha.detach())

    def _intervene(self, h: torch.Tensor, batch: dict[str, Any], alpha: torch.Tensor) -> torch.Tensor:
        graph = batch["graph"]
        importance = self.importance(batch, alpha)
        # rank nodes by importance inside their window: sort by importance, then (stably) by window
        order = torch.argsort(importance, descending=True, stable=True)
        order = order[torch.argsort(graph[order], stable=True)]
        sizes = torch.bincount(graph)
        first = torch.cumsum(sizes, 0) - sizes
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order)) - first[graph[order]]
        causal_count = torch.clamp((sizes.float() * self.causal_ratio).ceil().long(), min=1)
        environment = rank >= causal_count[graph]
        if not environment.any():
            return h
        env = torch.nonzero(environment).flatten()
        env_graph = graph[env]
        pick = (torch.rand(len(env)) * causal_count[env_graph]).long()  # one of the window's causal nodes
        causal = order[first[env_graph] + pick]
        lam = torch.rand(len(env), 1) * self.mix
        mixed = h.clone()
        mixed[env] = (1 - lam) * h[env] + lam * h[causal]
        return mixed

    def training_loss(self, batch: dict[str, Any], mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self(batch)[mask], batch["y"][mask], weight=weight)
        if self.intervene:
            intervened = self.head(self.encode(batch, intervene=True)[0])
            loss = (loss + nn.functional.cross_entropy(intervened[mask], batch["y"][mask], weight=weight)) / 2
        return loss


# ---------------------------------------------------------------------------- graph_ae
class DominantNet(nn.Module):
    """DOMINANT (Ding et al., SDM 2019): a GCN encoder, a GCN attribute decoder that rebuilds X,
    and a structure decoder sigmoid(Z Z^T) that rebuilds the adjacency."""

    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        self.encoder = nn.ModuleList(GCNConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.attr_decoder = nn.ModuleList([GCNConv(hidden, hidden), GCNConv(hidden, in_dim)])
        self.struct_decoder = GCNConv(hidden, hidden)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`adjacency`: the batch's `sparse_gcn.normalized_adjacency`."""
        h = x
        for conv in self.encoder:
            h = self.dropout(self.act(propagate(conv, h, adjacency)))
        x_hat = propagate(self.attr_decoder[1], self.act(propagate(self.attr_decoder[0], h, adjacency)), adjacency)
        z = self.act(propagate(self.struct_decoder, h, adjacency))
        return x_hat, z


def structure_errors(z: torch.Tensor, edge_index: torch.Tensor, graph: torch.Tensor, dense_limit: int,
                     generator: torch.Generator | None = None, negatives: int = 5) -> torch.Tensor:
    """Per node: the squared error of sigmoid(z_i . z_j) against the adjacency row of i.

    Exact (dense rows within each window) for windows up to `dense_limit` nodes; beyond, the
    edges plus `negatives` sampled non-neighbours per node from the same window stand in for the
    row, scaled to the row's length.
    """
    n = z.shape[0]
    errors = torch.zeros(n)
    sizes = torch.bincount(graph, minlength=int(graph.max()) + 1 if n else 0)
    first = torch.cumsum(sizes, 0) - sizes
    for g in torch.nonzero(sizes).flatten().tolist():
        lo, size = int(first[g]), int(sizes[g])
        inside = (edge_index[0] >= lo) & (edge_index[0] < lo + size)
        local = edge_index[:, inside] - lo
        zg = z[lo:lo + size]
        if size <= dense_limit:
            adjacency = torch.zeros(size, size)
            adjacency[local[0], local[1]] = 1.0
            adjacency[local[1], local[0]] = 1.0
            errors[lo:lo + size] = ((torch.sigmoid(zg @ zg.T) - adjacency) ** 2).sum(dim=1)
            continue
        pos = torch.sigmoid((zg[local[0]] * zg[local[1]]).sum(-1))
        pos_err = torch.zeros(size).index_add_(0, local[0], (pos - 1) ** 2)
        rows = torch.arange(size).repeat_interleave(negatives)
        cols = torch.randint(0, size, (len(rows),), generator=generator)
        neg = torch.sigmoid((zg[rows] * zg[cols]).sum(-1))
        neg_err = torch.zeros(size).index_add_(0, rows, neg ** 2) * (size / negatives)
        errors[lo:lo + size] = pos_err + neg_err
    return errors
