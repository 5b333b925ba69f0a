"""Kibana saved objects for the alert index, and their import through Kibana's API.

`saved_objects(index)` builds data views over the alert, incident and status indices and a
dashboard: alerts over time by severity, top entities, score distribution by detector, a
table of alerts with message, entity, score and top explanation, the open incidents by
combined risk, and each job's last heartbeat (lag, errors) so a stopped job shows. They are aggregation-based visualisations and a
saved search, the formats every Kibana 7.10+/8.x/9.x imports and migrates. `kibana/siem-gad.ndjson`
in the repository is this output for the default index (for import through the Kibana UI);
tests check it is current and that every field it uses is mapped with a fitting type.
"""

from __future__ import annotations

import json
from typing import Any


from ..config import KibanaConfig
from .mappings import document_mappings, field_types
from .saved_objects import MIGRATION_VERSIONS, PRODUCTS

DATA_VIEW_ID = "siem-gad-alerts"
INCIDENT_VIEW_ID = "siem-gad-incidents"
STATUS_VIEW_ID = "siem-gad-status"
DASHBOARD_ID = "siem-gad-overview"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


def _data_view(view_id: str, index: str, name: str) -> dict:
    pattern = index if index.endswith("*") else f"{index}*"
    return {"id": view_id, "type": "index-pattern",
            "attributes": {"title": pattern, "name": name, "timeFieldName": "@timestamp"}, "references": []}


def _search(search_id: str, title: str, columns: list[str], sort: list, query: str, view: str) -> dict:
    return {
        "id": search_id, "type": "search",
        "attributes": {"title": title, "description": "", "columns": columns, "sort": sort,
                       "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)}},
        "references": [{"name": INDEX_REF, "type": "index-pattern", "id": view}],
    }


def _search_source(query: str = "") -> str:
    return json.dumps({"query": {"query": query, "language": "kuery"}, "filter": [], "indexRefName": INDEX_REF})


def _visualization(vis_id: str, title: str, vis_type: str, params: dict, aggs: list[dict],
                  view: str = DATA_VIEW_ID) -> dict:
    for number, agg in enumerate(aggs, 1):
        agg.setdefault("id", str(number))
        agg.setdefault("enabled", True)
        agg.setdefault("params", {})
    vis_state = {"title": title, "type": vis_type, "params": params, "aggs": aggs}
    return {
        "id": vis_id, "type": "visualization",
        "attributes": {"title": title, "description": "", "version": 1, "uiStateJSON": "{}",
                       "visState": json.dumps(vis_state),
                       "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source()}},
        "references": [{"name": INDEX_REF, "type": "index-pattern", "id": view}],
    }


def _chart_params(kind: str) -> dict:
    return {"type": kind, "addTooltip": True, "addLegend": True, "legendPosition": "right",
            "seriesParams": [{"show": True, "type": kind, "mode": "stacked", "data": {"id": "1", "label": "Alerts"},
                              "valueAxis": "ValueAxis-1"}]}


TABLE_COLUMNS = ["message", "siem_gad.entity.value", "siem_gad.score", "siem_gad.detector",
                 "siem_gad.top_contributor.name", "siem_gad.top_contributor.value"]


INCIDENT_COLUMNS = ["message", "siem_gad.incident.risk_score", "siem_gad.incident.alert_count",
                    "siem_gad.incident.severity", "siem_gad.incident.first_seen"]


def saved_objects(index: str = "siem-gad-alerts", incident_index: str = "siem-gad-incidents",
                  status_index: str = "siem-gad-status", product: str = "kibana") -> list[dict[str, Any]]:
    """The data views, the visualisations, the saved searches and the dashboard, in import
    order, for `product` (kibana or opensearch-dashboards: `saved_objects.PRODUCTS`)."""
    objects = _objects(index, incident_index, status_index)
    for obj in objects:
        obj["migrationVersion"] = {obj["type"]: MIGRATION_VERSIONS[obj["type"]]}
        if product == "opensearch-dashboards" and obj["type"] == "index-pattern":
            obj["attributes"].pop("name")  # a Kibana 8 data view field OpenSearch Dashboards refuses
    return objects


def view_field_types(index_kinds: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """{data view id: {field: mapped type}}: what `validate_bundle` checks the objects' fields
    against, from the index templates siem-gad installs."""
    kinds = index_kinds or {DATA_VIEW_ID: "alert", INCIDENT_VIEW_ID: "incident", STATUS_VIEW_ID: "status"}
    return {view: field_types(document_mappings(kind)) for view, kind in kinds.items()}


def _objects(index: str, incident_index: str, status_index: str) -> list[dict[str, Any]]:
    data_view = _data_view(DATA_VIEW_ID, index, "siem-gad alerts")
    incident_view = _data_view(INCIDENT_VIEW_ID, incident_index, "siem-gad incidents")
    status_view = _data_view(STATUS_VIEW_ID, status_index, "siem-gad status")
    over_time = _visualization("siem-gad-alerts-over-time", "siem-gad: alerts over time by severity", "histogram",
                               _chart_params("histogram"), [
                                   {"type": "count", "schema": "metric"},
                                   {"type": "date_histogram", "schema": "segment",
                                    "params": {"field": "@timestamp", "interval": "auto", "min_doc_count": 1}},
                                   {"type": "terms", "schema": "group",
                                    "params": {"field": "siem_gad.severity", "size": 5, "order": "desc", "orderBy": "1"}},
                               ])
    top_entities = _visualization("siem-gad-top-entities", "siem-gad: top entities", "table",
                                  {"perPage": 10, "showTotal": False}, [
                                      {"type": "count", "schema": "metric"},
                                      {"type": "max", "schema": "metric", "params": {"field": "siem_gad.score"}},
                                      {"type": "terms", "schema": "bucket",
                                       "params": {"field": "siem_gad.entity.value", "size": 20, "order": "desc",
                                                  "orderBy": "1"}},
                                      {"type": "terms", "schema": "bucket",
                                       "params": {"field": "siem_gad.entity.field", "size": 5, "order": "desc",
                                                  "orderBy": "1"}},
                                  ])
    scores = _visualization("siem-gad-score-distribution", "siem-gad: score distribution by detector", "histogram",
                            _chart_params("histogram"), [
                                {"type": "count", "schema": "metric"},
                                {"type": "histogram", "schema": "segment",
                                 "params": {"field": "siem_gad.score", "interval": "auto", "min_doc_count": False}},
                                {"type": "terms", "schema": "group",
                                 "params": {"field": "siem_gad.detector", "size": 10, "order": "desc", "orderBy": "1"}},
                            ])
    table = _search("siem-gad-alert-table", "siem-gad: alerts", TABLE_COLUMNS, [["@timestamp", "desc"]],
                    "event.kind : \"alert\"", DATA_VIEW_ID)
    incidents = _search("siem-gad-incident-table", "siem-gad: open incidents by combined risk", INCIDENT_COLUMNS,
                        [["siem_gad.incident.risk_score", "desc"]], "siem_gad.incident.status : \"open\"",
                        INCIDENT_VIEW_ID)
    heartbeat = _visualization("siem-gad-heartbeat", "siem-gad: jobs (last pass, lag, errors)", "table",
                               {"perPage": 10, "showTotal": False}, [
                                   {"type": "count", "schema": "metric"},
                                   {"type": "max", "schema": "metric", "params": {"field": "siem_gad.status.lag_seconds"}},
                                   {"type": "sum", "schema": "metric", "params": {"field": "siem_gad.status.errors"}},
                                   {"type": "terms", "schema": "bucket",
                                    "params": {"field": "siem_gad.status.job", "size": 50, "order": "desc",
                                               "orderBy": "1"}},
                               ], view=STATUS_VIEW_ID)
    panels = [(over_time, 0, 0, 24, 12), (top_entities, 24, 0, 24, 12), (incidents, 0, 12, 24, 12),
              (heartbeat, 24, 12, 24, 12), (scores, 0, 24, 24, 12), (table, 24, 24, 24, 12)]
    dashboard = {
        "id": DASHBOARD_ID, "type": "dashboard",
        "attributes": {
            "title": "siem-gad: graph anomaly alerts", "description": "Alerts written by siem-gad", "version": 1,
            "timeRestore": False, "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
            "panelsJSON": json.dumps([
                {"panelIndex": str(n), "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(n)}, "version": "7.10.0",
                 "embeddableConfig": {}, "panelRefName": f"panel_{n}"}
                for n, (_, x, y, w, h) in enumerate(panels)]),
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"},
                                                                      "filter": []})},
        },
        "references": [{"name": f"panel_{n}", "type": obj["type"], "id": obj["id"]}
                       for n, (obj, *_rest) in enumerate(panels)],
    }
    return [data_view, incident_view, status_view, over_time, top_entities, scores, table, incidents, heartbeat,
            dashboard]


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(obj, sort_keys=True) + "\n" for obj in objects)


