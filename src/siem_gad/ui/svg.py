"""Pictures drawn on the server as inline SVG: no JavaScript, nothing fetched, and every value
taken from events escaped (entity names are attacker-controlled).

- `evidence_graph_svg`: an alert's neighbourhood (`triage/neighbourhood.py`): the alerted
  entities in the middle, their peers on a ring, colour by entity kind, unusual links in red
  and thick, node size by the explanation's weight (or the detector's score, or degree).
- `timeline_svg`: one detector's score of an entity per window, its threshold dashed, the
  windows that alerted as red dots.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Sequence

from markupsafe import Markup, escape

KIND_COLOURS = {"ip": "#2f6db5", "user": "#2e8b57", "host": "#d2791d"}
OTHER_COLOUR = "#7a6fa8"
UNUSUAL = "#c62828"
USUAL = "#9aa5b1"


def _label(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def node_layout(count: int, centre: int, width: float, height: float) -> list[tuple[float, float]]:
    """Positions: the `centre` alerted nodes side by side in the middle, the rest on a ring."""
    cx, cy = width / 2, height / 2
    spots = [(cx + (i - (centre - 1) / 2) * 130, cy) for i in range(centre)]
    ring = count - centre
    radius_x, radius_y = width / 2 - 110, height / 2 - 50
    for i in range(ring):
        angle = -math.pi / 2 + 2 * math.pi * i / max(ring, 1)
        spots.append((cx + radius_x * math.cos(angle), cy + radius_y * math.sin(angle)))
    return spots


def evidence_graph_svg(graph: dict[str, Any], width: int = 760, height: int = 520) -> Markup:
    nodes, edges = graph.get("nodes", []), graph.get("edges", [])
    if not nodes:
        return Markup('<p class="muted">No graph was kept for this alert.</p>')
    centre = sum(1 for n in nodes if n.get("role") == "alerted")
    spots = node_layout(len(nodes), centre, width, height)
    weights = [abs(float(n["weight"])) for n in nodes if n.get("weight") is not None]
    top_weight = max(weights, default=0.0) or 1.0
    top_degree = max((int(n.get("degree") or 1) for n in nodes), default=1)
    top_events = max((int(e.get("events") or 1) for e in edges), default=1)
    parts = [f'<svg class="evidence-graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="100%" role="img" aria-label="evidence graph">']
    for edge in sorted(edges, key=lambda e: bool(e.get("unusual"))):  # unusual links drawn on top
        (x1, y1), (x2, y2) = spots[edge["a"]], spots[edge["b"]]
        unusual = bool(edge.get("unusual"))
        stroke = 1.2 + 3.0 * math.log1p(int(edge.get("events") or 1)) / math.log1p(top_events)
        a, b = nodes[edge["a"]], nodes[edge["b"]]
        title = f"{a['value']} — {b['value']}: {edge.get('events', 0)} event(s)"
        if edge.get("score") is not None:
            title += f", score {edge['score']:.4g}"
        parts.append(
            f'<line class="edge{" unusual" if unusual else ""}" data-unusual="{str(unusual).lower()}" '
            f'data-a="{escape(a["value"])}" data-b="{escape(b["value"])}" x1="{x1:.1f}" y1="{y1:.1f}" '
            f'x2="{x2:.1f}" y2="{y2:.1f}" stroke="{UNUSUAL if unusual else USUAL}" '
            f'stroke-width="{stroke + (1.5 if unusual else 0):.2f}"><title>{escape(title)}</title></line>')
    for node, (x, y) in zip(nodes, spots):
        alerted = node.get("role") == "alerted"
        if node.get("weight") is not None:
            size = abs(float(node["weight"])) / top_weight
        else:
            size = math.log1p(int(node.get("degree") or 1)) / math.log1p(top_degree)
        radius = 9 + 13 * size + (5 if alerted else 0)
        colour = KIND_COLOURS.get(node.get("kind", ""), OTHER_COLOUR)
        title = f"{node['field']} {node['value']} (degree {node.get('degree', 0)}"
        title += f", score {node['score']:.4g})" if node.get("score") is not None else ")"
        if node.get("weight") is not None:
            title += f" — explanation weight {float(node['weight']):+.3g}"
        parts.append(
            f'<g class="node{" alerted" if alerted else ""}" data-role="{escape(node.get("role", ""))}" '
            f'data-kind="{escape(node.get("kind", ""))}" data-entity="{escape(node["value"])}">'
            f'<title>{escape(title)}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{colour}" '
            f'stroke="{"#111" if alerted else "#fff"}" stroke-width="{3 if alerted else 1.5}"/>'
            f'<text x="{x:.1f}" y="{y + radius + 14:.1f}" text-anchor="middle">{escape(_label(str(node["value"])))}</text>'
            f'</g>')
    legend = [("ip", KIND_COLOURS["ip"]), ("user", KIND_COLOURS["user"]), ("host", KIND_COLOURS["host"]),
              ("other", OTHER_COLOUR)]
    for i, (name, colour) in enumerate(legend):
        parts.append(f'<g class="legend"><circle cx="{16 + 70 * i}" cy="16" r="6" fill="{colour}"/>'
                     f'<text x="{26 + 70 * i}" y="20">{name}</text></g>')
    parts.append(f'<g class="legend"><line x1="{300}" y1="16" x2="{330}" y2="16" stroke="{UNUSUAL}" stroke-width="4"/>'
                 f'<text x="336" y="20">unusual link</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def timeline_svg(times: Sequence[datetime], scores: Sequence[float], thresholds: Sequence[float],
                 alerted: Sequence[bool], width: int = 760, height: int = 180) -> Markup:
    if not times:
        return Markup('<p class="muted">No scores recorded.</p>')
    left, right, top, bottom = 64, 16, 12, 28
    t0, t1 = times[0].timestamp(), times[-1].timestamp()
    span = (t1 - t0) or 1.0
    values = [*scores, *thresholds]
    low, high = min(values), max(values)
    if high == low:
        high, low = high + 1, low - 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad

    def x(t: datetime) -> float:
        return left + (width - left - right) * ((t.timestamp() - t0) / span if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - low) / (high - low))

    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, scores))
    bar = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, thresholds))
    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="score per window">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             f'fill="#fafbfc" stroke="#d0d7de"/>',
             f'<polyline class="threshold" points="{bar}" fill="none" stroke="#555" stroke-dasharray="5,4"/>',
             f'<polyline class="score" points="{line}" fill="none" stroke="#2f6db5" stroke-width="2"/>']
    for t, v, hit in zip(times, scores, alerted):
        if hit:
            parts.append(f'<circle class="alerted" cx="{x(t):.1f}" cy="{y(v):.1f}" r="4.5" fill="{UNUSUAL}">'
                         f'<title>{escape(t.isoformat())}: {v:.4g}</title></circle>')
    parts += [f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{high - pad:.3g}</text>',
              f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">{low + pad:.3g}</text>',
              f'<text x="{left}" y="{height - 8}">{escape(times[0].strftime("%Y-%m-%d %H:%M"))}</text>',
              f'<text x="{width - right}" y="{height - 8}" text-anchor="end">'
              f'{escape(times[-1].strftime("%Y-%m-%d %H:%M"))}</text>', "</svg>"]
    return Markup("".join(parts))
