"""Kibana saved objects, the alert index template and the Elasticsearch-only settings.

No Kibana can run here: the saved objects are checked against the alert index template (every
field they use is mapped, with a type the visualisation can aggregate on), and the import
command against a local HTTP endpoint that records what Kibana would receive.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, siem_gad
from siem_gad.elastic.kibana import saved_objects, to_ndjson
from siem_gad.elastic.kibana import DATA_VIEW_ID, INCIDENT_VIEW_ID, STATUS_VIEW_ID
from siem_gad.elastic.mappings import document_mappings, field_types

AGGREGATABLE = {"keyword", "ip", "long", "integer", "float", "double", "date", "boolean"}
NUMERIC = {"long", "integer", "float", "double"}
AGG_FIELD_TYPES = {"date_histogram": {"date"}, "histogram": NUMERIC, "max": NUMERIC, "min": NUMERIC, "avg": NUMERIC,
                   "sum": NUMERIC, "terms": AGGREGATABLE, "cardinality": AGGREGATABLE}


def fields_used(objects: list[dict]) -> list[tuple[str, str, str]]:
    """(object id, field, what uses it) for every field the saved objects refer to."""
    used = []
    for obj in objects:
        attributes = obj["attributes"]
        if obj["type"] == "index-pattern":
            used.append((obj["id"], attributes["timeFieldName"], "date_histogram"))
        if obj["type"] == "visualization":
            for agg in json.loads(attributes["visState"])["aggs"]:
                if "field" in agg.get("params", {}):
                    used.append((obj["id"], agg["params"]["field"], agg["type"]))
        if obj["type"] == "search":
            used += [(obj["id"], column, "column") for column in attributes["columns"]]
            used += [(obj["id"], name, "sort") for name, _ in attributes["sort"]]
    return used


def test_shipped_ndjson_is_the_current_export():
    shipped = (ROOT / "kibana" / "siem-gad.ndjson").read_text()
    assert shipped == to_ndjson(saved_objects()), "regenerate with: siem-gad kibana export > kibana/siem-gad.ndjson"


def test_every_field_the_saved_objects_use_is_mapped_with_a_compatible_type():
    objects = [json.loads(line) for line in (ROOT / "kibana" / "siem-gad.ndjson").read_text().splitlines()]
    kinds = {DATA_VIEW_ID: "alert", INCIDENT_VIEW_ID: "incident", STATUS_VIEW_ID: "status"}
    view_of = {o["id"]: (o["id"] if o["type"] == "index-pattern" else o["references"][0]["id"])
               for o in objects if o["type"] != "dashboard"}
    used = fields_used(objects)
    assert len(used) >= 10
    assert {kinds[view_of[obj_id]] for obj_id, _, _ in used} == {"alert", "incident", "status"}
    for obj_id, field, use in used:
        kind = kinds[view_of[obj_id]]
        types = field_types(document_mappings(kind))
        assert field in types, f"{obj_id} uses {field}, which the {kind} template does not map"
        allowed = AGG_FIELD_TYPES.get(use, AGGREGATABLE | {"text"} if use == "column" else AGGREGATABLE)
        assert types[field] in allowed, f"{obj_id}: {use} on {field} needs {sorted(allowed)}, mapped {types[field]}"


def test_dashboard_references_resolve():
    objects = saved_objects("custom-alerts")
    ids = {(o["type"], o["id"]) for o in objects}
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in ids, f"{obj['id']} refers to missing {ref}"
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    assert {p["panelRefName"] for p in panels} == {r["name"] for r in dashboard["references"]}
    assert objects[0]["attributes"]["title"] == "custom-alerts*"


class _FakeKibana(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, self.headers, body))
        objects = [line for line in body.split(b"\r\n\r\n", 1)[1].splitlines() if line.startswith(b"{")]
        payload = json.dumps({"success": True, "successCount": len(objects)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_kibana_import_posts_the_objects_for_the_configured_index(tmp_path: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKibana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = yaml.safe_load((ROOT / "examples" / "elastic.yaml").read_text())
    config["kibana"]["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    config["kibana"]["space"] = "soc"
    path = tmp_path / "elastic.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        result = siem_gad("kibana", "import", "-c", str(path), env={"KIBANA_API_KEY": "a2V5OnNlY3JldA==", "ES_API_KEY": "x"})
    finally:
        server.shutdown()
    assert f"imported {len(saved_objects())} saved objects" in result.stdout
    url, headers, body = _FakeKibana.requests[-1]
    assert url == "/s/soc/api/saved_objects/_import?overwrite=true"
    assert headers["kbn-xsrf"] == "true" and headers["Authorization"] == "ApiKey a2V5OnNlY3JldA=="
    assert headers["Content-Type"].startswith("multipart/form-data; boundary=")
    objects = [json.loads(line) for line in body.decode().split("\r\n\r\n", 1)[1].splitlines() if line.startswith("{")]
    assert [o["type"] for o in objects][0] == "index-pattern" and objects[0]["attributes"]["title"] == "siem-gad-alerts*"
    assert "a2V5OnNlY3JldA==" not in result.stdout + result.stderr, "credentials are never printed"


def test_connection_settings_are_validated_precisely(tmp_path: Path):
    config = yaml.safe_load((ROOT / "examples" / "elastic.yaml").read_text())
    config["sinks"]["siem"]["username"] = "elastic"
    config["sinks"]["siem"]["ilm"] = {"policy": "alerts"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = siem_gad("check", "-c", str(path), check=False, env={"ES_API_KEY": "x"})
    assert result.returncode != 0
    assert "sinks.siem" in result.stderr and "choose one way to authenticate" in result.stderr


def test_ilm_policy_and_data_stream_template_for_elasticsearch():
    from siem_gad.sinks.elasticsearch import ElasticsearchSink

    with pytest.raises(ValueError, match="needs data_stream: true"):
        ElasticsearchSink(ilm={"policy": "p"})
    sink = ElasticsearchSink(index="logs-siem_gad.alerts-default", data_stream=True,
                             ilm={"policy": "siem-gad", "rollover_max_age": "7d", "delete_after": "90d"})
    template = sink.template_body()
    assert template["data_stream"] == {} and template["index_patterns"] == ["logs-siem_gad.alerts-default"]
    assert template["template"]["settings"]["index.lifecycle.name"] == "siem-gad"
    phases = sink.lifecycle_body()["policy"]["phases"]
    assert phases["hot"]["actions"]["rollover"]["max_age"] == "7d"
    assert phases["delete"] == {"min_age": "90d", "actions": {"delete": {}}}
