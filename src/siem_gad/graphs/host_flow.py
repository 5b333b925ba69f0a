"""The `host_flow` builder: heterogeneous host/flow graphs, as in the research on CIDDS-001.

Every flow (event) is a node of its own, joined to the host that sent it (host -> flow) and to
the host that received it (flow -> host). Message passing then gives a flow the context of the
other flows of its two hosts: a flow that looks harmless alone is one of five hundred probes from
the same sender. Flows of a window are cut into subgraphs of `flows_per_graph` consecutive flows,
each with its own copies of the hosts involved, so graphs stay small whatever the traffic.

Flow features (kind 1): log1p of the numeric fields (duration, bytes and packets each way),
one-hots of the categorical fields (transport, Zeek connection state), the TCP flags seen each
way (from the Zeek history string), the time of day and of week as sine/cosine pairs (unless
`time_features` is off) and, only if `port_field` is set, the destination port's range. Host
features (kind 0): flows sent and received and distinct peers within the subgraph, whether the
address is private, and, only if `ip_bits` is set, the bits of its last two octets (the
research's host encoding).

Ports and address bits are off by default: they are where a model learns a capture's shortcuts
(the port one botnet used, the address of one infected camera) instead of behaviour, and such
models collapse on the next network (docs/benchmarks.md measures it).

With `label_field` set, each flow node carries its label ('benign', the attack class from
`class_field`, or None) for the supervised detectors (`hetero_gnn`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from ..events import EVENT_ID, TIMESTAMP
from ..labeling import event_classes
from . import TIME_OF_DAY_FEATURES, Evidence, GraphBuilder, GraphWindow, LabelParams, WindowGrid, arrays
from .bipartite import distinct_per_group, event_numbers, host_codes, host_nodes, windowed_rows

if TYPE_CHECKING:
    import pandas as pd

HOST, FLOW = 0, 1
ZEEK_STATES = ["S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"]
HISTORY_FLAGS = "SHADFRCT"  # Zeek history letters: upper case from the originator, lower case from the responder


class HostFlowParams(LabelParams):
    source_field: str = Field("source.ip", description="the sending host of a flow")
    target_field: str = Field("destination.ip", description="the receiving host of a flow")
    numeric_fields: list[str] = Field(
        default_factory=lambda: ["event.duration", "source.bytes", "destination.bytes", "source.packets",
                                 "destination.packets"],
        description="numeric flow fields, log1p-scaled (missing values and fields count as 0)")
    categorical_fields: dict[str, list[str]] = Field(
        default_factory=lambda: {"network.transport": ["tcp", "udp", "icmp"], "zeek.connection.state": ZEEK_STATES},
        description="flow fields one-hot encoded over the listed values, plus one column for any other value")
    history_field: str | None = Field("zeek.connection.history", description="Zeek history string: TCP flags each way")
    port_field: str | None = Field(None, description="destination port as a feature (off: ports are capture shortcuts)")
    ip_bits: bool = Field(False, description="the bits of each host address's last two octets as host features")
    time_features: bool = Field(True, description="the time of day and of week as flow features")
    flows_per_graph: int = Field(512, ge=1, description="flows per subgraph (each with its own copies of the hosts)")
    class_field: str | None = Field(None, description="event field naming the attack class (multi-class training)")


class HostFlowGraphBuilder(GraphBuilder):
    Params = HostFlowParams

    @property
    def entity_fields(self) -> tuple[str, ...]:
        return (self.params.source_field, EVENT_ID)

    @property
    def host_feature_names(self) -> tuple[str, ...]:
        bits = tuple(f"ip_bit_{i}" for i in range(16)) if self.params.ip_bits else ()
        return ("flows_out", "flows_in", "peers", "private", *bits)

    @property
    def log_scaled(self) -> frozenset[str]:
        """Host counts and the numeric flow fields are log1p-scaled; flags, one-hots, address
        bits, times of day and the port features are not."""
        return frozenset(("flows_out", "flows_in", "peers", *self.params.numeric_fields))

    @property
    def flow_feature_names(self) -> tuple[str, ...]:
        p = self.params
        names = list(p.numeric_fields)
        for field_name, values in p.categorical_fields.items():
            names += [f"{field_name}={v}" for v in values] + [f"{field_name}=other"]
        if p.history_field:
            names += [f"flag {c} orig" for c in HISTORY_FLAGS] + [f"flag {c.lower()} resp" for c in HISTORY_FLAGS]
        if p.time_features:
            names += TIME_OF_DAY_FEATURES
        if p.port_field:
            names += ["port well-known", "port registered", "port ephemeral", "port log"]
        return tuple(names)

    def build(self, events: "pd.DataFrame", grid: WindowGrid) -> list[GraphWindow]:
        p = self.params
        host_names, flow_names = self.host_feature_names, self.flow_feature_names
        names = host_names + flow_names
        kinds = (tuple(range(len(host_names))), tuple(range(len(host_names), len(names))))
        if len(events) == 0 or p.source_field not in events.columns or p.target_field not in events.columns:
            return [self._empty(grid, i, names, kinds) for i in range(grid.count)]
        src_all, dst_all, hosts = host_codes(events, p.source_field, p.target_field)
        rows, window = windowed_rows(events, grid, [src_all, dst_all])
        src, dst, n = src_all[rows], dst_all[rows], len(rows)

        # -- subgraphs: consecutive runs of flows_per_graph flows inside each window
        per_window = np.bincount(window, minlength=grid.count)
        event_ptr = np.concatenate([[0], np.cumsum(per_window)])
        rank = np.arange(n) - event_ptr[window]
        chunks = -(-per_window // p.flows_per_graph)
        chunk_ptr = np.concatenate([[0], np.cumsum(chunks)])
        subgraph = chunk_ptr[window] + rank // p.flows_per_graph

        # -- host nodes: one per (subgraph, host), numbered in flow order (so grouped by window)
        src_node, dst_node, node_subgraph, node_host = host_nodes(subgraph, src, dst, len(hosts), int(chunk_ptr[-1]))
        node_window = np.searchsorted(chunk_ptr, node_subgraph, side="right") - 1
        host_x = self._host_features(hosts, node_host, src_node, dst_node, len(node_host))
        host_ptr = np.concatenate([[0], np.cumsum(np.bincount(node_window, minlength=grid.count))])

        flow_x = self._flow_features(events, rows)
        labels = event_classes(events, p.label_field, p.class_field, p.positive_values, rows)
        event_ids = events[EVENT_ID].to_numpy()[rows] if EVENT_ID in events.columns else rows.astype(str)
        # two edges per flow (sender -> flow, flow -> receiver), both carry the flow's event
        evidence = Evidence(np.repeat(event_ids, 2), np.arange(2 * n), 2 * n)
        host_values = hosts[node_host] if len(hosts) else np.zeros(0, object)

        graphs = []
        for i in range(grid.count):
            h0, h1, e0, e1 = host_ptr[i], host_ptr[i + 1], event_ptr[i], event_ptr[i + 1]
            nh, nf = h1 - h0, e1 - e0
            x = np.zeros((nh + nf, len(names)), np.float32)
            x[:nh, : len(host_names)] = host_x[h0:h1]
            x[nh:, len(host_names):] = flow_x[e0:e1]
            flow_local = nh + np.arange(nf)
            edge_index = np.empty((2, 2 * nf), np.int64)
            edge_index[0, 0::2], edge_index[1, 0::2] = src_node[e0:e1] - h0, flow_local
            edge_index[0, 1::2], edge_index[1, 1::2] = flow_local, dst_node[e0:e1] - h0
            node_label = None
            if labels is not None:
                node_label = np.concatenate([np.full(nh, None, dtype=object), labels[e0:e1]])
            start, end = grid.bounds(i)
            graphs.append(GraphWindow(
                index=i, start=start, end=end, node_fields=self.entity_fields,
                node_kind=np.concatenate([np.zeros(nh, np.int8), np.ones(nf, np.int8)]),
                node_value=np.concatenate([host_values[h0:h1], event_ids[e0:e1].astype(object)]),
                x=x, feature_names=names, log_scaled=self.log_scaled, edge_index=edge_index,
                edge_attr=np.zeros((2 * nf, 0), np.float32),
                edge_feature_names=(), num_events=int(nf), evidence=evidence, edge_offset=int(2 * e0),
                node_label=node_label, kind_features=kinds))
        return graphs

    # ------------------------------------------------------------------ features
    def _host_features(self, hosts: np.ndarray, node_host: np.ndarray, src_node: np.ndarray, dst_node: np.ndarray,
                       count: int) -> np.ndarray:
        out = np.bincount(src_node, minlength=count).astype(np.float64)
        into = np.bincount(dst_node, minlength=count).astype(np.float64)
        both = np.concatenate([src_node, dst_node])
        peers = distinct_per_group(both, np.concatenate([dst_node, src_node]), count, count)
        info = np.array([arrays.address_info(h, self.params.ip_bits) for h in hosts], dtype=np.float64).reshape(len(hosts), -1)
        columns = [np.log1p(out), np.log1p(into), np.log1p(peers)]
        return np.hstack([arrays.stack32(columns), info[node_host].astype(np.float32)]) if count else np.zeros(
            (0, len(self.host_feature_names)), np.float32)

    def _flow_features(self, events: "pd.DataFrame", rows: np.ndarray) -> np.ndarray:
        p, n = self.params, len(rows)
        columns = [np.log1p(np.maximum(event_numbers(events, f, rows, n), 0)) for f in p.numeric_fields]
        for field_name, values in p.categorical_fields.items():
            columns += _one_hot(events, field_name, values, rows)
        if p.history_field:
            columns += _history_flags(events, p.history_field, rows)
        if p.time_features:
            stamps = events[TIMESTAMP].iloc[rows].dt
            day_fraction = (stamps.hour.to_numpy() + stamps.minute.to_numpy() / 60) / 24
            hour = day_fraction * 2 * np.pi
            weekday = (stamps.day_of_week.to_numpy() + day_fraction) / 7 * 2 * np.pi
            columns += [np.sin(hour), np.cos(hour), np.sin(weekday), np.cos(weekday)]
        if p.port_field:
            port = event_numbers(events, p.port_field, rows, n)
            columns += [(port < 1024).astype(float), ((port >= 1024) & (port < 49152)).astype(float),
                        (port >= 49152).astype(float), np.log1p(port) / np.log(65536)]
        return arrays.stack32([np.asarray(c, dtype=np.float64) for c in columns]) if n else np.zeros(
            (0, len(self.flow_feature_names)), np.float32)

    def _empty(self, grid: WindowGrid, index: int, names: tuple[str, ...], kinds) -> GraphWindow:
        start, end = grid.bounds(index)
        return GraphWindow(index=index, start=start, end=end, node_fields=self.entity_fields,
                           node_kind=np.zeros(0, np.int8), node_value=np.zeros(0, object),
                           x=np.zeros((0, len(names)), np.float32), feature_names=names, log_scaled=self.log_scaled,
                           edge_index=np.zeros((2, 0), np.int64), edge_attr=np.zeros((0, 0), np.float32),
                           edge_feature_names=(), kind_features=kinds)


def flow_senders(window: GraphWindow) -> np.ndarray:
    """The (window-local) host node that sent each flow, in flow order."""
    src, dst = window.edge_index
    from_host = window.node_kind[src] == HOST
    sender = np.empty(window.num_nodes, np.int64)
    sender[dst[from_host]] = src[from_host]
    return sender[window.node_kind == FLOW]


def flow_sender_values(window: GraphWindow) -> np.ndarray:
    """Each flow's sender as an entity value (its address), in flow order: a host has a copy in
    each subgraph, its value is the same in all."""
    return window.node_value[flow_senders(window)]


def flow_receivers(window: GraphWindow) -> np.ndarray:
    """Per flow node, the host node it reached (other entries unused)."""
    src, dst = window.edge_index
    receiver = np.zeros(window.num_nodes, np.int64)
    from_flow = window.node_kind[src] == FLOW
    receiver[src[from_flow]] = dst[from_flow]
    return receiver


def _one_hot(events: "pd.DataFrame", field_name: str, values: list[str], rows: np.ndarray) -> list[np.ndarray]:
    """One column per listed value (compared case-insensitively) and one for any other value."""
    n = len(rows)
    if field_name not in events.columns:
        return [np.zeros(n) for _ in values] + [np.zeros(n)]
    codes, seen = arrays.codes(events[field_name])
    codes = codes[rows]
    wanted = {str(v).lower(): i for i, v in enumerate(values)}
    slot = np.array([wanted.get(str(v).lower(), len(values)) for v in seen] + [-1], dtype=np.int64)
    which = slot[codes]
    return [(which == i).astype(np.float64) for i in range(len(values) + 1)]


def _history_flags(events: "pd.DataFrame", field_name: str, rows: np.ndarray) -> list[np.ndarray]:
    """Whether each Zeek history letter occurs: upper case (originator), then lower case (responder)."""
    letters = list(HISTORY_FLAGS) + list(HISTORY_FLAGS.lower())
    if field_name not in events.columns:
        return [np.zeros(len(rows)) for _ in letters]
    codes, seen = arrays.codes(events[field_name])
    table = np.array([[float(c in str(v)) for c in letters] for v in seen] + [[0.0] * len(letters)])
    flags = table[codes[rows]]
    return [flags[:, i] for i in range(len(letters))]
