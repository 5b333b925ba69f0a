"""Inner products z_u . z_v of many node pairs, and their gradient, in one compiled pass.

The edge-reconstruction loss of `gcn_hmm` scores every positive edge of its training windows
and as many negative pairs (640k pairs on the 1 M-event config) at every epoch. In torch that
is two gathers of a (pairs x dims) matrix, a product, a sum, and in the backward pass two more
products and two scatter-adds: six passes over 40 MB, two thirds of a training step. The
embedding matrix itself is small (92k nodes x 16 floats, 6 MB, in cache), so one loop over
the pairs that reads both rows, and in the backward pass adds each row into the other's
gradient, does the same arithmetic at a fraction of the memory traffic.

The loops run in pair order on one thread, so the sums (and the trained model) are the same
on every run; they differ from torch's in the order of float additions only.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import torch


@nb.njit(cache=True, nogil=True)
def _dot_pairs(z, left, right, out):
    dims = z.shape[1]
    for p in range(len(left)):
        u, v = left[p], right[p]
        total = np.float32(0.0)
        for d in range(dims):
            total += z[u, d] * z[v, d]
        out[p] = total


@nb.njit(cache=True, nogil=True)
def _scatter_pairs(z, left, right, grad, out):
    dims = z.shape[1]
    for p in range(len(left)):
        u, v, g = left[p], right[p], grad[p]
        for d in range(dims):
            out[u, d] += g * z[v, d]
            out[v, d] += g * z[u, d]


class PairLogits(torch.autograd.Function):
    """logits[p] = z[left[p]] . z[right[p]] for float32 `z` (nodes x dims) on the CPU."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        dense = z.detach().contiguous()
        left_np, right_np = left.numpy(), right.numpy()
        out = np.empty(len(left_np), np.float32)
        _dot_pairs(dense.numpy(), left_np, right_np, out)
        ctx.save_for_backward(dense, left, right)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        dense, left, right = ctx.saved_tensors
        out = np.zeros(dense.shape, np.float32)
        _scatter_pairs(dense.numpy(), left.numpy(), right.numpy(), grad.contiguous().numpy(), out)
        return torch.from_numpy(out), None, None


def pair_logits(z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """z_u . z_v for each pair (u, v) of `pairs` (2 x n, int64)."""
    return PairLogits.apply(z, pairs[0].contiguous(), pairs[1].contiguous())
