"""The `temporal` builder: a window's host graph whose edges are timed events (for `cat_gnn`).

Nodes are hosts: an address is one node whether it sends or receives. Every event is one
directed edge, sender -> receiver, with the seconds since the window's start in `edge_time`
(temporal attention embeds it) and log1p of the `numeric_fields` as edge features. Edges are
not merged: the order and rhythm of a host's connections (a burst of probes, a beacon every 60
seconds) is what a temporal model reads.

Node features describe each host in the window: flows sent and received, distinct peers each
way, distinct destination ports it contacted, bytes each way, the share of the window its
activity spans, and whether the address is private.

With `label_field` set, a host is labeled by what it originates, as in the research: the attack
class of one of its malicious flows (from `class_field`, else 'malicious'), 'benign' when its
labeled flows are all benign, None when none of its flows is labeled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from ..lazy import lazy_import
from ..events import EVENT_ID, TIMESTAMP
from ..labeling import BENIGN, event_classes
from . import Evidence, GraphBuilder, GraphWindow, LabelParams, WindowGrid, arrays
from .bipartite import distinct_per_group, event_numbers, host_codes, host_nodes, windowed_rows

np = lazy_import("numpy")

if TYPE_CHECKING:
    import pandas as pd

NODE_FEATURES = ("flows_out", "flows_in", "peers_out", "peers_in", "ports_out", "bytes_out", "bytes_in",
                 "active_share", "private")
LOG_SCALED = frozenset(NODE_FEATURES[:7])  # counts and bytes; the share and the private flag are not


class TemporalGraphBuilder(GraphBuilder):
    class Params(LabelParams):
        source_field: str = Field("source.ip", description="the sending host of an event")
        target_field: str = Field("destination.ip", description="the receiving host of an event")
        numeric_fields: list[str] = Field(default_factory=lambda: ["source.bytes", "destination.bytes", "event.duration"],
                                          description="numeric event fields, log1p-scaled, as edge features")
        bytes_field: str | None = Field("source.bytes", description="bytes sent by the originator (node features)")
        port_field: str | None = Field("destination.port", description="distinct destination ports per sender")
        class_field: str | None = Field(None, description="event field naming the attack class")

    @property
    def entity_fields(self) -> tuple[str, ...]:
        return (self.params.source_field,)

    def build(self, events: "pd.DataFrame", grid: WindowGrid) -> list[GraphWindow]:
        p = self.params
        edge_names = tuple(p.numeric_fields)
        if len(events) == 0 or p.source_field not in events.columns or p.target_field not in events.columns:
            return [self._window(grid, i, *_nothing(len(edge_names))) for i in range(grid.count)]
        src_all, dst_all, hosts = host_codes(events, p.source_field, p.target_field)
        rows, window = windowed_rows(events, grid, [src_all, dst_all])
        src, dst, n = src_all[rows], dst_all[rows], len(rows)
        seconds = (arrays.nanoseconds(events[TIMESTAMP])[rows] - grid.start_ns - window * grid.size_ns) / 1e9

        src_node, dst_node, node_window, node_host = host_nodes(window, src, dst, len(hosts), grid.count)
        count = len(node_host)

        nbytes = event_numbers(events, p.bytes_field, rows, n)
        ports, port_values = arrays.small_int_codes(events[p.port_field]) if p.port_field in events.columns else (
            np.full(len(events), -1), np.zeros(0))
        edge_port = port_numbers(ports[rows], port_values)
        first = np.full(count, np.inf)
        last = np.full(count, -np.inf)
        for node in (src_node, dst_node):
            np.minimum.at(first, node, seconds)
            np.maximum.at(last, node, seconds)
        info = np.array([arrays.address_info(h, False) for h in hosts], dtype=np.float64).reshape(len(hosts), -1)
        x = arrays.stack32([
            np.log1p(np.bincount(src_node, minlength=count)), np.log1p(np.bincount(dst_node, minlength=count)),
            np.log1p(distinct_per_group(src_node, dst_node, count, count)),
            np.log1p(distinct_per_group(dst_node, src_node, count, count)),
            np.log1p(distinct_per_group(src_node, ports[rows], max(len(port_values), 1), count)),
            np.log1p(np.bincount(src_node, weights=nbytes, minlength=count)),
            np.log1p(np.bincount(dst_node, weights=nbytes, minlength=count)),
            (last - first) / grid.size.total_seconds() if count else np.zeros(0), info[node_host, 0] if count else np.zeros(0)])
        edge_attr = arrays.stack32([np.log1p(np.maximum(event_numbers(events, f, rows, n), 0)) for f in p.numeric_fields]) \
            if edge_names else np.zeros((n, 0), np.float32)
        node_label = self._node_labels(events, rows, src_node, dst_node, count)

        event_ids = events[EVENT_ID].to_numpy()[rows] if EVENT_ID in events.columns else rows.astype(str)
        evidence = Evidence(event_ids, np.arange(n), n)
        node_ptr = np.concatenate([[0], np.cumsum(np.bincount(node_window, minlength=grid.count))])
        edge_ptr = np.concatenate([[0], np.cumsum(np.bincount(window, minlength=grid.count))])
        values = hosts[node_host] if count else np.zeros(0, object)
        graphs = []
        for i in range(grid.count):
            n0, n1, m0, m1 = node_ptr[i], node_ptr[i + 1], edge_ptr[i], edge_ptr[i + 1]
            graphs.append(self._window(
                grid, i, np.zeros(n1 - n0, np.int8), values[n0:n1], x[n0:n1],
                np.vstack([src_node[m0:m1], dst_node[m0:m1]]) - n0, edge_attr[m0:m1],
                seconds[m0:m1].astype(np.float32), None if node_label is None else node_label[n0:n1],
                evidence, int(m0), edge_port[m0:m1]))
        return graphs

    def _node_labels(self, events: "pd.DataFrame", rows: np.ndarray, src_node: np.ndarray, dst_node: np.ndarray,
                     count: int) -> np.ndarray | None:
        p = self.params
        labels = event_classes(events, p.label_field, p.class_field, p.positive_values, rows)
        if labels is None:
            return None
        out = np.full(count, None, dtype=object)
        labeled = np.array([v is not None for v in labels], dtype=bool)
        out[src_node[labeled]] = BENIGN
        out[dst_node[labeled]] = BENIGN
        attack = labeled & np.array([v is not None and v != BENIGN for v in labels], dtype=bool)
        out[src_node[attack]] = labels[attack]  # a sender of several classes keeps one of them
        return out

    def _window(self, grid: WindowGrid, index: int, kind, values, x, edge_index, edge_attr, edge_time, node_label,
                evidence=None, offset: int = 0, edge_port=None) -> GraphWindow:
        start, end = grid.bounds(index)
        return GraphWindow(index=index, start=start, end=end, node_fields=self.entity_fields, node_kind=kind,
                           node_value=values, x=x, feature_names=NODE_FEATURES, log_scaled=LOG_SCALED, edge_index=edge_index,
                           edge_attr=edge_attr, edge_feature_names=tuple(self.params.numeric_fields),
                           num_events=edge_index.shape[1], evidence=evidence, edge_offset=offset,
                           node_label=node_label, edge_time=edge_time,
                           edge_port=np.full(len(edge_time), -1, np.int64) if edge_port is None else edge_port)


def port_numbers(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Port numbers from port codes (-1, and values that are not numbers, become -1)."""
    def number(value) -> int:
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return -1

    numbers = np.array([number(v) for v in values] + [-1], dtype=np.int64)
    return numbers[codes]  # code -1 reads the appended -1


def _nothing(edge_features: int) -> tuple:
    return (np.zeros(0, np.int8), np.zeros(0, object), np.zeros((0, len(NODE_FEATURES)), np.float32),
            np.zeros((2, 0), np.int64), np.zeros((0, edge_features), np.float32), np.zeros(0, np.float32), None)
