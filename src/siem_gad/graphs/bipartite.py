"""The `bipartite` graph builder: entity x entity graphs per window, built without Python loops.

Nodes are the distinct values of two event fields (`source.ip` x `destination.ip`, or
`user.name` x `host.name`), typed by the field, so the same IP seen as source and as
destination gives two nodes. An edge joins two entities that share at least one event in the
window and aggregates those events. All windows of a batch are built at once:

1. each entity column becomes integer codes once for the whole batch: free when the source
   delivered it as a pandas Categorical (sources encode entity fields once per read), else one
   factorize (hashing the strings is the expensive part, so never once per window);
2. edges are found without hashing or sorting: (source, target) pairs are numbered with a dense
   slot array, then one compiled pass over the events (`kernels.edges_by_window`) opens an
   edge the first time a pair occurs in a window. Events arrive sorted by time, so edges and
   nodes come out grouped by window;
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

        # -- edges: one compiled pass over the events opens an edge the first time a (source,
        #    target) pair occurs in a window (kernels.py); the sums are bincounts
        from . import kernels

        rows = keep_index if keep_index is not None else slice(None)
        key, key_space = src * n_dst + dst, n_src * n_dst
        if key_space > DENSE_LIMIT:  # too many entities for dense slots: number the pairs by hashing first
            key, pair_key = _group_ids(key, key_space)
            key_space = max(len(pair_key), 1)
        event_edge, e_window, edge_key = kernels.edges_by_window(window, key, key_space)
        if key_space != n_src * n_dst:
            edge_key = pair_key[edge_key]
        m = len(edge_key)
        count = np.bincount(event_edge, minlength=m).astype(np.float64)
        nbytes = np.bincount(event_edge, weights=event_numbers(events, p.bytes_field, rows, len(window)), minlength=m)
        failures = np.bincount(event_edge, weights=event_failures(events, p.outcome_field, rows, len(window)),
                               minlength=m)
        edge_ptr = np.concatenate([[0], np.cumsum(np.bincount(e_window, minlength=grid.count))])
        e_src, e_dst = np.divmod(edge_key, n_dst)
        ports = self._edge_distinct(events, p.port_field, rows, event_edge, e_window, edge_ptr)

        # -- nodes: (window, side, entity), numbered in edge order, so grouped by window
        e_src_node, e_dst_node, node_kind, node_code, node_window = kernels.nodes_by_window(
            e_window, e_src, e_dst, n_src, n_dst)
        node_value = np.where(node_kind == 0, np.asarray(src_values, dtype=object)[np.minimum(node_code, n_src - 1)],
                              np.asarray(dst_values, dtype=object)[np.minimum(node_code, n_dst - 1)])
        x = _node_features(node_kind, kernels.node_sums(len(node_kind), e_src_node, e_dst_node, count, nbytes,
                                                         failures, ports))
        edge_attr = _stack32([np.log1p(count), np.log1p(nbytes), np.log1p(ports), failures / np.maximum(count, 1)])

        # -- slice into windows
        event_ids = events[EVENT_ID].to_numpy()[rows] if EVENT_ID in events.columns else np.arange(n)[rows].astype(str)
        evidence = Evidence(event_ids, event_edge, m)
        per_window = np.bincount(window, minlength=grid.count)
        node_ptr = np.concatenate([[0], np.cumsum(np.bincount(node_window, minlength=grid.count))])
        local_edges = np.vstack([e_src_node, e_dst_node]) - node_ptr[e_window]  # node index within the window
        graphs = []
        for i in range(grid.count):
            n0, n1, m0, m1 = node_ptr[i], node_ptr[i + 1], edge_ptr[i], edge_ptr[i + 1]
            start, end = grid.bounds(i)
            local = local_edges[:, m0:m1]
            graphs.append(GraphWindow(
                index=i, start=start, end=end, node_fields=fields, node_kind=node_kind[n0:n1],
                node_value=node_value[n0:n1], x=x[n0:n1], feature_names=NODE_FEATURES, edge_index=local,
                edge_attr=edge_attr[m0:m1], edge_feature_names=EDGE_FEATURES, num_events=int(per_window[i]),
                evidence=evidence, edge_offset=int(m0)))
        return graphs

    # ------------------------------------------------------------------ aggregates
    @staticmethod
    def _edge_distinct(events: "pd.DataFrame", column: str | None, rows, event_edge: np.ndarray,
                       edge_window: np.ndarray, edge_ptr: np.ndarray) -> np.ndarray:
        """Distinct values of `column` (ports) per edge."""
        from . import kernels

        m = len(edge_window)
        if not column or column not in events.columns:
            return np.zeros(m)
        codes, values = _small_int_codes(events[column])
        codes = codes[rows]
        widest = int(np.diff(edge_ptr).max()) if m else 0
        if widest * len(values) <= DENSE_LIMIT:
            return kernels.distinct_per_edge(event_edge, codes, max(len(values), 1), edge_window, edge_ptr[:-1], max(widest, 1))
        return distinct_per_group(event_edge, codes, len(values), m)

    def _empty(self, grid: WindowGrid, index: int) -> GraphWindow:
        start, end = grid.bounds(index)
        return GraphWindow(
            index=index, start=start, end=end, node_fields=self.entity_fields, node_kind=np.zeros(0, np.int8),
            node_value=np.zeros(0, object), x=np.zeros((0, len(NODE_FEATURES)), np.float32),
            feature_names=NODE_FEATURES, edge_index=np.zeros((2, 0), np.int64),
            edge_attr=np.zeros((0, len(EDGE_FEATURES)), np.float32), edge_feature_names=EDGE_FEATURES)


def event_numbers(events: "pd.DataFrame", column: str | None, rows, n: int) -> np.ndarray:
    """A numeric column for the kept events (`rows`), missing values as 0; zeros without the column."""
    if not column or column not in events.columns:
        return np.zeros(n)
    return np.nan_to_num(events[column].to_numpy(dtype=np.float64, na_value=0.0)[rows])


def event_failures(events: "pd.DataFrame", column: str | None, rows, n: int) -> np.ndarray:
    """1.0 for each kept event whose outcome reads as a failure (failure, denied ...), else 0.0."""
    if not column or column not in events.columns:
        return np.zeros(n)
    codes, values = _codes(events[column])
    failed_code = np.array([str(v).lower() in FAILURE_VALUES for v in values] + [False], dtype=np.float64)
    return failed_code[codes[rows]]


def windowed_rows(events: "pd.DataFrame", grid: WindowGrid, required: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The events inside `grid` whose `required` codes are all present (>= 0), ordered by
    window (stable, so time order within a window is kept), and their window numbers."""
    import pandas as pd

    window = (_nanoseconds(events[TIMESTAMP]) - pd.Timestamp(grid.start).value) // int(grid.size.total_seconds() * 1e9)
    ok = (window >= 0) & (window < grid.count)
    for codes in required:
        ok &= codes >= 0
    rows = np.flatnonzero(ok)
    rows = rows[np.argsort(window[rows], kind="stable")]
    return rows, window[rows]


