"""Analysts' verdicts on alerts and incidents, and what they change.

A verdict (`siem-gad feedback ID --verdict ...`, or `siem_gad.feedback.verdict` set on the
alert document in Kibana) is kept in the state store with who gave it and when. It is taken
over the alerts it names: the alert, or every alert of an incident.

- `false_positive` suppresses its scope from the next pass on, until `until` or for good:
  `entity+rule` (default) the same rule about the same entities, `entity` any rule about them,
  `rule` the whole rule. It is also written to the alert document.
- Both verdicts become labels at the next training of the detectors that learn from labels
  (`Detector.learns_from_labels`: `deep_sad`, `rare_links`, the supervised graph models): the alert's
  entity in the alert's window is labeled normal (false positive) or anomalous (true positive),
  and so are the evidence events the alert showed where the graph has a node per event (the
  flows of `host_flow`, which `hetero_gnn` classifies: its alerts name the sending host, its
  training reads the flows' labels).
"""

from __future__ import annotations

import getpass
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..timeutil import isoformat, parse_time, utcnow
from .related import entity_key

if TYPE_CHECKING:
    from ..graphs import GraphWindow

VERDICTS = ("false_positive", "true_positive")
SCOPES = ("entity+rule", "entity", "rule")


@dataclass
class Verdict:
    target: str  # the alert or incident id the analyst marked
    verdict: str
    scope: str = "entity+rule"
    rules: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)  # entity keys (related.entity_key)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # {alert_id, start, entity, evidence}
    until: datetime | None = None
    note: str = ""
    by: str = ""
    at: datetime | None = None
    origin: str = "cli"  # cli | siem

    def suppresses(self, rule_id: str, entity: dict[str, str], window_start: datetime) -> bool:
        """Whether this verdict stops an alert of `rule_id` about `entity` in a window from `window_start`."""
        if self.verdict != "false_positive" or (self.until is not None and window_start >= self.until):
            return False
        same_rule = rule_id in self.rules
        same_entity = any(entity_key(f, v) in self.entities for f, v in entity.items())
        return {"entity+rule": same_rule and same_entity, "entity": same_entity, "rule": same_rule}[self.scope]

    def document_fields(self) -> dict[str, Any]:
        """What goes under `siem_gad.feedback` on the alert document."""
        return {"verdict": self.verdict, "scope": self.scope, "until": self.until and isoformat(self.until),
                "note": self.note, "by": self.by, "at": self.at and isoformat(self.at)}


def verdict_for(target: str, records: list[dict[str, Any]], verdict: str, scope: str = "entity+rule",
                until: datetime | None = None, note: str = "", by: str | None = None, origin: str = "cli") -> Verdict:
    """A verdict on `target` taken over the alert records (`incidents.alert_record`) it names."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if not records:
        raise ValueError(f"{target}: no alert or incident with this id in the state store")
    rules = sorted({r["rule_id"] for r in records})
    entities = sorted({entity_key(f, v) for r in records for f, v in r["entity"].items()})
    alerts = [{"alert_id": r["alert_id"], "start": r["start"], "entity": r["entity"], "evidence": r.get("evidence", [])}
              for r in records]
    return Verdict(target, verdict, scope, rules, entities, alerts, until, note, by or getpass.getuser(), utcnow(), origin)


class FeedbackBook:
    """The verdicts in the state store (table `feedback`); one per target, the newest wins."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def record(self, verdict: Verdict) -> None:
        self.db.execute(
            "INSERT INTO feedback (target, verdict, scope, rules, entities, alerts, until, note, by, at, origin) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (target) DO UPDATE SET verdict = excluded.verdict, "
            "scope = excluded.scope, rules = excluded.rules, entities = excluded.entities, alerts = excluded.alerts, "
            "until = excluded.until, note = excluded.note, by = excluded.by, at = excluded.at, origin = excluded.origin",
            (verdict.target, verdict.verdict, verdict.scope, json.dumps(verdict.rules), json.dumps(verdict.entities),
             json.dumps(verdict.alerts), verdict.until and isoformat(verdict.until), verdict.note, verdict.by,
             isoformat(verdict.at or utcnow()), verdict.origin))

    def verdicts(self) -> list[Verdict]:
        rows = self.db.execute("SELECT target, verdict, scope, rules, entities, alerts, until, note, by, at, origin "
                               "FROM feedback ORDER BY id").fetchall()
        return [Verdict(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), json.loads(r[5]),
                        r[6] and parse_time(r[6]), r[7] or "", r[8], parse_time(r[9]), r[10]) for r in rows]



def read_verdicts(state_file: Path) -> list[Verdict]:
    """The verdicts in a state file, opened read-only (`evaluate` leaves production state
    untouched); none when there is no file or no feedback table yet."""
    if not state_file.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)
        try:
            return FeedbackBook(db).verdicts()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return []


def suppressing(verdicts: Iterable[Verdict], rule_id: str, entity: dict[str, str], window_start: datetime) -> Verdict | None:
    """The first false-positive verdict that stops this alert, or None."""
    return next((v for v in verdicts if v.suppresses(rule_id, entity, window_start)), None)


def label_windows(windows: list["GraphWindow"], verdicts: Iterable[Verdict]) -> int:
    """Set `node_label` of the entities the verdicts name in their alerts' windows, and of the
    alerts' evidence events where the window has a node per event (`event.id`): 'benign' for a
    false positive, `ANALYST_TRUE_POSITIVE` for a true positive. Return how many rows got a
    label. An analyst's word wins over the events' own labels."""
    import numpy as np

    from ..events import EVENT_ID
    from ..labeling import ANALYST_TRUE_POSITIVE, BENIGN

    by_start = {isoformat(w.start): w for w in windows}
    labeled = 0
    for verdict in verdicts:
        value = BENIGN if verdict.verdict == "false_positive" else ANALYST_TRUE_POSITIVE
        for alert in verdict.alerts:
            window = by_start.get(alert["start"])
            if window is None or not window.num_nodes:
                continue
            evidence = [str(e) for e in alert.get("evidence", [])]
            for entity_field, values in [*((f, [str(v)]) for f, v in alert["entity"].items()), (EVENT_ID, evidence)]:
                if entity_field not in window.node_fields or not values:
                    continue
                kind = window.node_fields.index(entity_field)
                rows = np.flatnonzero((window.node_kind == kind) & np.isin(window.node_value.astype(str), values))
                if not len(rows):
                    continue
                if window.node_label is None:
                    window.node_label = np.full(window.num_nodes, None, dtype=object)
                window.node_label[rows] = value
                labeled += len(rows)
    return labeled
