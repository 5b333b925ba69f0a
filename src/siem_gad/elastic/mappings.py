"""The alert index: explicit mappings for every field of an alert document.

`siem_gad.alerts.build_alert` writes these fields; tests/test_elastic_mappings.py checks that
a real alert maps completely (no field left to dynamic mapping) and that every field the
Kibana saved objects use is here with a type the visualisation can aggregate on.
"""

from __future__ import annotations

import copy
from typing import Any

KEYWORD = {"type": "keyword", "ignore_above": 1024}
TEXT = {"type": "text"}
DATE = {"type": "date"}
DOUBLE = {"type": "double"}
FLOAT = {"type": "float"}
LONG = {"type": "long"}
INTEGER = {"type": "integer"}
IP = {"type": "ip"}


def _obj(**properties: Any) -> dict[str, Any]:
    return {"properties": properties}


# ECS fields an alert can carry as its entity (the graph's node fields). Others need
# `extra_mappings` on the sink (or `dynamic: true`).
ENTITY_FIELDS: dict[str, dict] = {
    "source": _obj(ip=IP, port=LONG, domain=KEYWORD),
    "destination": _obj(ip=IP, port=LONG, domain=KEYWORD),
    "user": _obj(name=KEYWORD, domain=KEYWORD, id=KEYWORD),
    "host": _obj(name=KEYWORD, ip=IP, hostname=KEYWORD),
    "process": _obj(name=KEYWORD, executable=KEYWORD),
    "service": _obj(name=KEYWORD),
    "url": _obj(domain=KEYWORD),
    "dns": _obj(question=_obj(name=KEYWORD)),
    "network": _obj(transport=KEYWORD, protocol=KEYWORD),
}

CONTRIBUTOR = _obj(name=KEYWORD, value=KEYWORD, weight=FLOAT)
# ECS `related`: every entity an alert or incident touches, by kind (triage/related.py).
RELATED = _obj(ip=IP, user=KEYWORD, hosts=KEYWORD)
# An analyst's verdict, set by `siem-gad feedback` or by hand on the document in Kibana.
FEEDBACK = _obj(verdict=KEYWORD, scope=KEYWORD, until=DATE, note=TEXT, by=KEYWORD, at=DATE)
EVENT = _obj(kind=KEYWORD, module=KEYWORD, dataset=KEYWORD, category=KEYWORD, type=KEYWORD, action=KEYWORD,
             severity=LONG, risk_score=FLOAT, start=DATE, end=DATE, created=DATE, id=KEYWORD, outcome=KEYWORD)
THREAT = _obj(framework=KEYWORD, technique=_obj(id=KEYWORD), tactic=_obj(id=KEYWORD))

ALERT_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    "message": TEXT,
    "event": EVENT,
    "rule": _obj(id=KEYWORD, name=KEYWORD, description=TEXT, ruleset=KEYWORD, version=KEYWORD),
    "threat": THREAT,
    "related": RELATED,
    "labels": {"type": "object", "dynamic": True},
    "tags": KEYWORD,
    "siem_gad": _obj(
        alert_id=KEYWORD, job=KEYWORD, detector=KEYWORD, detector_type=KEYWORD, level=KEYWORD, severity=KEYWORD,
        score=DOUBLE, threshold=DOUBLE, model_version=INTEGER, initial_score=FLOAT,
        confidence=_obj(level=KEYWORD, value=FLOAT, training_windows=INTEGER, window_events=INTEGER),
        window=_obj(start=DATE, end=DATE),
        entity=_obj(field=KEYWORD, value=KEYWORD),
        top_contributor=CONTRIBUTOR,
        explanation=CONTRIBUTOR,
        summary=TEXT,
        evidence=_obj(event_ids=KEYWORD, count=INTEGER),
        # Detector-specific details vary by detector: kept in _source, not indexed.
        details={"type": "object", "enabled": False},
        # The evidence graph (triage/neighbourhood.py): drawn by `siem-gad ui`, not searched.
        graph={"type": "object", "enabled": False},
        asset=_obj(owner=KEYWORD, criticality=KEYWORD),
        feedback=FEEDBACK,
    ),
    **ENTITY_FIELDS,
}

# Incident documents (triage/incidents.py `incident_document`).
INCIDENT_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE, "message": TEXT, "event": EVENT, "related": RELATED, "threat": THREAT,
    "siem_gad": _obj(incident=_obj(
        id=KEYWORD, status=KEYWORD, merged_into=KEYWORD, first_seen=DATE, last_seen=DATE, risk_score=FLOAT,
        max_alert_risk=FLOAT, severity=KEYWORD, alert_ids=KEYWORD, alert_count=INTEGER, rules=KEYWORD,
        jobs=KEYWORD, detectors=KEYWORD, entities=_obj(field=KEYWORD, value=KEYWORD, risk=FLOAT),
        tactics=KEYWORD, summary=TEXT, feedback=FEEDBACK)),
}

# Status documents, one per pass (triage/heartbeat.py `status_document`).
STATUS_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE, "message": TEXT, "event": EVENT, "host": _obj(name=KEYWORD),
    "siem_gad": _obj(status=_obj(
        job=KEYWORD, outcome=KEYWORD, reason=TEXT, started=DATE, seconds=FLOAT, watermark=DATE, lag_seconds=DOUBLE,
        windows=INTEGER, events=LONG, alerts=INTEGER, quarantined=INTEGER, stopped_by_feedback=INTEGER, errors=INTEGER, dead_letters=INTEGER,
        version=KEYWORD,
        models=_obj(detector=KEYWORD, version=INTEGER, state=KEYWORD, trained_until=DATE, age_hours=FLOAT))),
}

# Strings under `labels` (ECS: custom keyword key/values) and any field a user lets in with
# `dynamic: true` become keywords, not analysed text.
DYNAMIC_TEMPLATES = [{"strings_as_keywords": {"match_mapping_type": "string", "mapping": KEYWORD}}]


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mapping `properties`; `extra` wins on conflicts."""
    merged = copy.deepcopy(base)
    for name, spec in extra.items():
        if isinstance(spec, dict) and "properties" in spec and "properties" in merged.get(name, {}):
            merged[name] = {**merged[name], "properties": merge(merged[name]["properties"], spec["properties"])}
        else:
            merged[name] = copy.deepcopy(spec)
    return merged


def alert_mappings(dynamic: str = "strict", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"dynamic": dynamic, "dynamic_templates": DYNAMIC_TEMPLATES,
            "properties": merge(ALERT_PROPERTIES, extra or {})}


def document_mappings(kind: str, dynamic: str = "strict", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The mappings of the index that holds documents of `kind` (alert, incident, status)."""
    if kind == "alert":
        return alert_mappings(dynamic, extra)
    properties = {"incident": INCIDENT_PROPERTIES, "status": STATUS_PROPERTIES}[kind]
    return {"dynamic": dynamic, "dynamic_templates": DYNAMIC_TEMPLATES, "properties": copy.deepcopy(properties)}


def field_types(mappings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{'siem_gad.score': 'double', ...} for every leaf field of a mapping."""
    out: dict[str, str] = {}
    for name, spec in mappings.get("properties", {}).items():
        dotted = prefix + name
        if "properties" in spec:
            out.update(field_types(spec, dotted + "."))
        else:
            out[dotted] = spec.get("type", "object")
    return out
