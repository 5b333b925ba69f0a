"""Incidents: the alerts of one story, from any job and detector, as one document.

Two alerts belong to the same incident when their windows start within `horizon` of each
other and

1. they name the same entity (a `source.ip` of one may be the `destination.ip` of the other), or
2. their windows start at the same time and one's entity is among the entities the other
   touches (`related.py`): an edge between two anomalous entities in one window, say a
   scanner and the hosts that alerted for its probes (the edge is evidence of that window,
   not of the day), hubs included; or
3. they come from the same rule and touch the same entity that is no hub: the same behaviour
   against one target, say many internet addresses probing one SSH server.

Incidents are the connected components of that relation, so they depend only on which alerts
exist, not on the order in which jobs wrote them. A component is an `open` incident once its
combined risk reaches `open_at` (one high alert, or medium ones from rules that corroborate
each other: `combined_risk`); below that it is kept, and delivered, with status `watch`:
risk-based alerting, where weak signals wait in the index until more evidence about the same
story joins them, instead of each opening a ticket of its own. An incident's id is a hash of
its earliest alert (window start, then alert id); when a new alert joins two incidents, the
merged incident takes the id of the earlier one and the other is rewritten as `merged` into it.

Everything happens inside the transaction that commits the pass's checkpoint (`fold`), so an
incident changes exactly when its alerts are committed. Each change bumps the incident's
`revision`; sinks are sent every incident whose delivered revision is behind (after the
commit, and again at the next pass when a sink was down), always the whole document under
the same id, so a repeat writes the same document again and never a second copy.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import timedelta
from typing import Any, Iterable

from ..timeutil import parse_time
from .related import Related, entity_key

SUMMARY_RULES = 3  # rule names spelled out in an incident's summary


def incident_id(seed_alert_id: str) -> str:
    return hashlib.sha256(f"incident|{seed_alert_id}".encode()).hexdigest()[:32]


def combined_risk(records: Iterable[dict[str, Any]]) -> float:
    """0-100: the noisy-OR of each rule's strongest alert. Repeats of one rule add nothing;
    independent rules corroborate (two rules at 50 give 75, three 87.5).

    Rules corroborate only when they saw different things: the alerts of one job about one
    entity in one window read the same events, so they are one sighting and only its strongest
    alert counts. Two detectors of a job that both react to a new, busy source (on LUFlow,
    `iforest` and `rare_links` on benign autonomous systems) are one piece of evidence, not two;
    corroboration comes from other windows, other jobs or other entities of the story."""
    sightings: dict[tuple, dict[str, Any]] = {}
    for record in records:
        key = sighting_of(record)
        if key not in sightings or strength(record) > strength(sightings[key]):
            sightings[key] = record
    best: dict[str, float] = {}
    for record in sightings.values():
        best[record["rule_id"]] = max(best.get(record["rule_id"], 0.0), float(record["risk"]))
    miss = 1.0
    for risk in best.values():
        miss *= 1.0 - min(max(risk, 0.0), 100.0) / 100.0
    return round(100.0 * (1.0 - miss), 2)


def strength(record: dict[str, Any]) -> tuple[float, str, str]:
    """The order in which a sighting keeps its strongest alert: by risk, ties by rule and alert
    id, so the combined risk does not depend on the order the records come in."""
    return float(record["risk"]), record["rule_id"], record.get("alert_id", "")


def sighting_of(record: dict[str, Any]) -> tuple:
    """(job, window start, entity keys) of an alert record: an address is one entity whether an
    alert names it as `source.ip` or `destination.ip` (`entity_key`)."""
    return (record["job"], record["start"], tuple(sorted({entity_key(f, v) for f, v in record["entity"].items()})))


def alert_record(alert: dict[str, Any], entity: dict[str, str], related: list[Related]) -> dict[str, Any]:
    """What an incident keeps of an alert document; `entity` is every entity field of the
    alert (an edge alert has two), `related` what it touches (`related.py`)."""
    sg = alert["siem_gad"]
    threat = alert.get("threat", {})
    return {
        "alert_id": sg["alert_id"], "job": sg["job"], "detector": sg["detector"],
        "rule_id": alert["rule"]["id"], "rule_name": alert["rule"]["name"],
        "start": sg["window"]["start"], "end": sg["window"]["end"],
        "risk": float(alert["event"]["risk_score"]), "severity": sg["severity"],
        "tactics": list(threat.get("tactic", {}).get("id", [])),
        "techniques": list(threat.get("technique", {}).get("id", [])),
        "entity": dict(entity), "related": alert.get("related", {}),
        "evidence": list(sg.get("evidence", {}).get("event_ids", [])),  # what a verdict labels (feedback.py)
        "links": [r.key for r in related if not r.hub], "hubs": [r.key for r in related if r.hub], "message": alert["message"],
    }


def epoch(moment: str) -> int:
    return int(parse_time(moment).timestamp())


class IncidentBook:
    """The incidents in the state store (tables `incident_alerts`, `incident_links`, `incidents`)."""

    def __init__(self, db: sqlite3.Connection, horizon: timedelta, open_at: float = 0.0):
        self.db = db
        self.horizon = int(horizon.total_seconds())
        self.open_at = open_at

    # ------------------------------------------------------------------ grouping
    def fold(self, records: list[dict[str, Any]]) -> list[str]:
        """Add alert records (`alert_record`) and regroup; return the ids of changed incidents."""
        db = self.db
        known = {row[0] for row in self._in("SELECT alert_id FROM incident_alerts WHERE alert_id IN",
                                              [r["alert_id"] for r in records])}
        new = sorted({r["alert_id"]: r for r in records if r["alert_id"] not in known}.values(),
                     key=lambda r: (r["start"], r["alert_id"]))
        if not new:
            return []
        for record in new:
            t = epoch(record["start"])
            db.execute("INSERT INTO incident_alerts (alert_id, incident_id, t, risk, record) VALUES (?, '', ?, ?, ?)",
                       (record["alert_id"], t, record["risk"], json.dumps(record, sort_keys=True)))
            rows = [(entity_key(f, v), "primary") for f, v in record["entity"].items()]
            rows += [(key, "related") for key in record["links"]]
            rows += [(key, "hub") for key in record.get("hubs", [])]
            db.executemany("INSERT INTO incident_links (key, alert_id, t, role, rule_id) VALUES (?, ?, ?, ?, ?)",
                           [(key, record["alert_id"], t, role, record["rule_id"]) for key, role in rows])
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for record in new:
            me = f"a:{record['alert_id']}"
            find(me)
            for other_alert, other_incident in self._neighbours(record):
                find(other := (f"i:{other_incident}" if other_incident else f"a:{other_alert}"))
                parent[find(me)] = find(other)
        groups: dict[str, list[str]] = {}
        for node in list(parent):
            groups.setdefault(find(node), []).append(node)
        changed: list[str] = []
        for nodes in groups.values():
            old = sorted(n[2:] for n in nodes if n.startswith("i:"))
            members = [n[2:] for n in nodes if n.startswith("a:")]
            members += [row[0] for row in self._in("SELECT alert_id FROM incident_alerts WHERE incident_id IN", old)]
            changed += self._regroup(sorted(set(members)), old)
        return changed

    def _neighbours(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        """(alert id, incident id or '') of the alerts linked to `record` within the horizon."""
        t = epoch(record["start"])
        own = [entity_key(f, v) for f, v in record["entity"].items()]
        links, hubs = record["links"], record.get("hubs", [])
        marks = lambda keys: ",".join("?" * len(keys))  # noqa: E731
        clauses, args = [f"(l.key IN ({marks(own)}) AND (l.role = 'primary' OR l.t = ?))"], [*own, t]
        if links:
            clauses.append(f"(l.key IN ({marks(links)}) AND ((l.role = 'primary' AND l.t = ?) "
                           f"OR (l.role = 'related' AND l.rule_id = ?)))")
            args += [*links, t, record["rule_id"]]
        if hubs:
            clauses.append(f"(l.key IN ({marks(hubs)}) AND l.role = 'primary' AND l.t = ?)")
            args += [*hubs, t]
        sql = (f"SELECT DISTINCT l.alert_id, a.incident_id FROM incident_links l JOIN incident_alerts a "
               f"ON a.alert_id = l.alert_id WHERE l.t BETWEEN ? AND ? AND l.alert_id != ? AND ({' OR '.join(clauses)})")
        return self.db.execute(sql, [t - self.horizon, t + self.horizon, record["alert_id"], *args]).fetchall()

    def _regroup(self, members: list[str], old: list[str]) -> list[str]:
        rows = self._in("SELECT alert_id, record FROM incident_alerts WHERE alert_id IN", members)
        records = sorted((json.loads(r[1]) for r in rows), key=lambda r: (r["start"], r["alert_id"]))
        new_id = incident_id(records[0]["alert_id"])
        self.db.executemany("UPDATE incident_alerts SET incident_id = ? WHERE alert_id = ?",
                            [(new_id, r["alert_id"]) for r in records])
        document = incident_document(new_id, records, self.open_at)
        previous = self.find(new_id)
        if previous and previous["siem_gad"]["incident"].get("feedback"):  # an analyst's verdict stays
            document["siem_gad"]["incident"]["feedback"] = previous["siem_gad"]["incident"]["feedback"]
        self._store(new_id, document)
        changed = [new_id]
        for gone in old:
            if gone != new_id:
                previous = json.loads(self.db.execute("SELECT document FROM incidents WHERE id = ?", (gone,)).fetchone()[0])
                previous["siem_gad"]["incident"].update(status="merged", merged_into=new_id)
                self._store(gone, previous)
                changed.append(gone)
        return changed

    def set_feedback(self, identifier: str, fields: dict[str, Any]) -> bool:
        """Write an analyst's verdict into the incident document (delivered like any change)."""
        document = self.find(identifier)
        if document is None:
            return False
        document["siem_gad"]["incident"]["feedback"] = fields
        self._store(identifier, document)
        return True

    def _store(self, identifier: str, document: dict[str, Any]) -> None:
        info = document["siem_gad"]["incident"]
        self.db.execute(
            "INSERT INTO incidents (id, status, risk, first_seen, last_seen, document, revision) "
            "VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
            "risk = excluded.risk, first_seen = excluded.first_seen, last_seen = excluded.last_seen, "
            "document = excluded.document, revision = incidents.revision + 1",
            (identifier, info["status"], info["risk_score"], info["first_seen"], info["last_seen"],
             json.dumps(document, sort_keys=True)))

    def _in(self, sql: str, values: list[str]) -> list[tuple]:
        out: list[tuple] = []
        for begin in range(0, len(values), 500):
            chunk = values[begin:begin + 500]
            out += self.db.execute(f"{sql} ({','.join('?' * len(chunk))})", chunk).fetchall()
        return out

    # ------------------------------------------------------------------ reading
    def undelivered(self) -> list[tuple[str, int, dict[str, Any]]]:
        """(id, revision, document) of the incidents whose latest revision no sink has yet."""
        rows = self.db.execute("SELECT id, revision, document FROM incidents WHERE delivered < revision ORDER BY id")
        return [(r[0], r[1], json.loads(r[2])) for r in rows.fetchall()]

    def mark_delivered(self, revisions: dict[str, int]) -> None:
        self.db.executemany("UPDATE incidents SET delivered = MAX(delivered, ?) WHERE id = ?",
                            [(rev, ident) for ident, rev in revisions.items()])

    def incidents(self, *, everything: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
        """Open incident documents (`everything`: watched and merged ones too), highest
        combined risk first."""
        sql = "SELECT document FROM incidents" + ("" if everything else " WHERE status = 'open'")
        sql += " ORDER BY risk DESC, first_seen, id" + (f" LIMIT {int(limit)}" if limit else "")
        return [json.loads(r[0]) for r in self.db.execute(sql).fetchall()]

    def find(self, identifier: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT document FROM incidents WHERE id = ?", (identifier,)).fetchone()
        return json.loads(row[0]) if row else None

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        """The record kept of an alert (see `alert_record`), with its incident id."""
        row = self.db.execute("SELECT incident_id, record FROM incident_alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return {**json.loads(row[1]), "incident_id": row[0]} if row else None

    def members(self, identifier: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT record FROM incident_alerts WHERE incident_id = ? ORDER BY t, alert_id",
                               (identifier,)).fetchall()
        return [json.loads(r[0]) for r in rows]


def incident_document(identifier: str, records: list[dict[str, Any]], open_at: float = 0.0) -> dict[str, Any]:
    """The incident document of alert records sorted by (window start, alert id): `open` when
    its combined risk reaches `open_at`, else `watch`."""
    from ..risk import severity_of
    from ..rules import SEVERITY_RISK

    weight: dict[tuple[str, str], float] = {}
    related: dict[str, list[str]] = {}
    tactics: list[str] = []
    techniques: list[str] = []
    rules: dict[str, str] = {}
    for record in records:
        for field, value in record["entity"].items():
            weight[(field, value)] = weight.get((field, value), 0.0) + record["risk"]
        for kind, values in record["related"].items():
            bucket = related.setdefault(kind, [])
            bucket.extend(v for v in values if v not in bucket)
        tactics.extend(t for t in record["tactics"] if t not in tactics)
        techniques.extend(t for t in record["techniques"] if t not in techniques)
        rules.setdefault(record["rule_id"], record["rule_name"])
    entities = sorted(weight, key=lambda e: (-weight[e], e))
    risk = combined_risk(records)
    severity = severity_of(risk)
    first, last = records[0]["start"], max(r["end"] for r in records)
    summary = incident_summary(entities, records, rules, tactics, first, last)
    return {
        "@timestamp": last,
        "message": summary,
        "event": {"kind": "alert", "module": "siem_gad", "dataset": "siem_gad.incidents",
                  "category": ["intrusion_detection"], "type": ["info"], "id": identifier,
                  "severity": SEVERITY_RISK[severity], "risk_score": risk, "start": first, "end": last},
        "related": related,
        **({"threat": {"framework": "MITRE ATT&CK", "tactic": {"id": tactics}, "technique": {"id": techniques}}}
           if tactics or techniques else {}),
        "siem_gad": {"incident": {
            "id": identifier, "status": "open" if risk >= open_at else "watch", "merged_into": None,
            "first_seen": first, "last_seen": last,
            "risk_score": risk, "max_alert_risk": max(r["risk"] for r in records), "severity": severity,
            "alert_ids": [r["alert_id"] for r in records], "alert_count": len(records),
            "rules": list(rules), "jobs": sorted({r["job"] for r in records}),
            "detectors": sorted({r["detector"] for r in records}),
            "entities": [{"field": f, "value": v, "risk": round(weight[(f, v)], 2)} for f, v in entities[:50]],
            "tactics": tactics, "summary": summary,
        }},
    }


def incident_summary(entities: list[tuple[str, str]], records: list[dict], rules: dict[str, str],
                     tactics: list[str], first: str, last: str) -> str:
    lead = f"{entities[0][0]} {entities[0][1]}" if entities else "no entity"
    more = f" and {len(entities) - 1} more entities" if len(entities) > 1 else ""
    names = ", ".join(list(rules.values())[:SUMMARY_RULES]) + (f" (+{len(rules) - SUMMARY_RULES})"
                                                                if len(rules) > SUMMARY_RULES else "")
    tactic_text = f"; tactics {' > '.join(tactics)}" if tactics else ""
    return (f"{lead}{more}: {len(records)} alert(s) from {len(rules)} rule(s) [{names}] "
            f"{first} .. {last}{tactic_text}")
