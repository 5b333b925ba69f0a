"""The `bipartite` graph builder: entity x entity graphs per window, built without Python loops.

Nodes are the distinct values of two event fields (`source.ip` x `destination.ip`, or
`user.name` x `host.name`), typed by the field, so the same IP seen as source and as
destination gives two nodes. An edge joins two entities that share at least one event in the
window and aggregates those events. All windows of a batch are built at once:

1. each entity column becomes integer codes once for the whole batch: free when the source
   delivered it as a pandas Categorical (sources encode entity fields once per read), else one
   factorize (hashing the strings is the expensive part, so never once per window);
2. one compiled pass over the events (`kernels.window_edges`) finds each event's window and
   edge, without hashing or sorting, and sums the edge's events, bytes, failures and distinct
   ports. Events arrive sorted by time, so edges come out grouped by window;
3. one compiled pass over the edges (`kernels.window_nodes`) numbers the nodes of each window
   and writes node and edge features;
4. windows are contiguous slices of the edge and node arrays. Runs of whole windows build in
   parallel threads (the kernels release the GIL), each with its own evidence index.

With `label_field` set, each edge also counts its events labeled as attacks
(`GraphWindow.edge_attacks`, read as in `siem_gad.labeling`): `rare_links` learns the links
that carried attacks in its history from it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from ..lazy import lazy_import
from ..events import EVENT_ID, TIMESTAMP
from ..hubs import MAX_RELATED, hub_degree
from ..labeling import positive_mask
from . import Evidence, GraphBuilder, GraphWindow, LabelParams, WindowGrid, arrays

np = lazy_import("numpy")

if TYPE_CHECKING:
    import pandas as pd

NODE_FEATURES = ("is_source", "degree", "events", "bytes", "max_edge_bytes", "services", "failures",
                 "failure_ratio", "rare_peers")
EDGE_FEATURES = ("events", "bytes", "ports", "failure_ratio")
LOG_SCALED = frozenset(NODE_FEATURES) - {"is_source", "failure_ratio"}  # see log_scale(keep=(0, 7)) below
FAILURE_VALUES = ("failure", "failed", "fail", "denied", "deny", "blocked")
MIN_EVENTS_PER_THREAD = 200_000  # below this, a thread costs more than it saves


class BipartiteGraphBuilder(GraphBuilder):
    """User x resource style graph of two entity fields per window."""

    worker_imports = ("pandas", "siem_gad.graphs.kernels")

    class Params(LabelParams):
        source_field: str = Field("source.ip", description="field whose values are the left-hand nodes")
        target_field: str = Field("destination.ip", description="field whose values are the right-hand nodes")
        bytes_field: str | None = Field("network.bytes", description="numeric field summed per edge")
        port_field: str | None = Field("destination.port", description="field whose distinct values are counted per edge")
        outcome_field: str | None = Field("event.outcome", description="field marking failures (failure, denied ...)")
        threads: int = Field(0, ge=0, description="threads that build windows in parallel on large batches; "
                                                  "0 = one per available core")
        related_fields: list[str] = Field(default_factory=list, description=(
            "other entity fields of the events (an auth event's source.ip and destination.ip) kept per node: "
            "the addresses a user logged on from and to, a host's own address; they go into its alerts' "
            "related.* and link incidents across jobs"))

    @property
    def entity_fields(self) -> tuple[str, ...]:
        return (self.params.source_field, self.params.target_field)

    def build(self, events: "pd.DataFrame", grid: WindowGrid) -> list[GraphWindow]:
        p = self.params
        if len(events) == 0 or grid.count == 0 or p.source_field not in events.columns or p.target_field not in events.columns:
            return [self._empty(grid, i) for i in range(grid.count)]
        batch = _EncodedEvents.of(events, p, grid)
        chunks = batch.window_chunks(grid.count, self.threads(len(events)))
        if len(chunks) == 1:
            return self._build_windows(batch, grid, *chunks[0])
        with ThreadPoolExecutor(len(chunks), thread_name_prefix="bipartite") as pool:
            parts = list(pool.map(lambda chunk: self._build_windows(batch, grid, *chunk), chunks))
        return [graph for part in parts for graph in part]

    def threads(self, events: int) -> int:
        """Threads to build with: the configured number, or one per available core; one for
        batches too small to be worth splitting."""
        wanted = self.params.threads or len(os.sched_getaffinity(0))
        return max(1, min(wanted, events // MIN_EVENTS_PER_THREAD))

    def _build_windows(self, batch: "_EncodedEvents", grid: WindowGrid, w0: int, w1: int, i0: int,
                       i1: int) -> list[GraphWindow]:
        """The graphs of windows w0 .. w1-1, whose events are i0 .. i1-1 of the batch; both
        kernels release the GIL, so chunks of windows build in parallel threads."""
        from . import kernels

        n, windows = i1 - i0, w1 - w0
        # -- the event pass: windows, edges, edge sums, distinct ports
        event_edge, edge_key, edge_sums = np.empty(n, np.int32), np.empty(n, np.int64), np.empty((n, 4))
        edges_per_window, events_per_window = np.zeros(windows, np.int64), np.zeros(windows, np.int64)
        rows = slice(i0, i1)
        m = kernels.window_edges(batch.stamps[rows], batch.start_ns + w0 * batch.size_ns, batch.size_ns,
                                 batch.src[rows], batch.dst[rows], batch.n_dst_keys, batch.nbytes[rows],
                                 batch.outcome[rows], batch.failed, batch.port[rows], batch.n_ports,
                                 np.full(batch.key_space, -1, np.int32), event_edge, edges_per_window,
                                 events_per_window, edge_key, edge_sums)
        edge_key = edge_key[:m] if batch.pair_key is None else batch.pair_key[edge_key[:m]]
        edge_ptr = np.concatenate([[0], np.cumsum(edges_per_window)])

        # -- the edge pass: nodes grouped by window, node and edge features
        edge_index = np.empty((2, m), np.int64)
        node_kind, value_index = np.empty(2 * m, np.int8), np.empty(2 * m, np.int64)  # at most 2 nodes per edge
        node_ptr = np.empty(windows + 1, np.int64)
        x = np.empty((2 * m, len(NODE_FEATURES)), np.float32)
        edge_attr = np.empty((m, len(EDGE_FEATURES)), np.float32)
        k = kernels.window_nodes(edge_ptr, edge_key, batch.n_src, batch.n_dst, edge_sums, edge_index, node_kind,
                                 value_index, node_ptr, x, edge_attr)
        node_kind, x = node_kind[:k], arrays.log_scale(x[:k], keep=(0, 7))
        edge_attr = arrays.log_scale(edge_attr, keep=(3,))
        node_value = batch.values[value_index[:k]]
        related = self._related(batch, rows, event_edge, edge_index, edges_per_window, node_ptr, windows)
        attacks = None
        if batch.attack is not None:
            attacked = batch.attack[rows] & (event_edge >= 0)
            attacks = np.bincount(event_edge[attacked], minlength=m).astype(np.float64)

        # -- slice into windows
        evidence = Evidence(batch.event_ids[rows], event_edge, m)
        graphs = []
        for i in range(windows):
            n0, n1, m0, m1 = node_ptr[i], node_ptr[i + 1], edge_ptr[i], edge_ptr[i + 1]
            start, end = grid.bounds(w0 + i)
            graphs.append(GraphWindow(
                index=w0 + i, start=start, end=end, node_fields=self.entity_fields, node_kind=node_kind[n0:n1],
                node_value=node_value[n0:n1], x=x[n0:n1], feature_names=NODE_FEATURES, log_scaled=LOG_SCALED,
                edge_index=edge_index[:, m0:m1], edge_attr=edge_attr[m0:m1], edge_feature_names=EDGE_FEATURES,
                num_events=int(events_per_window[i]), evidence=evidence, edge_offset=int(m0),
                node_related=related[i] if related is not None else None,
                edge_attacks=attacks[m0:m1] if attacks is not None else None))
        return graphs

    def _related(self, batch: "_EncodedEvents", rows: slice, event_edge: np.ndarray, edge_index: np.ndarray,
                 edges_per_window: np.ndarray, node_ptr: np.ndarray, windows: int) -> list[dict] | None:
        """Per window, local node -> the `related_fields` values its events carry, most events
        first, each with whether it is a hub of the window (see `GraphWindow.node_related`)."""
        if not batch.related:
            return None
        out: list[dict] = [{} for _ in range(windows)]
        on_edge = np.flatnonzero(event_edge >= 0)
        edge = event_edge[on_edge].astype(np.int64)
        window_of_edge = np.repeat(np.arange(windows), edges_per_window)
        nodes = np.concatenate([node_ptr[window_of_edge[edge]] + edge_index[0, edge],
                                node_ptr[window_of_edge[edge]] + edge_index[1, edge]])
        window_of_node = np.repeat(np.arange(windows), np.diff(node_ptr))
        for field, codes, values in batch.related:
            code = np.tile(codes[rows][on_edge].astype(np.int64), 2)
            keep = code >= 0
            width = max(len(values), 1)
            pairs, counts = np.unique(nodes[keep] * width + code[keep], return_counts=True)
            node, value = np.divmod(pairs, width)
            # a value carried by the events of a tenth of the window's entities relates everything: a hub
            carriers = np.unique(window_of_node[node] * width + value, return_counts=True)
            spread = dict(zip(carriers[0].tolist(), carriers[1].tolist()))
            sizes = np.diff(node_ptr)
            order = np.lexsort((value, -counts, node))
            taken: dict[int, int] = {}  # node -> values of this field kept (at most MAX_RELATED)
            for n, v in zip(node[order].tolist(), value[order].tolist()):
                if taken.get(n, 0) >= MAX_RELATED:
                    continue
                taken[n] = taken.get(n, 0) + 1
                w = int(window_of_node[n])
                hub = spread[w * width + v] >= hub_degree(sizes[w])
                out[w].setdefault(n - int(node_ptr[w]), []).append((field, str(values[v]), bool(hub)))
        return out

    def _empty(self, grid: WindowGrid, index: int) -> GraphWindow:
        start, end = grid.bounds(index)
        return GraphWindow(
            index=index, start=start, end=end, node_fields=self.entity_fields, node_kind=np.zeros(0, np.int8),
            node_value=np.zeros(0, object), x=np.zeros((0, len(NODE_FEATURES)), np.float32),
            feature_names=NODE_FEATURES, log_scaled=LOG_SCALED, edge_index=np.zeros((2, 0), np.int64),
            edge_attr=np.zeros((0, len(EDGE_FEATURES)), np.float32), edge_feature_names=EDGE_FEATURES)


@dataclass
class _EncodedEvents:
    """A batch's columns as the kernels read them, encoded once and ordered by time.

    Entity fields become integer codes (free for categoricals, one hashing pass for strings),
    outcomes become codes with a failure flag per code, ports become dense codes. When there
    are too many entities for a dense (source x target) slot array, the pairs are numbered by
    hashing first, and `src` carries the pair number (with `n_dst_keys` = 1).
    """

    stamps: np.ndarray
    start_ns: int
    size_ns: int
    src: np.ndarray
    dst: np.ndarray
    n_src: int
    n_dst: int
    values: np.ndarray  # source values, then target values from n_src on
    nbytes: np.ndarray
    outcome: np.ndarray
    failed: np.ndarray
    port: np.ndarray
    n_ports: int
    event_ids: "np.ndarray | pd.api.extensions.ExtensionArray"  # see _event_ids
    key_space: int
    n_dst_keys: int
    pair_key: np.ndarray | None
    related: list[tuple[str, np.ndarray, np.ndarray]]  # (field, codes in event order, values)
    attack: np.ndarray | None  # per event: labeled an attack (None: no label field)

    @classmethod
    def of(cls, events: "pd.DataFrame", p: "BipartiteGraphBuilder.Params", grid: WindowGrid) -> "_EncodedEvents":
        n = len(events)
        stamps = arrays.nanoseconds(events[TIMESTAMP])
        src, src_values = arrays.codes(events[p.source_field], native=True)
        dst, dst_values = arrays.codes(events[p.target_field], native=True)
        n_src, n_dst = max(len(src_values), 1), max(len(dst_values), 1)
        values = np.empty(n_src + n_dst, dtype=object)
        values[:len(src_values)], values[n_src:n_src + len(dst_values)] = src_values, dst_values
        outcome, failed = _failure_codes(events, p.outcome_field)
        port, n_ports = _port_codes(events, p.port_field)
        event_ids = _event_ids(events) if EVENT_ID in events.columns else np.arange(n).astype(str)
        related = [(f, *arrays.codes(events[f])) for f in p.related_fields if f in events.columns]
        attack = None
        if p.label_field and p.label_field in events.columns:
            attack = positive_mask(events[p.label_field], p.positive_values)  # a missing label is no attack
        columns = [stamps, src, dst, _numbers_or_nan(events, p.bytes_field), outcome, port, event_ids,
                   *(c for _, c, _ in related), *([attack] if attack is not None else [])]
        if n > 1 and not (stamps[1:] >= stamps[:-1]).all():  # sources deliver by time; order once if not
            order = np.argsort(stamps, kind="stable")
            columns = [column[order] for column in columns]
        stamps, src, dst, nbytes, outcome, port, event_ids = columns[:7]
        related = [(f, c, v) for (f, _, v), c in zip(related, columns[7:7 + len(related)])]
        attack = columns[-1] if attack is not None else None
        key_space, n_dst_keys, pair_key = n_src * n_dst, n_dst, None
        if key_space > arrays.DENSE_LIMIT:  # too many entities for dense slots: number the pairs by hashing first
            present = (src >= 0) & (dst >= 0)
            pair, pair_key = arrays.group_ids(np.where(present, src.astype(np.int64) * n_dst + dst, 0), key_space)
            src, dst = np.where(present, pair, -1), np.zeros(n, np.int8)
            key_space, n_dst_keys = max(len(pair_key), 1), 1
        return cls(stamps, grid.start_ns, grid.size_ns, src, dst, n_src, n_dst, values, nbytes, outcome, failed, port,
                   n_ports, event_ids, key_space, n_dst_keys, pair_key, related, attack)

    def window_chunks(self, windows: int, parts: int) -> list[tuple[int, int, int, int]]:
        """Split the grid into at most `parts` runs of whole windows with about equal events:
        (first window, end window, first event, end event) each."""
        first_event = np.searchsorted(self.stamps, self.start_ns + np.arange(windows + 1) * self.size_ns)
        inside = first_event[-1] - first_event[0]
        cuts = np.searchsorted(first_event, first_event[0] + inside * np.arange(1, parts) / parts)
        bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, windows - 1) if windows > 1 else [], [windows]]))
        bounds = bounds.astype(np.int64)
        return [(int(w0), int(w1), int(first_event[w0]), int(first_event[w1])) for w0, w1 in zip(bounds, bounds[1:])]


def event_numbers(events: "pd.DataFrame", column: str | None, rows, n: int) -> np.ndarray:
    """A numeric column for the kept events (`rows`), missing values as 0; zeros without the column."""
    if not column or column not in events.columns:
        return np.zeros(n)
    return np.nan_to_num(events[column].to_numpy(dtype=np.float64, na_value=0.0)[rows])


def event_failures(events: "pd.DataFrame", column: str | None, rows, n: int) -> np.ndarray:
    """1.0 for each kept event whose outcome reads as a failure (failure, denied ...), else 0.0."""
    if not column or column not in events.columns:
        return np.zeros(n)
    codes, failed = _failure_codes(events, column)
    return np.append(failed, 0.0)[codes[rows]]  # code -1 (missing) reads the appended 0


def _event_ids(events: "pd.DataFrame") -> object:
    """The events' ids as an array the evidence index can slice and take from. Ids that are not
    Python objects already (pandas' Arrow-backed strings, as the CSV and JSON readers give them)
    stay in their buffers: turning a million of them into Python strings cost more than the
    whole event pass, and the evidence index reads only the few behind an alert."""
    ids = events[EVENT_ID]
    return ids.to_numpy() if ids.dtype == object else ids.array


def _numbers_or_nan(events: "pd.DataFrame", column: str | None) -> np.ndarray:
    """A numeric column as a numpy array without copying where it already is one; missing
    values (and a missing column) as NaN, which the kernels skip."""
    if not column or column not in events.columns:
        return np.full(len(events), np.nan)
    series = events[column]
    if series.dtype.kind in "iuf":
        return series.to_numpy()
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _failure_codes(events: "pd.DataFrame", column: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Outcome codes (-1 missing) and, per code, 1.0 when the value reads as a failure."""
    if not column or column not in events.columns:
        return np.full(len(events), -1, np.int8), np.zeros(0)
    codes, values = arrays.codes(events[column], native=True)
    return codes, np.array([str(v).lower() in FAILURE_VALUES for v in values], dtype=np.float64)


def _port_codes(events: "pd.DataFrame", column: str | None) -> tuple[np.ndarray, int]:
    """Port codes (-1 missing) numbered 0 .. count-1, and the count."""
    if not column or column not in events.columns:
        return np.full(len(events), -1, np.int8), 1
    codes, values = arrays.small_int_codes(events[column])
    return codes, max(len(values), 1)


def window_numbers(events: "pd.DataFrame", grid: WindowGrid) -> np.ndarray:
    """Each event's window in `grid` (negative before it, >= grid.count after it)."""
    return (arrays.nanoseconds(events[TIMESTAMP]) - grid.start_ns) // grid.size_ns


def windowed_rows(events: "pd.DataFrame", grid: WindowGrid, required: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The events inside `grid` whose `required` codes are all present (>= 0), ordered by
    window (stable, so time order within a window is kept), and their window numbers."""
    window = window_numbers(events, grid)
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

    src, src_values = arrays.codes(events[source_field])
    dst, dst_values = arrays.codes(events[target_field])
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
    end_node, node_key = arrays.group_ids(ends, groups * n_hosts)
    node_group, node_host = np.divmod(node_key, n_hosts)
    return end_node[0::2], end_node[1::2], node_group, node_host


def distinct_per_group(group: np.ndarray, codes: np.ndarray, n_codes: int, groups: int) -> np.ndarray:
    """How many distinct codes (-1 = missing) each group's events have, by hashing (group, code) pairs."""
    import pandas as pd

    present = codes >= 0
    width = max(n_codes, 1)
    pairs = pd.unique(group[present] * width + codes[present])
    return np.bincount(pairs // width, minlength=groups).astype(np.float64)
