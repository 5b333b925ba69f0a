"""Alert documents: ECS, explained, with a deterministic id.

The id is a hash of the rule, the entity and the window, so the same finding always gets the
same id: a pass repeated after a crash hands the sinks the same ids, and they write nothing
twice. Documents are nested ECS; the explanation is a list of plain objects and the top
contributor has its own fields, so dashboards need no nested mappings.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from . import __version__
from .detectors import Explanation
from .rules import SEVERITY_RISK, Rule
from .timeutil import isoformat, utcnow
from .triage.related import Related, ecs_related


def alert_id(rule_id: str, entity: dict[str, str], window_start: datetime) -> str:
    key = "|".join([rule_id, *(f"{k}={entity[k]}" for k in sorted(entity)), isoformat(window_start)])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        doc = doc.setdefault(part, {})
    doc[parts[-1]] = value


def get_dotted(doc: dict[str, Any], dotted: str, default: Any = None) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return default
        doc = doc[part]
    return doc


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b.c': value}; lists are kept as values."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def build_alert(*, rule: Rule, job: str, detector: str, detector_type: str, model_version: int, score: float,
                threshold: float, window_start: datetime, window_end: datetime, explanation: Explanation,
                level: str, normalised_score: float, confidence: dict[str, Any],
                related: "list[Related] | None" = None, graph: dict[str, Any] | None = None) -> dict[str, Any]:
    """`normalised_score`: the detector's 0-100 risk score of `score` (`Detector.risk_scale`);
    `confidence`: `risk.confidence` of the model and window; `related`: the entities the alert
    touches (`triage.related`), which fill ECS `related.*` with the alert's own; `graph`: its
    evidence graph (`triage.neighbourhood`)."""
    entity = explanation.entity
    risk, severity = rule.alert_risk(normalised_score)
    identifier = alert_id(rule.id, entity, window_start)
    entity_field, entity_value = next(iter(entity.items())) if entity else ("", "")
    top = explanation.contributors[0] if explanation.contributors else {"name": "", "value": "", "weight": 0.0}
    values = {
        "rule": rule.name, "rule_id": rule.id, "job": job, "detector": detector, "severity": severity,
        "entity": " ".join(f"{k} {v}" for k, v in entity.items()), "entity_field": entity_field,
        "entity_value": entity_value, "score": score, "threshold": threshold,
        "window_start": isoformat(window_start), "window_end": isoformat(window_end),
        "explanation": explanation.summary, "top_contributor": f"{top['name']}={top['value']}",
    }
    doc: dict[str, Any] = {
        "@timestamp": isoformat(window_end),
        "message": rule.message.format(**values),
        "event": {
            "kind": "alert", "module": "siem_gad", "dataset": f"siem_gad.{job}", "category": ["intrusion_detection"],
            "type": ["info"], "severity": SEVERITY_RISK[severity], "risk_score": round(risk, 2),
            "start": isoformat(window_start),
            "end": isoformat(window_end), "created": isoformat(utcnow()), "id": identifier,
        },
        "rule": {"id": rule.id, "name": rule.name, "description": rule.description, "ruleset": "siem_gad",
                 "version": __version__},
        "siem_gad": {
            "alert_id": identifier, "job": job, "detector": detector, "detector_type": detector_type,
            "level": level, "severity": severity, "score": round(score, 6), "threshold": round(threshold, 6),
            "initial_score": round(risk, 2), "confidence": confidence,
            "model_version": model_version,
            "window": {"start": isoformat(window_start), "end": isoformat(window_end)},
            "entity": {"field": entity_field, "value": entity_value},
            "top_contributor": {"name": str(top["name"]), "value": str(top["value"]), "weight": float(top["weight"])},
            "explanation": [{"name": str(c["name"]), "value": str(c["value"]), "weight": float(c["weight"])}
                            for c in explanation.contributors],
            "summary": explanation.summary,
            "evidence": {"event_ids": list(explanation.evidence), "count": int(explanation.evidence_count)},
            **({"details": explanation.extra} if explanation.extra else {}),
            **({"graph": graph} if graph else {}),
        },
    }
    ecs = ecs_related(entity, related or [])
    if ecs:
        doc["related"] = ecs
    for key, value in entity.items():
        set_dotted(doc, key, value)
    if rule.threat.techniques or rule.threat.tactics:
        doc["threat"] = {"framework": "MITRE ATT&CK", "technique": {"id": rule.threat.techniques},
                         "tactic": {"id": rule.threat.tactics}}
    return doc