def import_saved_objects(config: KibanaConfig, ndjson: str) -> dict[str, Any]:
    """POST the objects to the saved-objects import API of Kibana or OpenSearch Dashboards
    (`config.product`; overwrite); return its answer."""
    import urllib.error
    import urllib.request
    import uuid

    from .client import ConnectionParams  # the same auth header and TLS handling as the cluster

    connection = ConnectionParams(hosts=[config.url], api_key=config.api_key, username=config.username,
                                  password=config.password, ca_file=config.ca_file, verify_certs=config.verify_certs)
    base = config.url.rstrip("/") + (f"/s/{config.space}" if config.space else "")
    url = f"{base}/api/saved_objects/_import?overwrite=true"
    boundary = f"siem-gad-{uuid.uuid4().hex}"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"siem-gad.ndjson\"\r\n"
            f"Content-Type: application/ndjson\r\n\r\n{ndjson}\r\n--{boundary}--\r\n").encode()
    headers = {PRODUCTS[config.product]["xsrf"]: "true", "Content-Type": f"multipart/form-data; boundary={boundary}",
               **connection.auth_header()}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    context = connection.ssl_context() if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=config.request_timeout, context=context) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{config.product} answered HTTP {exc.code} to {url}: {exc.read()[:500].decode(errors='replace')}") from None
    except OSError as exc:
        raise RuntimeError(f"cannot reach {config.product} at {url}: {exc}") from None
    if not answer.get("success", False):
        raise RuntimeError(f"{config.product} could not import every object: {json.dumps(answer.get('errors', answer))[:1000]}")
    return answer
