"""An isolation forest stored as arrays of nodes, never as a pickle, and scored without scikit-learn.

`iforest` fits scikit-learn's `IsolationForest` on a sample (`subsample`: each tree sees only
`max_samples` rows anyway) and keeps its trees flattened into a few arrays: split feature,
threshold, children and the value of each leaf (its depth plus the expected depth of the
training rows left in it). Scoring walks those arrays in one compiled loop
(`forest_kernels.path_depths`) and gives scikit-learn's `score_samples` to the last bit
(`tests/test_flat_forest.py`), faster (`forest_kernels`), without importing scikit-learn and without
refitting on load.

Model files from before this format hold the training sample instead (`sample`): loading
refits the forest from it with the seed, which gives the same trees.

**Extrapolation** (`isolation(rows, extrapolate=True)`). An isolation tree cannot tell a value
just beyond its sample's range from one a million times beyond it: both land in the leaf of the
largest sample values, so the score stops growing at the edge of the training range (a
workstation sending 100,000x its usual bytes scores like one sending 10x). The forest also keeps,
per node, the range of the node's sample on its split feature (`low`, `high`). With
`extrapolate`, a row whose value lies outside that range is scored as the tree would have
treated it had it been in the sample: the split, drawn uniformly over the range widened to the
row's value, separates the row alone with probability (x - high) / (x - low) above the range
(or (low - x) / (high - x) below), one level down; otherwise it goes on as before. The score is
the expected depth over that: equal to the plain one for rows inside every range on their path,
smaller (more isolated) for the others, and still falling as the value moves further out.
Forests from model files without the ranges score plainly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy import lazy_import

np = lazy_import("numpy")

if TYPE_CHECKING:
    import numpy

NODE_ARRAYS = ("roots", "levels", "feature", "threshold", "child", "missing_right", "leaf_value")
# Node and feature indices are 32-bit: half the bytes the walk reads per step, and a forest of
# 200 trees of 256 rows has about 100k nodes, far below 2**31. Model files written with 64-bit
# indices are cast on load.
NODE_DTYPES = {"roots": "int64", "levels": "int64", "feature": "int32", "threshold": "float64",
               "child": "int32", "missing_right": "bool", "leaf_value": "float64", "low": "float64", "high": "float64"}
RANGE_ARRAYS = ("low", "high")  # per node, its sample's range on the split feature (leaves: -inf, inf)


class FlatForest:
    """A fitted isolation forest; `isolation` is the negated `score_samples` of the scikit-learn
    forest it came from: higher is easier to isolate, about 0.3-0.8."""

    def __init__(self, nodes: dict[str, "numpy.ndarray"], denominator: float):
        self.nodes = {name: np.ascontiguousarray(nodes[name], dtype=NODE_DTYPES[name])
                      for name in NODE_ARRAYS + RANGE_ARRAYS if name in nodes}
        self.denominator = float(denominator)

    @property
    def has_ranges(self) -> bool:
        return all(name in self.nodes for name in RANGE_ARRAYS)

    @classmethod
    def fit(cls, sample: "numpy.ndarray", *, n_estimators: int, max_samples: int, seed: int,
            ranges: bool = False) -> "FlatForest":
        """`ranges`: also keep each node's sample range on its split feature (`extrapolate`)."""
        from sklearn.ensemble import IsolationForest

        sample = np.ascontiguousarray(sample, dtype=np.float32)
        forest = IsolationForest(n_estimators=n_estimators, max_samples=min(max_samples, len(sample)),
                                 random_state=seed).fit(sample)
        return cls.of(forest, sample.shape[1], sample if ranges else None)

    @classmethod
    def of(cls, forest: Any, n_features: int, sample: "numpy.ndarray | None" = None) -> "FlatForest":
        """Flatten a fitted scikit-learn `IsolationForest`, by the rules of its `score_samples`
        (reproduced here from the trees' public arrays). With the `sample` it was fitted on,
        also each node's range on its split feature (for `extrapolate`)."""
        names = NODE_ARRAYS + (RANGE_ARRAYS if sample is not None else ())
        parts: dict[str, list] = {name: [] for name in names}
        offset = 0
        # which rows each tree drew: scikit-learn regenerates them on access, so only when needed
        drawn_rows = forest.estimators_samples_ if sample is not None else [None] * len(forest.estimators_)
        for tree, features, drawn in zip(forest.estimators_, forest.estimators_features_, drawn_rows):
            t = tree.tree_
            leaf = t.children_left == -1
            own = np.arange(offset, offset + t.node_count)
            feature = np.where(leaf, 0, t.feature)
            parts["roots"].append([offset])
            parts["levels"].append([t.max_depth])
            # scikit-learn indexes a tree's features only when it was fitted on a subset of them
            local = np.asarray(features)
            parts["feature"].append(local[feature] if len(features) != n_features else feature)
            if sample is not None:
                low, high = split_ranges(tree, sample[drawn][:, local], feature, leaf)
                parts["low"].append(low)
                parts["high"].append(high)
            parts["threshold"].append(t.threshold)
            # a leaf is its own child, so every row can take the same number of steps
            parts["child"].append(np.stack([np.where(leaf, own, t.children_left + offset),
                                            np.where(leaf, own, t.children_right + offset)], axis=1).ravel())
            parts["missing_right"].append(np.asarray(t.missing_go_to_left) == 0)
            # the leaf's depth (the root counts 1) plus the expected depth of the rows left in it, less 1
            parts["leaf_value"].append(t.compute_node_depths() + average_path_length(t.n_node_samples) - 1.0)
            offset += t.node_count
        nodes = {name: np.concatenate(parts[name]) for name in names}
        denominator = len(forest.estimators_) * float(average_path_length(np.array([forest.max_samples_]))[0])
        return cls(nodes, denominator)

    def isolation(self, rows: "numpy.ndarray", extrapolate: bool = False) -> "numpy.ndarray":
        """Higher is easier to isolate; with `extrapolate` (and ranges), values beyond a node's
        sample range shorten the expected path (module docstring)."""
        if not len(rows):
            return np.zeros(0)
        from .forest_kernels import expected_path_depths, path_depths

        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if extrapolate and self.has_ranges:
            depths = expected_path_depths(rows, *(self.nodes[name] for name in NODE_ARRAYS + RANGE_ARRAYS))
        else:
            depths = path_depths(rows, *(self.nodes[name] for name in NODE_ARRAYS))
        # One training row makes depths and denominator 0: scikit-learn takes the ratio as 1 then.
        ratio = depths / self.denominator if self.denominator else np.ones(len(rows))
        return 2 ** -ratio

    def get_state(self) -> dict[str, Any]:
        import torch

        return {"nodes": {name: torch.from_numpy(array) for name, array in self.nodes.items()},
                "denominator": self.denominator}

    @classmethod
    def from_state(cls, state: dict[str, Any], *, n_estimators: int, max_samples: int, seed: int,
                   ranges: bool = False) -> "FlatForest":
        if "sample" in state:  # a model file from before the flat format: refit the same trees
            return cls.fit(state["sample"].numpy(), n_estimators=n_estimators, max_samples=max_samples, seed=seed,
                           ranges=ranges)
        return cls({name: array.numpy() for name, array in state["nodes"].items()}, state["denominator"])


