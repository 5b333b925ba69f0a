"""The `bipartite` graph builder: entity x entity graphs per window, built without Python loops.

Nodes are the distinct values of two event fields (`source.ip` x `destination.ip`, or
`user.name` x `host.name`), typed by the field, so the same IP seen as source and as
destination gives two nodes. An edge joins two entities that share at least one event in the
window and aggregates those events. All windows of a batch are built at once:

1. each entity column becomes integer codes once for the whole batch: free when the source
   delivered it as a pandas Categorical (sources encode entity fields once per read), else one
   factorize (hashing the strings is the expensive part, so never once per window);
2. edges are found without hashing: (source, target) pairs and then (window, pair) keys are
   deduplicated with a dense marker array (`_group_ids`), one scatter and one gather each.
   Events arrive sorted by time, so the edges come out grouped by window with no sort;
3. edge and node aggregates are `np.bincount`s over those ids;
4. windows are contiguous slices of the edge and node arrays.
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
        stamps = _nanoseconds(events[TIMESTAMP])
        start_ns = pd.Timestamp(grid.start).value
        size_ns = int(grid.size.total_seconds() * 1e9)
        window = (stamps - start_ns) // size_ns
        src, src_values = _codes(events[p.source_field])
        dst, dst_values = _codes(events[p.target_field])
        valid = (src >= 0) & (dst >= 0) & (window >= 0) & (window < grid.count)
        if n > 1 and not (np.diff(window) >= 0).all():
            # Edges come out grouped by window only for time-ordered events: order them once.
            order = np.argsort(window, kind="stable")
            keep_index = order[valid[order]]
        else:
            keep_index = None if valid.all() else np.flatnonzero(valid)
        if keep_index is not None:
            window, src, dst = window[keep_index], src[keep_index], dst[keep_index]
        n_src, n_dst = max(len(src_values), 1), max(len(dst_values), 1)

        # -- edges: dedupe (src, dst) pairs, then pairs within each window; ids follow event order
        pair, pair_key = _group_ids(src * n_dst + dst, n_src * n_dst)
        event_ptr = np.concatenate([[0], np.cumsum(np.bincount(window, minlength=grid.count))])
        event_edge, edge_pair, edges_per_window = _group_ids_per_segment(pair, event_ptr, max(len(pair_key), 1))
        m = len(edge_pair)
        edge_ptr = np.concatenate([[0], np.cumsum(edges_per_window)])
        e_window = np.repeat(np.arange(grid.count), edges_per_window)
        e_src = pair_key[edge_pair] // n_dst
        e_dst = pair_key[edge_pair] % n_dst

        count = np.bincount(event_edge, minlength=m).astype(np.float64)
        rows = keep_index if keep_index is not None else slice(None)
        nbytes = self._edge_sum(events, p.bytes_field, rows, event_edge, m)
        failures = self._edge_failures(events, rows, event_edge, m)
        ports = self._edge_distinct(events, p.port_field, rows, event_edge, event_ptr, edge_ptr)

        # -- nodes: (window, kind, code) keys sorted, so each window's nodes are contiguous
        width = max(n_src, n_dst)
        endpoints = np.empty(2 * m, dtype=np.int64)  # interleaved, so nodes stay grouped by window
        endpoints[0::2] = (e_window * 2) * width + e_src
        endpoints[1::2] = (e_window * 2 + 1) * width + e_dst
        endpoint, node_key = _group_ids(endpoints, grid.count * 2 * width)
        e_src_node, e_dst_node = endpoint[0::2], endpoint[1::2]
        node_window = node_key // (2 * width)
        node_kind = ((node_key // width) % 2).astype(np.int8)
        node_code = node_key % width
        node_value = np.where(node_kind == 0, np.asarray(src_values, dtype=object)[np.minimum(node_code, n_src - 1)],
                              np.asarray(dst_values, dtype=object)[np.minimum(node_code, n_dst - 1)])
        x = self._node_features(len(node_key), node_kind, e_src_node, e_dst_node, count, nbytes, failures, ports)
        edge_attr = np.column_stack([np.log1p(count), np.log1p(nbytes), np.log1p(ports),
                                     failures / np.maximum(count, 1)]).astype(np.float32)

        # -- slice into windows
        event_ids = events[EVENT_ID].to_numpy()[rows] if EVENT_ID in events.columns else np.arange(n)[rows].astype(str)
        evidence = Evidence(event_ids, event_edge, m)
        per_window = np.bincount(window, minlength=grid.count)
        node_ptr = np.concatenate([[0], np.cumsum(np.bincount(node_window, minlength=grid.count))])
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
    def _edge_sum(events: "pd.DataFrame", column: str | None, rows, event_edge: np.ndarray, m: int) -> np.ndarray:
        if not column or column not in events.columns:
            return np.zeros(m)
        values = events[column].to_numpy(dtype=np.float64, na_value=0.0)[rows]
        return np.bincount(event_edge, weights=np.nan_to_num(values), minlength=m)

    def _edge_failures(self, events: "pd.DataFrame", rows, event_edge: np.ndarray, m: int) -> np.ndarray:
        column = self.params.outcome_field
        if not column or column not in events.columns:
            return np.zeros(m)
        codes, values = _codes(events[column])
        failed_code = np.array([str(v).lower() in FAILURE_VALUES for v in values] + [False])
        return np.bincount(event_edge, weights=failed_code[codes[rows]].astype(np.float64), minlength=m)

    @staticmethod
    def _edge_distinct(events: "pd.DataFrame", column: str | None, rows, event_edge: np.ndarray,
                       event_ptr: np.ndarray, edge_ptr: np.ndarray) -> np.ndarray:
        """Distinct values of `column` per edge: (edge, value) pairs deduplicated window by window."""
        m = int(edge_ptr[-1])
        if not column or column not in events.columns:
            return np.zeros(m)
        codes, values = _small_int_codes(events[column])
        width = len(values) + 1
        first_edge = np.repeat(edge_ptr[:-1], np.diff(event_ptr))  # each event's window's first edge
        local = (event_edge - first_edge) * width + (codes[rows] + 1)
        widest = int(np.diff(edge_ptr).max()) if m else 0
        _, distinct, per_window = _group_ids_per_segment(local, event_ptr, max(widest * width, 1))
        edge_of_distinct = np.repeat(edge_ptr[:-1], per_window) + distinct // width
        return np.bincount(edge_of_distinct, minlength=m).astype(np.float64)

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


def _nanoseconds(stamps: "pd.Series") -> np.ndarray:
    """Epoch nanoseconds of a datetime column of any resolution (pandas 3 parses to us or s)."""
    if getattr(stamps.dt, "unit", "ns") != "ns":
        stamps = stamps.dt.as_unit("ns")
    return stamps.array.asi8


def _codes(column: "pd.Series") -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for missing) and the values they stand for; no hashing for categoricals."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy().astype(np.int64), np.asarray(column.cat.categories, dtype=object)
    codes, values = pd.factorize(column, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(values, dtype=object)


DENSE_LIMIT = 1 << 25  # marker entries (int32: 128 MiB at most); beyond it, hash


def _group_ids(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct values of `keys` (all in [0, size)) in the order they occur.

    Returns (id of each element, the distinct keys by id). Within the dense limit this needs no
    hashing or sorting: scatter every position into a marker array indexed by key, gather it
    back, and the positions that read themselves are one representative per key.
    """
    import pandas as pd

    n = len(keys)
    if size > DENSE_LIMIT or n >= 2**31:
        codes, uniques = pd.factorize(keys)
        return codes.astype(np.int64), uniques.astype(np.int64)
    positions = np.arange(n, dtype=np.int32)
    marker = np.empty(size, dtype=np.int32)
    marker[keys] = positions
    representative = marker[keys]
    is_first = representative == positions
    ids = np.cumsum(is_first, dtype=np.int64) - 1
    return ids[representative], keys[is_first]


