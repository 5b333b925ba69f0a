"""The compiled walk of a flattened isolation forest (numba, cached on disk after the first run).

Imported only when a forest scores rows, never on the CLI's start-up path.
"""

from __future__ import annotations

import numba as nb
import numpy as np

BLOCK = 512  # rows that every tree walks before the next rows: they stay in cache meanwhile


@nb.njit(cache=True, nogil=True, inline="always")
def step(rows, i, node, feature, threshold, child, missing_right):
    """One level down: right when the row's feature is above the threshold (compared in double
    precision), or when it is NaN and `missing_right` says so (scikit-learn's `Tree.apply`).
    A leaf is its own child on both sides."""
    value = np.float64(rows[i, feature[node]])
    right = (value > threshold[node]) | ((value != value) & missing_right[node])
    return child[2 * node + right]


@nb.njit(cache=True, nogil=True)
def path_depths(rows, roots, levels, feature, threshold, child, missing_right, leaf_value):
    """Per row, the sum over the trees (in order, as scikit-learn sums them, so the result is
    the same to the last bit) of the value of the leaf it lands in.

    The trees' nodes are concatenated: tree t starts at node `roots[t]` and no path in it is
    longer than `levels[t]`; node k's children are `child[2k]` (left) and `child[2k + 1]`.
    Every row takes exactly `levels[t]` steps, without a branch on the data, and eight rows
    walk side by side in eight named variables (kept in registers; a small array would not
    be), so the processor overlaps their memory reads. On this machine (150k rows, 12
    features, 200 trees, one thread): 0.78 s against 1.0 s for four rows side by side with
    64-bit indices, and 0.99 s for scikit-learn's `score_samples`.
    """
    n = rows.shape[0]
    depths = np.zeros(n)
    for first in range(0, n, BLOCK):
        last = min(first + BLOCK, n)
        for t in range(roots.shape[0]):
            root = roots[t]
            i = first
            while i + 8 <= last:
                a = b = c = d = e = f = g = h = root
                for _ in range(levels[t]):
                    a = step(rows, i, a, feature, threshold, child, missing_right)
                    b = step(rows, i + 1, b, feature, threshold, child, missing_right)
                    c = step(rows, i + 2, c, feature, threshold, child, missing_right)
                    d = step(rows, i + 3, d, feature, threshold, child, missing_right)
                    e = step(rows, i + 4, e, feature, threshold, child, missing_right)
                    f = step(rows, i + 5, f, feature, threshold, child, missing_right)
                    g = step(rows, i + 6, g, feature, threshold, child, missing_right)
                    h = step(rows, i + 7, h, feature, threshold, child, missing_right)
                for k, leaf in enumerate((a, b, c, d, e, f, g, h)):
                    depths[i + k] += leaf_value[leaf]
                i += 8
            for j in range(i, last):
                a = root
                for _ in range(levels[t]):
                    a = step(rows, j, a, feature, threshold, child, missing_right)
                depths[j] += leaf_value[a]
    return depths


@nb.njit(cache=True, nogil=True)
def expected_path_depths(rows, roots, levels, feature, threshold, child, missing_right, leaf_value, low, high):
    """`path_depths` with extrapolation (flat_forest's module docstring): per row and tree, the
    expected depth when a value outside a node's sample range [low, high] on its split feature
    is separated alone at that node, one level down, with probability (distance outside) /
    (range widened to the value); `alive` is the probability that it has not been yet. Leaves
    have (-inf, inf): never. Same block order as `path_depths`, one row at a time."""
    n = rows.shape[0]
    depths = np.zeros(n)
    for first in range(0, n, BLOCK):
        last = min(first + BLOCK, n)
        for t in range(roots.shape[0]):
            root = roots[t]
            for i in range(first, last):
                node = root
                alive = 1.0
                expected = 0.0
                for level in range(levels[t]):
                    value = np.float64(rows[i, feature[node]])
                    isolated = 0.0
                    if value > high[node]:
                        isolated = (value - high[node]) / (value - low[node])
                    elif value < low[node]:
                        isolated = (low[node] - value) / (high[node] - value)
                    expected += alive * isolated * (level + 1)
                    alive *= 1.0 - isolated
                    node = step(rows, i, node, feature, threshold, child, missing_right)
                depths[i] += expected + alive * leaf_value[node]
    return depths
