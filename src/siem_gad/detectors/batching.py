"""Many windows per forward pass: the graph detectors train and score windows in groups.

A group's windows are stacked as one block-diagonal graph (node rows concatenated, edge
indices offset). Message passing never crosses the blocks, so a window scores the same in a
group as alone, to float rounding (tests/test_batched_scoring.py checks each detector); one
forward pass per group instead of per window is what makes scoring fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..graphs import GraphWindow


def window_groups(windows: list["GraphWindow"], nodes: int) -> list[list["GraphWindow"]]:
    """Consecutive windows in groups of about `nodes` nodes (one window may exceed it alone;
    `nodes=1` gives one window per group, the per-window path)."""
    groups: list[list["GraphWindow"]] = [[]]
    size = 0
    for window in windows:
        if groups[-1] and size + window.num_nodes > nodes:
            groups.append([])
            size = 0
        groups[-1].append(window)
        size += window.num_nodes
    return groups if groups[0] else []


def split_rows(rows: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """The rows of a group's output, back per window (`sizes`: each window's row count)."""
    return np.split(rows, np.cumsum(sizes)[:-1]) if sizes else []
