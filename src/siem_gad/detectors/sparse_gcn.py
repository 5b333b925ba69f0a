"""GCN layers as one sparse matrix product (imported only when a graph detector trains or scores).

`GCNConv` normalizes the adjacency (self-loops, D^-1/2 (A + I) D^-1/2) on every call and then
gathers and scatter-adds a message per edge. On CPU that gather/scatter is most of a graph
detector's time: 0.53 s per forward and backward pass of `gcn_hmm` on 48 windows of the 1 M
event config, against 0.09 s for the same layer as a product with the normalized adjacency in
CSR form, built once per batch of windows (training reuses it for every epoch).

The layers keep `GCNConv`'s parameters and initialisation (`lin`, `bias`), so models train the
same and saved models load; `propagate` computes what `GCNConv.forward` does, to float rounding.
"""

from __future__ import annotations

import warnings

import torch
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """GCN's D^-1/2 (A + I) D^-1/2 as a sparse CSR matrix: row i holds the weights of the
    nodes whose messages node i sums. `edge_index` must be undirected (both directions of
    every edge, as `to_undirected` gives), so the matrix is symmetric."""
    index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=True)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products and their gradients are stable
        warnings.simplefilter("ignore", UserWarning)
        adjacency = torch.sparse_coo_tensor(torch.stack([index[1], index[0]]), weight, (num_nodes, num_nodes))
        return adjacency.coalesce().to_sparse_csr()


class SymmetricProduct(torch.autograd.Function):
    """adjacency @ x for a symmetric sparse adjacency. The gradient is adjacency^T @ grad;
    torch's own backward builds that transpose anew (a sort of every entry) on every call,
    which was a third of a training step; for a symmetric matrix it is the matrix itself."""

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, torch.sparse.mm(ctx.adjacency, grad)


def propagate(conv: GCNConv, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """`conv` applied with a precomputed `normalized_adjacency`."""
    out = SymmetricProduct.apply(adjacency, conv.lin(x))
    return out + conv.bias if conv.bias is not None else out
