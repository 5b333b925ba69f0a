"""The `profile` builder: one row per (window, source) with the features used by Deep SAD on
IDS and firewall logs, for the tabular detectors (`vae`, `aegmm`, `vaegmm`, `deep_sad`, `iforest`).

Per source entity and window: events, distinct destinations, distinct destination ports,
failure ratio and bytes (counts capped at `cap`, then log1p), and one column per destination
port bucket: the well-known `ports` listed in the config, one bucket for every ephemeral port
(>= `ephemeral_from`, folded so that random client ports do not each become a feature), and
one for the rest. Bucket counts are weighted by their inverse document frequency among the
window's sources, log((1 + sources) / (1 + sources using the bucket)) + 1, so a port every
host talks to weighs little and a port one host probes weighs a lot. When the events carry
`rule_field` (an IDS signature or firewall rule id), its distinct values per source are a
feature too.

With `label_field` set, each row carries a label for semi-supervised training (`deep_sad`):
'malicious' when any of its events is labeled as an attack, 'benign' when all of them are
labeled benign, None (unlabeled) otherwise, read as in `siem_gad.labeling`.

The window holds only source nodes. Each has one self-loop edge that carries its events, so
alerts point at their evidence like those on `bipartite` graphs; graph detectors gain nothing
from this builder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from ..events import EVENT_ID
from ..labeling import BENIGN, MALICIOUS, event_classes
from . import Evidence, GraphBuilder, GraphWindow, LabelParams, WindowGrid, arrays
from .bipartite import distinct_per_group, event_failures, event_numbers, window_numbers

if TYPE_CHECKING:
    import pandas as pd

WELL_KNOWN_PORTS = [21, 22, 23, 25, 53, 80, 110, 123, 135, 139, 143, 161, 389, 443, 445, 1433, 3306, 3389, 5432,
                    5900, 8080, 8443]


class ProfileGraphBuilder(GraphBuilder):
    class Params(LabelParams):
        source_field: str = Field("source.ip", description="the entity a row describes")
        target_field: str = Field("destination.ip", description="counted as distinct destinations")
        port_field: str = Field("destination.port", description="destination ports, bucketed and IDF-weighted")
        bytes_field: str | None = "network.bytes"
        outcome_field: str | None = "event.outcome"
        rule_field: str | None = Field("rule.id", description="IDS signature or rule id, when present")
        ports: list[int] = Field(default_factory=lambda: list(WELL_KNOWN_PORTS), description="ports kept as features")
        ephemeral_from: int = Field(49152, ge=1024, le=65535, description="ports from here on share one bucket")
        cap: int = Field(1000, ge=1, description="counts are capped here before log1p")

    @property
    def entity_fields(self) -> tuple[str, ...]:
        return (self.params.source_field,)

    @property
    def feature_names(self) -> tuple[str, ...]:
        buckets = [f"port {p}" for p in self.params.ports] + ["port ephemeral", "port other"]
        return ("events", "destinations", "ports", "failure_ratio", "bytes", "rules", *buckets)

    def build(self, events: "pd.DataFrame", grid: WindowGrid) -> list[GraphWindow]:
        p = self.params
        if len(events) == 0 or p.source_field not in events.columns:
            return [self._window(grid, i, *self._nothing()) for i in range(grid.count)]
        window = window_numbers(events, grid)
        src, src_values = arrays.codes(events[p.source_field])
        keep = np.flatnonzero((src >= 0) & (window >= 0) & (window < grid.count))
        keep = keep[np.argsort(window[keep], kind="stable")]
        window, src = window[keep], src[keep]
        n_src = max(len(src_values), 1)
        group, group_key = arrays.group_ids(window * n_src + src, grid.count * n_src) if len(keep) else (
            np.zeros(0, np.int64), np.zeros(0, np.int64))
        groups = len(group_key)
        g_window, g_src = np.divmod(group_key, n_src)

        count = np.bincount(group, minlength=groups).astype(np.float64)
        cap = lambda values: np.log1p(np.minimum(values, p.cap))  # noqa: E731
        columns = [cap(count), cap(self._distinct(events, p.target_field, keep, group, groups)),
                   cap(self._distinct(events, p.port_field, keep, group, groups)),
                   np.bincount(group, weights=event_failures(events, p.outcome_field, keep, len(keep)),
                               minlength=groups) / np.maximum(count, 1),
                   np.log1p(np.bincount(group, weights=event_numbers(events, p.bytes_field, keep, len(keep)),
                                        minlength=groups)),
                   cap(self._distinct(events, p.rule_field, keep, group, groups))]
        buckets = self._port_buckets(events, keep)
        width = len(p.ports) + 2
        per_bucket = np.bincount(group * width + buckets, minlength=groups * width).reshape(groups, width)
        # IDF among the sources of each window
        window_sources = np.bincount(g_window, minlength=grid.count).astype(np.float64)
        users = np.zeros((grid.count, width))
        np.add.at(users, g_window, (per_bucket > 0).astype(np.float64))
        idf = np.log((1 + window_sources[:, None]) / (1 + users)) + 1
        weighted = cap(per_bucket) * idf[g_window]
        x = np.column_stack([*columns, weighted]).astype(np.float32) if groups else np.zeros((0, 6 + width), np.float32)

        ids = events[EVENT_ID].to_numpy()[keep] if EVENT_ID in events.columns else keep.astype(str)
        evidence = Evidence(ids, group, groups)
        values = np.asarray(src_values, dtype=object)[g_src] if groups else np.zeros(0, object)
        ptr = np.concatenate([[0], np.cumsum(np.bincount(g_window, minlength=grid.count))])
        per_window = np.bincount(window, minlength=grid.count)
        labels = self._row_labels(events, keep, group, groups)
        return [self._window(grid, i, values[ptr[i]:ptr[i + 1]], x[ptr[i]:ptr[i + 1]], int(per_window[i]),
                             evidence, int(ptr[i]), None if labels is None else labels[ptr[i]:ptr[i + 1]])
                for i in range(grid.count)]

    def _row_labels(self, events: "pd.DataFrame", keep: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray | None:
        """Per row: 'malicious' if any event is an attack, 'benign' if every event is labeled
        benign, else None; None for all when the events have no label field."""
        p = self.params
        classes = event_classes(events, p.label_field, None, p.positive_values, keep)
        if classes is None:
            return None
        attacks = np.bincount(group, weights=(classes == MALICIOUS).astype(np.float64), minlength=groups)
        benign = np.bincount(group, weights=(classes == BENIGN).astype(np.float64), minlength=groups)
        count = np.bincount(group, minlength=groups)
        return np.where(attacks > 0, MALICIOUS, np.where(benign == count, BENIGN, None)).astype(object)

    # ------------------------------------------------------------------ columns
    @staticmethod
    def _distinct(events: "pd.DataFrame", column: str | None, keep: np.ndarray, group: np.ndarray,
                  groups: int) -> np.ndarray:
        if not column or column not in events.columns:
            return np.zeros(groups)
        codes, values = arrays.codes(events[column])
        return distinct_per_group(group, codes[keep], len(values), groups)

    def _port_buckets(self, events: "pd.DataFrame", keep: np.ndarray) -> np.ndarray:
        """Bucket of each event's port: index in `ports`, then ephemeral, then other (also missing)."""
        p = self.params
        other, ephemeral = len(p.ports) + 1, len(p.ports)
        if p.port_field not in events.columns:
            return np.full(len(keep), other)
        ports = np.nan_to_num(events[p.port_field].to_numpy(dtype=np.float64, na_value=-1.0)[keep], nan=-1).astype(np.int64)
        lookup = np.full(65536, other, dtype=np.int64)
        lookup[p.ephemeral_from:] = ephemeral
        for index, port in enumerate(p.ports):
            if 0 <= port < 65536:
                lookup[port] = index
        return np.where((ports >= 0) & (ports < 65536), lookup[np.clip(ports, 0, 65535)], other)

    # ------------------------------------------------------------------ windows
    def _nothing(self):
        return (np.zeros(0, object), np.zeros((0, len(self.feature_names)), np.float32), 0, None, 0)

    def _window(self, grid: WindowGrid, index: int, values: np.ndarray, x: np.ndarray, num_events: int,
                evidence: Evidence | None, offset: int, labels: np.ndarray | None = None) -> GraphWindow:
        start, end = grid.bounds(index)
        nodes = np.arange(len(values), dtype=np.int64)
        return GraphWindow(index=index, start=start, end=end, node_fields=self.entity_fields,
                           node_kind=np.zeros(len(values), np.int8), node_value=values, x=x,
                           feature_names=self.feature_names, log_scaled=frozenset(self.feature_names) - {"failure_ratio"},
                           edge_index=np.vstack([nodes, nodes]),
                           edge_attr=np.zeros((len(values), 1), np.float32), edge_feature_names=("self",),
                           num_events=num_events, evidence=evidence, edge_offset=offset, node_label=labels)
