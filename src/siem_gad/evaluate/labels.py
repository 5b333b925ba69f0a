"""Labels at a detector's level, from labeled events.

An item is positive when any of its events is: a window when any event in it is; an
entity-window (node) when any event of that window has the entity's value in the entity's
field; an edge when any event of that window joins its two entities. Each positive item also
carries the label values of its positive events, which makes incidents (one label value, e.g.
`port_scan`) traceable to the items and alerts that caught them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable

from ..labeling import positive_mask

if TYPE_CHECKING:
    import pandas as pd

    from ..graphs import GraphWindow


@dataclass
class LabelIndex:
    """Positive windows, entity-windows and edges, with the label values behind each."""

    windows: dict[int, set[str]] = field(default_factory=dict)
    nodes: dict[tuple[int, str, str], set[str]] = field(default_factory=dict)
    edges: dict[tuple[int, str, str], set[str]] = field(default_factory=dict)
    first_seen: dict[str, datetime] = field(default_factory=dict)  # incident (label value) -> first event

    @classmethod
    def build(cls, events: "pd.DataFrame", label_field: str, positives: Iterable[str] | None,
              start: datetime, window: timedelta, entity_fields: tuple[str, ...]) -> "LabelIndex":
        import pandas as pd

        index = cls()
        mask = positive_mask(events[label_field], positives)
        hits = events.loc[mask]
        if hits.empty:
            return index
        numbers = ((hits["@timestamp"] - pd.Timestamp(start)) // pd.Timedelta(window)).to_numpy()
        labels = hits[label_field].astype(str).to_numpy()
        columns = {f: hits[f].astype(object).to_numpy() for f in entity_fields if f in hits.columns}
        for row, (number, label) in enumerate(zip(numbers, labels)):
            number = int(number)
            index.windows.setdefault(number, set()).add(label)
            values = {f: col[row] for f, col in columns.items() if not pd.isna(col[row])}
            for f, value in values.items():
                index.nodes.setdefault((number, f, str(value)), set()).add(label)
            if len(entity_fields) >= 2 and entity_fields[0] in values and entity_fields[1] in values:
                key = (number, str(values[entity_fields[0]]), str(values[entity_fields[1]]))
                index.edges.setdefault(key, set()).add(label)
        for label, first in hits.groupby(hits[label_field].astype(str))["@timestamp"].min().items():
            index.first_seen[str(label)] = first.to_pydatetime(warn=False)
        return index

    def item_labels(self, window: "GraphWindow", level: str) -> list[set[str]]:
        """The label values behind each item of `window` at `level` (empty: negative)."""
        if level == "window":
            return [self.windows.get(window.index, set())]
        if level == "node":
            return [self.nodes.get((window.index, *next(iter(window.entity(n).items()))), set())
                    for n in range(window.num_nodes)]
        if level == "edge":
            src, dst = window.edge_index
            return [self.edges.get((window.index, str(window.node_value[a]), str(window.node_value[b])), set())
                    for a, b in zip(src, dst)]
        raise ValueError(f"evaluate joins labels at window, node and edge level, not {level!r}")
