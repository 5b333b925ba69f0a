"""The evidence graph of an alert: its entity's neighbourhood in the window that alerted.

A window's graph is gone once the pass ends, so the neighbourhood is cut out at detection
time and kept on the alert (`siem_gad.graph`, in `_source`, not indexed): the alerted nodes
(a node, an edge's two ends, or for a window-level alert the entity that moved the window
most), their peers joined by most events (at most `MAX_PEERS`), and every edge among them,
merged per pair of entities.

Which links are *unusual* is what the detector itself says, never a guess made later:

- an edge-level detector (`rare_links`, `beacon`) scored the edge at or above its threshold;
- a node-level detector scored the peer at or above its threshold too (a link between two
  anomalous entities);
- a window-level detector (`gcn_hmm`) named the peer among the entities that moved the
  window most (its explanation), with a positive weight.

Nodes carry the explanation's weight where a contributor names the entity, and the
detector's own score where it scores nodes, so the drawing (`ui/svg.py`) can size them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .related import alerted_nodes, entity_kind, peers

if TYPE_CHECKING:
    import numpy as np

    from ..detectors import Explanation
    from ..graphs import GraphWindow

MAX_PEERS = 24


def evidence_graph(window: "GraphWindow", explanation: "Explanation", level: str, item: int,
                   scores: "np.ndarray", threshold: float) -> dict[str, Any]:
    """The alert's neighbourhood as plain data: `nodes` (field, value, kind, role, score,
    weight, degree), `edges` (a, b: node positions; events; unusual; score) and `left_out`
    (peers not kept)."""
    import numpy as np

    centre = alerted_nodes(window, explanation, level, item)
    if not centre:
        return {"nodes": [], "edges": [], "left_out": 0}
    candidates: list[int] = []
    for node in centre:
        candidates.extend(p for p in peers(window, node) if p not in centre and p not in candidates)
    kept = centre + candidates[:MAX_PEERS]
    position = {node: n for n, node in enumerate(kept)}
    scores = np.asarray(scores, dtype=np.float64).ravel()
    contributors = {(str(c["name"]), str(c["value"])): float(c["weight"]) for c in explanation.contributors}
    degree = np.bincount(window.edge_index.ravel(), minlength=window.num_nodes) if window.num_edges else \
        np.zeros(window.num_nodes, dtype=np.int64)
    nodes = []
    for node in kept:
        (field, value), = window.entity(node).items()
        node_score = float(scores[node]) if level == "node" and node < len(scores) else None
        nodes.append({"field": field, "value": value, "kind": entity_kind(field),
                      "role": "alerted" if node in centre else "peer",
                      "score": None if node_score is None or not np.isfinite(node_score) else round(node_score, 6),
                      "weight": contributors.get((field, value)), "degree": int(degree[node])})
    edges = _merged_edges(window, position, level, item, scores, threshold, nodes, centre)
    return {"nodes": nodes, "edges": edges, "left_out": max(0, len(candidates) - MAX_PEERS)}


def _merged_edges(window: "GraphWindow", position: dict[int, int], level: str, item: int, scores: "np.ndarray",
                  threshold: float, nodes: list[dict], centre: list[int]) -> list[dict[str, Any]]:
    import numpy as np

    if not window.num_edges:
        return []
    kept = np.fromiter(position, dtype=np.int64)
    ends = window.edge_index
    inside = np.flatnonzero(np.isin(ends[0], kept) & np.isin(ends[1], kept) & (ends[0] != ends[1]))
    merged: dict[tuple[int, int], dict[str, Any]] = {}
    for edge in inside:
        a, b = sorted((position[int(ends[0, edge])], position[int(ends[1, edge])]))
        entry = merged.setdefault((a, b), {"a": a, "b": b, "events": 0, "unusual": False, "score": None})
        entry["events"] += 1
        if level == "edge" and edge < len(scores) and np.isfinite(scores[edge]):
            value = float(scores[edge])
            entry["score"] = round(max(value, entry["score"] if entry["score"] is not None else -np.inf), 6)
            entry["unusual"] = entry["unusual"] or value >= threshold or int(edge) == item
    for entry in merged.values():
        if level == "node":
            entry["unusual"] = all(n["score"] is not None and n["score"] >= threshold
                                   for n in (nodes[entry["a"]], nodes[entry["b"]]))
        elif level == "window":
            entry["unusual"] = all(nodes[end]["role"] == "alerted" or (nodes[end]["weight"] or 0.0) > 0
                                   for end in (entry["a"], entry["b"]))
    return sorted(merged.values(), key=lambda e: (e["a"], e["b"]))
