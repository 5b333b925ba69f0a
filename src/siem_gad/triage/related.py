"""The entities an alert touches besides its own, and which of them may link alerts.

An alert names its entity (a node, the two ends of an edge, or for a window-level alert the
entity that moved the window most). The entities it touches are its peers in that window's
graph: the other ends of its node's edges (for an edge alert, the edge's two ends), and the
other entity fields its events carry when the graph builder keeps them (`related_fields`:
the addresses a user logged on from and to), which is how an auth alert about a user meets a
network alert about an address. They go into the ECS `related.ip` / `related.user` /
`related.hosts` fields, and they link alerts into incidents (`incidents.py`), except for
hubs: an entity that a tenth or more of the window's entities touch (a domain controller, a
DNS server, a proxy) relates everything to everything and links nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..hubs import MAX_RELATED, hub_degree

if TYPE_CHECKING:
    from ..detectors import Explanation
    from ..graphs import GraphWindow

ECS_RELATED = {"ip": "ip", "user": "user", "host": "hosts"}


def entity_kind(field: str) -> str:
    """What sort of thing a field names, so that `source.ip` and `destination.ip` holding the
    same address are one entity: ip, user, host, or the field itself."""
    last = field.rsplit(".", 1)[-1]
    if last == "ip" or field.endswith("_ip") or field.endswith(".address"):
        return "ip"
    if field.startswith("user.") or field in ("user", "username"):
        return "user"
    if field.startswith("host.") or field in ("host", "hostname"):
        return "host"
    return field


def entity_key(field: str, value: str) -> str:
    """The key two alerts must share to be about the same entity: `ip:10.0.0.5`."""
    return f"{entity_kind(field)}:{value}"


@dataclass(frozen=True)
class Related:
    field: str
    value: str
    hub: bool = False

    @property
    def key(self) -> str:
        return entity_key(self.field, self.value)


def alerted_nodes(window: "GraphWindow", explanation: "Explanation", level: str, item: int) -> list[int]:
    """The window's nodes alert `item` is about: the node, an edge's two ends, or for a
    window-level alert the node of the entity that moved the window most."""
    if window.num_nodes == 0:
        return []
    if level == "node":
        return [item] if item < window.num_nodes else []
    if level == "edge":
        return list(dict.fromkeys(int(n) for n in window.edge_index[:, item])) if item < window.num_edges else []
    index = {(window.node_fields[int(k)], str(v)): n for n, (k, v) in enumerate(zip(window.node_kind, window.node_value))}
    return [index[(f, str(v))] for f, v in explanation.entity.items() if (f, str(v)) in index][:1]


def related_entities(window: "GraphWindow", explanation: "Explanation", level: str, item: int) -> list[Related]:
    """The entities alert `item` of `window` touches besides its own entity (see the module)."""
    import numpy as np

    own = {entity_key(f, v) for f, v in explanation.entity.items()}
    alerted = alerted_nodes(window, explanation, level, item)
    if not alerted:
        return []
    degree = np.bincount(window.edge_index.ravel(), minlength=window.num_nodes) if window.num_edges else \
        np.zeros(window.num_nodes, dtype=np.int64)
    bar = hub_degree(window.num_nodes)
    # an edge alert touches the edge's two ends; a node or window alert its node's peers
    nodes = alerted if level == "edge" else peers(window, alerted[0])
    out, seen = [], set(own)
    for node in alerted:  # the other entity fields of the alerted nodes' events (builder's related_fields)
        for field, value, hub in (window.node_related or {}).get(node, ()):
            related = Related(field, value, hub)
            if related.key not in seen:
                seen.add(related.key)
                out.append(related)
    carried = len(out)
    for node in nodes:
        (field, value), = window.entity(node).items()
        related = Related(field, value, bool(degree[node] >= bar))
        if related.key not in seen:
            seen.add(related.key)
            out.append(related)
        if len(out) - carried >= MAX_RELATED:
            break
    return out


def peers(window: "GraphWindow", node: int) -> list[int]:
    """The node's neighbours, those joined by most edges first (ties by node index)."""
    import numpy as np

    if node >= window.num_nodes or not window.num_edges:
        return []
    edges = window.node_edges(node)
    ends = window.edge_index[:, edges]
    others = np.where(ends[0] == node, ends[1], ends[0])
    others = others[others != node]
    if not len(others):
        return []
    values, counts = np.unique(others, return_counts=True)
    order = np.lexsort((values, -counts))
    return [int(v) for v in values[order]]


def ecs_related(entity: dict[str, str], related: list[Related]) -> dict[str, list[str]]:
    """The ECS `related` object of an alert: its own and its related entities, by kind."""
    out: dict[str, list[str]] = {}
    for field, value in [*entity.items(), *((r.field, r.value) for r in related)]:
        name = ECS_RELATED.get(entity_kind(field))
        if name and value not in out.setdefault(name, []):
            out[name].append(value)
    return {k: v for k, v in out.items() if v}
