"""Graph builders turn a batch of events into one graph per time window.

A `GraphWindow` is one window's graph as numpy arrays: node entities and features, edges and
edge features, and a lazy link from each edge back to the ids of the events behind it (the
evidence an alert points at). Its node features double as the per-(window, entity) feature
table that tabular detectors consume. `to_pyg()` converts it to a PyG `Data` on demand, so
building graphs never imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any


from pydantic import Field

from ..lazy import lazy_import
from ..components import Component, Params


np = lazy_import("numpy")

# When a flow happened, not what it did: builders that add these features name them so, and
# novelty (`detectors.novelty`) leaves them out, since a new network's hours are no attack.
TIME_OF_DAY_FEATURES = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")

if TYPE_CHECKING:
    import pandas as pd


class LabelParams(Params):
    """The label keys every graph builder shares (read as in `siem_gad.labeling`)."""

    label_field: str | None = Field(None, description="event field holding the benign/attack label: training labels "
                                    "for the supervised detectors and deep_sad, known-bad links for rare_links")
    positive_values: list[str] | None = Field(None, description="label values that mean an attack (default: anything "
                                              "but benign, normal, -, 0, false, empty)")


@dataclass(frozen=True)
class WindowGrid:
    """`count` consecutive windows of length `size` from `start`."""

    start: datetime
    size: timedelta
    count: int

    def bounds(self, index: int) -> tuple[datetime, datetime]:
        begin = self.start + index * self.size
        return begin, begin + self.size

    @property
    def end(self) -> datetime:
        return self.start + self.count * self.size

    @property
    def start_ns(self) -> int:
        """The start as epoch nanoseconds, as event timestamps are compared in the builders."""
        import pandas as pd

        return pd.Timestamp(self.start).value

    @property
    def size_ns(self) -> int:
        return self.size // timedelta(microseconds=1) * 1000


class Evidence:
    """Event ids behind each edge of a batch, indexed on first use (most edges never alert).

    `event_edge[i]` is the edge of event `event_ids[i]`, or -1 for an event on no edge.
    `event_ids` is a numpy array or a pandas extension array (Arrow strings): anything that
    takes an array of positions.
    """

    def __init__(self, event_ids: Any, event_edge: np.ndarray, num_edges: int):
        self.event_ids = event_ids
        self.event_edge = event_edge
        self.num_edges = num_edges
        self._order: np.ndarray | None = None
        self._ptr: np.ndarray | None = None

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._order is None:
            order = np.argsort(self.event_edge, kind="stable")
            on_edges = self.event_edge[self.event_edge >= 0]
            self._order = order[len(order) - len(on_edges):]  # the -1s sort first
            self._ptr = np.concatenate([[0], np.cumsum(np.bincount(on_edges, minlength=self.num_edges))])
        return self._order, self._ptr  # type: ignore[return-value]

    def for_edges(self, edges: np.ndarray, limit: int) -> tuple[list[str], int]:
        """Up to `limit` event ids behind the given (batch-global) edges, and their total count."""
        order, ptr = self._index()
        edges = np.asarray(edges, dtype=np.int64)
        total = int((ptr[edges + 1] - ptr[edges]).sum())
        ids: list[str] = []
        for edge in edges:
            if len(ids) >= limit:
                break
            rows = order[ptr[edge]:ptr[edge + 1]]
            ids.extend(str(v) for v in self.event_ids[rows[: limit - len(ids)]])
        return ids, total


@dataclass
class GraphWindow:
    index: int
    start: datetime
    end: datetime
    node_fields: tuple[str, ...]
    node_kind: np.ndarray  # int8 index into node_fields
    node_value: np.ndarray  # object: the entity value
    x: np.ndarray  # float32 [num_nodes, num_features]
    feature_names: tuple[str, ...]
    edge_index: np.ndarray  # int64 [2, num_edges], local node indices
    edge_attr: np.ndarray  # float32 [num_edges, num_edge_features]
    edge_feature_names: tuple[str, ...]
    num_events: int = 0
    evidence: Evidence | None = field(default=None, repr=False)
    edge_offset: int = 0  # batch-global id of this window's first edge
    # Supervised training: per node 'benign', an attack class, or None (unlabeled); see labeling.py
    node_label: np.ndarray | None = field(default=None, repr=False)
    # Heterogeneous graphs: the columns of `x` that belong to each node kind (others are 0)
    kind_features: tuple[tuple[int, ...], ...] | None = None
    # Temporal graphs: seconds from the window's start to each edge's event
    edge_time: np.ndarray | None = field(default=None, repr=False)
    # Temporal graphs: the destination port of each edge's event (-1: none), for `beacon`
    edge_port: np.ndarray | None = field(default=None, repr=False)
    # The node features the builder log1p-scaled (explanations show them back in counts)
    log_scaled: frozenset[str] = frozenset()
    # Other entity fields of each node's events (a builder's `related_fields`): local node ->
    # [(field, value, hub)], most events first; they fill alerts' related.* (triage/related.py)
    node_related: dict[int, list[tuple[str, str, bool]]] | None = field(default=None, repr=False)
    # Labeled history (a builder's `label_field`): per edge, how many of its events are labeled
    # attacks; None where the events carry no label
    edge_attacks: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_nodes(self) -> int:
        return len(self.node_value)

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def entity(self, node: int) -> dict[str, str]:
        return {self.node_fields[int(self.node_kind[node])]: str(self.node_value[node])}

    def node_edges(self, node: int) -> np.ndarray:
        return np.flatnonzero((self.edge_index[0] == node) | (self.edge_index[1] == node))

    def edge_evidence(self, edges: np.ndarray, limit: int = 20) -> tuple[list[str], int]:
        if self.evidence is None or len(edges) == 0:
            return [], 0
        return self.evidence.for_edges(np.asarray(edges) + self.edge_offset, limit)

    def node_evidence(self, node: int, limit: int = 20) -> tuple[list[str], int]:
        return self.edge_evidence(self.node_edges(node), limit)

    def node_table(self) -> "pd.DataFrame":
        """One row per entity of the window with its features: the tabular detectors' input."""
        import pandas as pd

        table = pd.DataFrame(self.x, columns=list(self.feature_names))
        table.insert(0, "entity.field", np.asarray(self.node_fields, dtype=object)[self.node_kind])
        table.insert(1, "entity.value", self.node_value)
        table.insert(0, "window.start", self.start)
        return table

    def kind_x(self, kind: int) -> np.ndarray:
        """Features of the nodes of one kind, restricted to that kind's columns."""
        rows = self.node_kind == kind
        if self.kind_features is None:
            return self.x[rows]
        return self.x[np.ix_(rows, np.asarray(self.kind_features[kind], dtype=np.int64))]

    def kind_feature_names(self, kind: int) -> tuple[str, ...]:
        """The names of `kind_x(kind)`'s columns."""
        if self.kind_features is None:
            return tuple(self.feature_names)
        return tuple(self.feature_names[i] for i in self.kind_features[kind])

    def kind_local(self) -> np.ndarray:
        """Each node's index among the nodes of its own kind (heterogeneous message passing)."""
        local = np.empty(self.num_nodes, dtype=np.int64)
        for kind in range(len(self.node_fields)):
            rows = self.node_kind == kind
            local[rows] = np.arange(int(rows.sum()))
        return local

    def to_pyg(self) -> Any:
        """The window as a torch_geometric `Data` (imports torch on first use)."""
        import torch
        from torch_geometric.data import Data

        return Data(
            x=torch.from_numpy(np.ascontiguousarray(self.x)),
            edge_index=torch.from_numpy(np.ascontiguousarray(self.edge_index)),
            edge_attr=torch.from_numpy(np.ascontiguousarray(self.edge_attr)),
            num_nodes=self.num_nodes,
        )


