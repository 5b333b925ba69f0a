"""Entity risk: every alert about an entity adds to its risk, and the contribution halves each
`incidents.entity_half_life`, so an entity that alerts again and again climbs, one that went
quiet fades. On the 0-100 scale of alerts: the noisy-OR of the decayed alert risks, so one alert
at 80 an hour ago gives about 80, two give about 96, and nothing exceeds 100."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..timeutil import parse_time


@dataclass
class EntityRisk:
    entity: str  # the entity key, e.g. ip:10.0.0.5
    risk: float
    alerts: int
    incidents: int
    last_seen: datetime
    rules: list[str]


def entity_risks(db: sqlite3.Connection, half_life: timedelta, at: datetime | None = None) -> list[EntityRisk]:
    """Every entity named by an alert, riskiest first, decayed to `at` (default: the newest alert)."""
    rows = db.execute("SELECT l.key, a.t, a.risk, a.incident_id, l.rule_id, a.record FROM incident_links l "
                      "JOIN incident_alerts a ON a.alert_id = l.alert_id WHERE l.role = 'primary'").fetchall()
    if not rows:
        return []
    ends = [epoch_end(r[5]) for r in rows]
    now = at.timestamp() if at else max(ends)
    seconds = half_life.total_seconds()
    grouped: dict[str, dict] = {}
    for (key, t, risk, incident, rule, _), end in zip(rows, ends):
        g = grouped.setdefault(key, {"miss": 1.0, "alerts": 0, "incidents": set(), "last": 0, "rules": set()})
        age = max(0.0, now - end)  # from the end of the alert's window
        g["miss"] *= 1.0 - min(max(risk, 0.0), 100.0) / 100.0 * 0.5 ** (age / seconds)
        g["alerts"] += 1
        g["incidents"].add(incident)
        g["last"] = max(g["last"], t)
        g["rules"].add(rule)
    out = [EntityRisk(key, round(100.0 * (1.0 - g["miss"]), 2), g["alerts"], len(g["incidents"]),
                      datetime.fromtimestamp(g["last"], tz=timezone.utc), sorted(g["rules"])) for key, g in grouped.items()]
    return sorted(out, key=lambda r: (-r.risk, r.entity))


def epoch_end(record: str) -> float:
    return parse_time(json.loads(record)["end"]).timestamp()
