"""The `bipartite` graph builder: entity x entity graphs per window, built without Python loops.

Nodes are the distinct values of two event fields (`source.ip` x `destination.ip`, or
`user.name` x `host.name`), typed by the field, so the same IP seen as source and as
destination gives two nodes. An edge joins two entities that share at least one event in the
window and aggregates those events. All windows of a batch are built at once:

1. each entity column becomes integer codes once for the whole batch: free when the source
   delivered it as a pandas Categorical (sources encode entity fields once per read), else one
   factorize (hashing the strings is the expensive part, so never once per window);
2. an edge is the integer key (window, source code, target code); one factorize of the keys
   gives every event its edge;
3. edge and node aggregates are `np.bincount`s over those ids;
4. windows are contiguous slices of the sorted edge and node arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from ..components import Params
from ..events import EVENT_ID, TIMESTAMP
from ..hookspecs import hookimpl
from . import Evidence, GraphBuilder, GraphWindow, WindowGrid

if TYPE_CHECKING:
    import pandas as pd

NODE_FEATURES = ("is_source", "degree", "events", "bytes", "max_edge_bytes", "services", "failures",
                 "failure_ratio", "rare_peers")
EDGE_FEATURES = ("events", "bytes", "ports", "failure_ratio")
FAILURE_VALUES = ("failure", "failed", "fail", "denied", "deny", "blocked")


class BipartiteGraphBuilder(GraphBuilder):
    """User x resource style graph of two entity fields per window."""

    class Params(Params):
        source_field: str = Field("source.ip", description="field whose values are the left-hand nodes")
        target_field: str = Field("destination.ip", description="field whose values are the right-hand nodes")
        bytes_field: str | None = Field("network.bytes", description="numeric field summed per edge")
        port_field: str | None = Field("destination.port", description="field whose distinct values are counted per edge")
        outcome_field: str | None = Field("event.outcome", description="field marking failures (failure, denied ...)")

    @property
    def entity_fields(self) -> tuple[str, ...]:
        return (self.params.source_field, self.params.target_field)

    def build(self, events: "pd.DataFrame", grid: WindowGrid) -> list[GraphWindow]:
        import pandas as pd

        p = self.params
        fields = self.entity_fields
        n = len(events)
        if n == 0 or p.source_field not in events.columns or p.target_field not in events.columns:
            return [self._empty(grid, i) for i in range(grid.count)]

        # -- every event's window and entity codes (strings hashed once for the batch)
        stamps = events[TIMESTAMP].to_numpy(dtype="datetime64[ns]").view(np.int64)
        start_ns = pd.Timestamp(grid.start).value
        size_ns = int(grid.size.total_seconds() * 1e9)
        window = (stamps - start_ns) // size_ns
        src, src_values = _codes(events[p.source_field])
        dst, dst_values = _codes(events[p.target_field])
        keep = (src >= 0) & (dst >= 0) & (window >= 0) & (window < grid.count)
        if not keep.all():
            window, src, dst = window[keep], src[keep], dst[keep]
        n_src, n_dst = max(len(src_values), 1), max(len(dst_values), 1)
        if grid.count * n_src * n_dst >= 2**62:
            raise ValueError("too many distinct entities in one batch for 64-bit edge keys; use fewer windows per batch")

        # -- edges: one factorize of (window, src, dst) keys, then sorted so windows are contiguous
        event_edge, edge_key = _sorted_factorize((window * n_src + src) * n_dst + dst)
        m = len(edge_key)
        e_window = edge_key // (n_src * n_dst)
        e_src = (edge_key // n_dst) % n_src
        e_dst = edge_key % n_dst

        count = np.bincount(event_edge, minlength=m).astype(np.float64)
        nbytes = self._edge_sum(events, p.bytes_field, keep, event_edge, m)
        failures = self._edge_failures(events, keep, event_edge, m)
        ports = self._edge_distinct(events, p.port_field, keep, event_edge, m)

        # -- nodes: (window, kind, code) keys sorted, so each window's nodes are contiguous
        width = max(n_src, n_dst)
        endpoint, node_key = _sorted_factorize(np.concatenate([(e_window * 2) * width + e_src,
                                                               (e_window * 2 + 1) * width + e_dst]))
        e_src_node, e_dst_node = endpoint[:m], endpoint[m:]
        node_window = node_key // (2 * width)
        node_kind = ((node_key // width) % 2).astype(np.int8)
        node_code = node_key % width
        node_value = np.where(node_kind == 0, np.asarray(src_values, dtype=object)[np.minimum(node_code, n_src - 1)],
                              np.asarray(dst_values, dtype=object)[np.minimum(node_code, n_dst - 1)])
        x = self._node_features(len(node_key), node_kind, e_src_node, e_dst_node, count, nbytes, failures, ports)
        edge_attr = np.column_stack([np.log1p(count), np.log1p(nbytes), np.log1p(ports),
                                     failures / np.maximum(count, 1)]).astype(np.float32)

        # -- slice into windows
        event_ids = events[EVENT_ID].to_numpy()[keep] if EVENT_ID in events.columns else np.arange(n)[keep].astype(str)
        evidence = Evidence(event_ids, event_edge, m)
        per_window = np.bincount(window, minlength=grid.count)
        node_ptr = np.concatenate([[0], np.cumsum(np.bincount(node_window, minlength=grid.count))])
        edge_ptr = np.concatenate([[0], np.cumsum(np.bincount(e_window, minlength=grid.count))])
        graphs = []
        for i in range(grid.count):
            n0, n1, m0, m1 = node_ptr[i], node_ptr[i + 1], edge_ptr[i], edge_ptr[i + 1]
            start, end = grid.bounds(i)
            local = np.vstack([e_src_node[m0:m1] - n0, e_dst_node[m0:m1] - n0])
            graphs.append(GraphWindow(
                index=i, start=start, end=end, node_fields=fields, node_kind=node_kind[n0:n1],
                node_value=node_value[n0:n1], x=x[n0:n1], feature_names=NODE_FEATURES, edge_index=local,
                edge_attr=edge_attr[m0:m1], edge_feature_names=EDGE_FEATURES, num_events=int(per_window[i]),
                evidence=evidence, edge_offset=int(m0)))
        return graphs

    # ------------------------------------------------------------------ aggregates
    @staticmethod
    def _edge_sum(events: "pd.DataFrame", column: str | None, keep: np.ndarray, event_edge: np.ndarray, m: int) -> np.ndarray:
        if not column or column not in events.columns:
            return np.zeros(m)
        values = events[column].to_numpy(dtype=np.float64, na_value=0.0)[keep]
        return np.bincount(event_edge, weights=np.nan_to_num(values), minlength=m)

    def _edge_failures(self, events: "pd.DataFrame", keep: np.ndarray, event_edge: np.ndarray, m: int) -> np.ndarray:
        column = self.params.outcome_field
        if not column or column not in events.columns:
            return np.zeros(m)
        codes, values = _codes(events[column])
        failed_code = np.array([str(v).lower() in FAILURE_VALUES for v in values] + [False])
        return np.bincount(event_edge, weights=failed_code[codes[keep]].astype(np.float64), minlength=m)

    @staticmethod
    def _edge_distinct(events: "pd.DataFrame", column: str | None, keep: np.ndarray, event_edge: np.ndarray, m: int) -> np.ndarray:
        if not column or column not in events.columns:
            return np.zeros(m)
        import pandas as pd

        codes, values = _codes(events[column])
        pair = event_edge * (len(values) + 1) + (codes[keep] + 1)
        distinct_pairs = pd.unique(pair)
        return np.bincount(distinct_pairs // (len(values) + 1), minlength=m).astype(np.float64)

    @staticmethod
    def _node_features(num_nodes: int, node_kind: np.ndarray, a: np.ndarray, b: np.ndarray, count: np.ndarray,
                       nbytes: np.ndarray, failures: np.ndarray, ports: np.ndarray) -> np.ndarray:
        def per_node(weights: np.ndarray | None = None) -> np.ndarray:
            return (np.bincount(a, weights=weights, minlength=num_nodes)
                    + np.bincount(b, weights=weights, minlength=num_nodes)).astype(np.float64)

        degree = per_node()
        events = per_node(count)
        total_bytes = per_node(nbytes)
        max_edge_bytes = np.zeros(num_nodes)
        np.maximum.at(max_edge_bytes, a, nbytes)
        np.maximum.at(max_edge_bytes, b, nbytes)
        fails = per_node(failures)
        rare = (np.bincount(a, weights=(degree[b] == 1).astype(np.float64), minlength=num_nodes)
                + np.bincount(b, weights=(degree[a] == 1).astype(np.float64), minlength=num_nodes))
        features = np.column_stack([
            (node_kind == 0).astype(np.float64), np.log1p(degree), np.log1p(events), np.log1p(total_bytes),
            np.log1p(max_edge_bytes), np.log1p(per_node(ports)), np.log1p(fails), fails / np.maximum(events, 1),
            np.log1p(rare),
        ])
        return features.astype(np.float32)

    def _empty(self, grid: WindowGrid, index: int) -> GraphWindow:
        start, end = grid.bounds(index)
        return GraphWindow(
            index=index, start=start, end=end, node_fields=self.entity_fields, node_kind=np.zeros(0, np.int8),
            node_value=np.zeros(0, object), x=np.zeros((0, len(NODE_FEATURES)), np.float32),
            feature_names=NODE_FEATURES, edge_index=np.zeros((2, 0), np.int64),
            edge_attr=np.zeros((0, len(EDGE_FEATURES)), np.float32), edge_feature_names=EDGE_FEATURES)


def _codes(column: "pd.Series") -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for missing) and the values they stand for; no hashing for categoricals."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy().astype(np.int64), np.asarray(column.cat.categories, dtype=object)
    codes, values = pd.factorize(column, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(values, dtype=object)


def _sorted_factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each key among the sorted distinct keys, the sorted distinct keys).

    Same result as np.unique(keys, return_inverse=True), but hashes the n keys and sorts only
    the distinct ones, which are far fewer.
    """
    import pandas as pd

    codes, uniques = pd.factorize(keys)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[codes], uniques[order]


@hookimpl
def register_graph_builders(register):
    register("bipartite", BipartiteGraphBuilder)