def require_finite(rows: "np.ndarray", names: "tuple[str, ...] | list[str]", where: str) -> None:
    """Raise a ValueError naming the first feature (column) of `rows` that holds NaN or an
    infinity, how many rows do, and `where` they came from.

    A non-finite feature does not fail anywhere by itself: a model trained on it scores NaN for
    every row, and NaN never crosses a threshold, so detection would stop without a word."""
    finite = np.isfinite(rows)
    if finite.all():
        return
    bad_rows = ~finite.all(axis=1)
    column = int(np.flatnonzero(~finite.all(axis=0))[0])
    name = names[column] if column < len(names) else f"column {column}"
    raise ValueError(f"{where}: {int(bad_rows.sum())} of {len(rows)} rows have a feature that is not a finite number, "
                     f"first '{name}' (value {rows[np.flatnonzero(~finite[:, column])[0], column]}); missing "
                     "values must be filled (the built-in builders count them as 0)")


class GraphBuilder(Component, ABC):
    """Base class of graph builders."""

    worker_imports = ("pandas",)

    @abstractmethod
    def build(self, events: "pd.DataFrame", grid: WindowGrid) -> list[GraphWindow]:
        """One GraphWindow per window of `grid` (empty windows included, with no nodes)."""

    def checked_build(self, events: "pd.DataFrame", grid: WindowGrid) -> list[GraphWindow]:
        """`build`, with every window's node and edge features checked to be finite numbers
        (`require_finite`): what the pipeline calls, so a plugin builder's NaN is an error
        naming the builder, window and feature instead of models that silently score NaN."""
        windows = self.build(events, grid)
        for window in windows:
            where = f"graph builder {type(self).__name__} (job {self.name}), window {window.start.isoformat()}"
            require_finite(window.x, window.feature_names, where)
            require_finite(window.edge_attr, window.edge_feature_names, where + " (edge features)")
        return windows

    @property
    def entity_fields(self) -> tuple[str, ...]:
        """The event fields whose values become nodes (used to name alert entities)."""
        return ()