def split_ranges(tree: Any, drawn: "numpy.ndarray", feature: "numpy.ndarray", leaf: "numpy.ndarray"):
    """Per node of a fitted tree, the lowest and highest value of its split feature (an index
    into `drawn`'s columns) among the rows of `drawn`, the tree's own sample, that reach it;
    leaves get (-inf, inf)."""
    rows = np.ascontiguousarray(drawn, dtype=np.float32)
    reach = tree.decision_path(rows).tocoo()  # (row, node) for every node on every row's path
    values = rows[reach.row, feature[reach.col]].astype(np.float64)
    low = np.full(len(leaf), np.inf)
    high = np.full(len(leaf), -np.inf)
    np.minimum.at(low, reach.col, values)
    np.maximum.at(high, reach.col, values)
    low[leaf], high[leaf] = -np.inf, np.inf
    return low, high


def average_path_length(rows: "numpy.ndarray") -> "numpy.ndarray":
    """The expected depth at which an isolation tree separates one of `rows` rows (the average
    path length of an unsuccessful search in a binary search tree): 0 for one row, 1 for two,
    else 2 (ln(n - 1) + Euler's constant) - 2 (n - 1) / n."""
    n = np.asarray(rows, dtype=np.float64)
    out = np.zeros(n.shape)
    out[n == 2] = 1.0
    more = n > 2
    out[more] = 2.0 * (np.log(n[more] - 1.0) + np.euler_gamma) - 2.0 * (n[more] - 1.0) / n[more]
    return out