def host_codes(events: "pd.DataFrame", source_field: str, target_field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of source and target values in one shared vocabulary (an address is one host,
    whichever end of a flow it is on), and the vocabulary."""
    import pandas as pd

    src, src_values = _codes(events[source_field])
    dst, dst_values = _codes(events[target_field])
    hosts = pd.Index(src_values, dtype=object).append(pd.Index(dst_values, dtype=object)).unique()
    src_map = np.append(hosts.get_indexer(src_values), -1)
    dst_map = np.append(hosts.get_indexer(dst_values), -1)
    return src_map[src], dst_map[dst], np.asarray(hosts, dtype=object)


def host_nodes(group: np.ndarray, src: np.ndarray, dst: np.ndarray, n_hosts: int,
               groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One node per (group, host) that sends or receives an event of the group (a window or
    subgraph), numbered in event order so nodes come out grouped like the events.

    Returns each event's sender node and receiver node, and each node's group and host code.
    """
    if len(src) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    n_hosts = max(n_hosts, 1)
    ends = np.empty(2 * len(src), np.int64)
    ends[0::2], ends[1::2] = group * n_hosts + src, group * n_hosts + dst
    end_node, node_key = _group_ids(ends, groups * n_hosts)
    node_group, node_host = np.divmod(node_key, n_hosts)
    return end_node[0::2], end_node[1::2], node_group, node_host


def distinct_per_group(group: np.ndarray, codes: np.ndarray, n_codes: int, groups: int) -> np.ndarray:
    """How many distinct codes (-1 = missing) each group's events have, by hashing (group, code) pairs."""
    import pandas as pd

    present = codes >= 0
    width = max(n_codes, 1)
    pairs = pd.unique(group[present] * width + codes[present])
    return np.bincount(pairs // width, minlength=groups).astype(np.float64)


def _stack32(columns: list[np.ndarray]) -> np.ndarray:
    """Columns -> one float32 matrix (filled column by column, without a float64 copy)."""
    out = np.empty((len(columns[0]), len(columns)), dtype=np.float32)
    for i, column in enumerate(columns):
        out[:, i] = column
    return out


def _node_features(node_kind: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """NODE_FEATURES from kernels.node_sums: counts log1p-scaled, the failure ratio as is."""
    degree, events, total, largest, services, fails, rare = sums
    return _stack32([(node_kind == 0).astype(np.float64), np.log1p(degree), np.log1p(events), np.log1p(total),
                     np.log1p(largest), np.log1p(services), np.log1p(fails), fails / np.maximum(events, 1),
                     np.log1p(rare)])


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


DENSE_LIMIT = 1 << 24  # slot-array entries (int64: 128 MiB at most); beyond it, hash


def _group_ids(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct values of `keys` (all in [0, size)) in order of first occurrence.

    Returns (id of each element, the distinct keys by id): one compiled pass over a dense slot
    array within the dense limit, hashing (pandas) beyond it.
    """
    import pandas as pd

    if size > DENSE_LIMIT:
        codes, uniques = pd.factorize(keys)
        return codes.astype(np.int64), uniques.astype(np.int64)
    from . import kernels

    return kernels.dense_ids(np.ascontiguousarray(keys, dtype=np.int64), size)


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