def _group_ids_per_segment(keys: np.ndarray, ptr: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_group_ids` inside each segment keys[ptr[i]:ptr[i+1]], ids numbered on across segments.

    Returns (id of each element, distinct keys by id, number of distinct keys per segment).
    One small marker array (`size` entries) serves every segment, so memory stays bounded and
    no fresh pages are touched per window, which is what makes one big marker slow.
    """
    import pandas as pd

    ids = np.empty(len(keys), dtype=np.int64)
    counts = np.zeros(len(ptr) - 1, dtype=np.int64)
    parts: list[np.ndarray] = []
    lengths = np.diff(ptr)
    dense = size <= DENSE_LIMIT
    marker = np.empty(size if dense else 0, dtype=np.int32)
    positions = np.arange(int(lengths.max(initial=0)), dtype=np.int32)
    next_id = 0
    for segment in np.flatnonzero(lengths):
        a, b = ptr[segment], ptr[segment + 1]
        chunk = keys[a:b]
        if dense:
            here = positions[: b - a]
            marker[chunk] = here
            representative = marker[chunk]
            is_first = representative == here
            local = np.cumsum(is_first) - 1
            ids[a:b] = local[representative] + next_id
            distinct = chunk[is_first]
        else:
            codes, distinct = pd.factorize(chunk)
            ids[a:b] = codes + next_id
        parts.append(distinct)
        counts[segment] = len(distinct)
        next_id += len(distinct)
    return ids, (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)), counts


def _small_int_codes(column: "pd.Series") -> tuple[np.ndarray, np.ndarray]:
    """Codes for a column of ports and similar small non-negative integers, without hashing."""
    import pandas as pd

    if not isinstance(column.dtype, pd.CategoricalDtype) and pd.api.types.is_integer_dtype(column.dtype):
        values = column.to_numpy()
        if len(values) and values.min() >= 0 and values.max() < 1 << 17:
            return _group_ids(values.astype(np.int64), int(values.max()) + 1)
    return _codes(column)


@hookimpl
def register_graph_builders(register):
    register("bipartite", BipartiteGraphBuilder)
