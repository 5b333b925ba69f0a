"""Entity score history: what an entity's timeline (`siem-gad ui`) draws.

Alerts only say when a score crossed the threshold; an analyst also wants to see how the score
moved before and after. Keeping every entity's score in every window would grow without bound
(thousands of nodes an hour), so the book keeps, per job and detector:

- every window-level score (one per window, under the entity `WINDOW_ENTITY`);
- the score in every window of the pass's batch of each entity that alerted in it (for any
  detector of the job: the entity a window-level alert names is kept too);
- the score of every *watched* entity (one that alerted within `WATCH` before the batch) in
  every window it appears in, so the timeline goes on after an alert.

An edge-level detector's score of an entity is the highest score of the edges it has in that
window. Rows older than `RETENTION` before the newest window are dropped. Rows are keyed by
(job, detector, entity, window start) and written in the pass's commit, so a repeated pass
writes the same rows again, never twice.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable

from ..timeutil import isoformat, parse_time
from .related import entity_key

if TYPE_CHECKING:
    import numpy as np

    from ..graphs import GraphWindow

WINDOW_ENTITY = "*"
WATCH = timedelta(days=7)
RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class ScorePoint:
    job: str
    detector: str
    entity: str  # entity key (`ip:10.0.0.5`), or WINDOW_ENTITY
    window_start: datetime
    score: float
    threshold: float
    alerted: bool


def entity_scores(window: "GraphWindow", level: str, scores: "np.ndarray", keep: set[str] | None = None) -> dict[str, float]:
    """{entity key: score} of a node- or edge-level detector's scores of one window; with
    `keep`, only of those entities."""
    import numpy as np

    values = np.nan_to_num(np.asarray(scores, dtype=np.float64).ravel(), nan=-np.inf)
    if level == "edge":
        per_node = np.full(window.num_nodes, -np.inf)
        if window.num_edges and len(values):
            np.maximum.at(per_node, window.edge_index[0, : len(values)], values)
            np.maximum.at(per_node, window.edge_index[1, : len(values)], values)
        values = per_node
    nodes = np.flatnonzero(np.isfinite(values[: window.num_nodes]))
    prefixes = np.array([entity_key(field, "") for field in window.node_fields], dtype=object)
    keys = prefixes[np.asarray(window.node_kind)[nodes]] + np.asarray(window.node_value)[nodes].astype(str).astype(object)
    out: dict[str, float] = {}
    for key, score in zip(keys.tolist(), values[nodes].tolist()):
        if (keep is None or key in keep) and score > out.get(key, -np.inf):
            out[key] = score
    return out


def batch_points(job: str, detector: str, level: str, windows: list["GraphWindow"], scores: list["np.ndarray"],
                 threshold: float, alerted: set[tuple[datetime, str]], keep: set[str]) -> list[ScorePoint]:
    """The points of one detector's scores of a batch (see the module docstring): `alerted`
    holds (window start, entity key) of this detector's alerts in the batch; `keep`, the
    entities to record: the watched ones and those any detector of the job alerted on."""
    import numpy as np

    if level == "window":
        return [ScorePoint(job, detector, WINDOW_ENTITY, w.start, float(np.asarray(s, dtype=np.float64).ravel()[0]),
                           threshold, any(start == w.start for start, _ in alerted))
                for w, s in zip(windows, scores) if np.size(s) and np.isfinite(np.asarray(s, dtype=np.float64).ravel()[0])]
    if not keep:
        return []
    points = []
    for window, values in zip(windows, scores):
        for key, score in entity_scores(window, level, values, keep).items():
            points.append(ScorePoint(job, detector, key, window.start, score, threshold, (window.start, key) in alerted))
    return points


def watched_entities(db: sqlite3.Connection, job: str, before: datetime) -> set[str]:
    rows = db.execute("SELECT DISTINCT entity FROM entity_scores WHERE job = ? AND alerted = 1 AND window_start >= ? "
                      "AND entity != ?", (job, isoformat(before - WATCH), WINDOW_ENTITY))
    return {entity for entity, in rows}


def record_points(db: sqlite3.Connection, points: Iterable[ScorePoint]) -> None:
    points = list(points)
    db.executemany(
        "INSERT INTO entity_scores (job, detector, entity, window_start, score, threshold, alerted) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job, detector, entity, window_start) DO UPDATE SET "
        "score = excluded.score, threshold = excluded.threshold, alerted = max(alerted, excluded.alerted)",
        [(p.job, p.detector, p.entity, isoformat(p.window_start), p.score, p.threshold, int(p.alerted)) for p in points])
    if points:
        newest = max(p.window_start for p in points)
        db.execute("DELETE FROM entity_scores WHERE window_start < ?", (isoformat(newest - RETENTION),))


def timeline(db: sqlite3.Connection, entity: str, jobs: Iterable[str] = ()) -> list[ScorePoint]:
    """The entity's points, and the window scores of `jobs` and of the jobs it has points in,
    by job and detector, oldest first."""
    jobs = sorted(set(jobs))
    rows = db.execute(
        "SELECT job, detector, entity, window_start, score, threshold, alerted FROM entity_scores "
        "WHERE entity = ? OR (entity = ? AND (job IN (SELECT job FROM entity_scores WHERE entity = ?) "
        f"OR job IN ({', '.join('?' * len(jobs)) or 'NULL'}))) ORDER BY job, detector, window_start",
        (entity, WINDOW_ENTITY, entity, *jobs)).fetchall()
    return [ScorePoint(job, detector, key, parse_time(start), score, threshold, bool(alerted))
            for job, detector, key, start, score, threshold, alerted in rows]
