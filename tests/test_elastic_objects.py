"""Kibana and OpenSearch Dashboards saved objects, the alert index template and the
Elasticsearch-only settings.

No Kibana can run here: the bundles are checked by `saved_objects.validate_bundle` the way the
servers' import checks them (and every field against the index templates), and `kibana import`
against a local HTTP server that parses the multipart request, demands the product's xsrf
header and validates what it receives. `test_live_kibana_import` runs only with KIBANA_URL set.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, siem_gad
from siem_gad.elastic.kibana import saved_objects, to_ndjson, view_field_types
from siem_gad.elastic.saved_objects import PRODUCTS, validate_bundle

BUNDLES = {"kibana": "siem-gad.ndjson", "opensearch-dashboards": "siem-gad.opensearch-dashboards.ndjson"}


def shipped(product: str) -> list[dict]:
    return [json.loads(line) for line in (ROOT / "kibana" / BUNDLES[product]).read_text().splitlines()]


@pytest.mark.parametrize("product", sorted(BUNDLES))
def test_shipped_bundle_is_the_current_export_and_valid(product: str):
    text = (ROOT / "kibana" / BUNDLES[product]).read_text()
    assert text == to_ndjson(saved_objects(product=product)), \
        f"regenerate with: siem-gad kibana export --product {product} > kibana/{BUNDLES[product]}"
    assert validate_bundle(shipped(product), product, view_field_types()) == []
    result = siem_gad("kibana", "validate", "--product", product, str(ROOT / "kibana" / BUNDLES[product]))
    assert "valid for" in result.stdout


def test_validate_names_the_line_of_a_bundle_that_is_not_utf8_or_not_json(tmp_path: Path):
    bundle = tmp_path / "bundle.ndjson"
    first = (ROOT / "kibana" / BUNDLES["kibana"]).read_bytes().splitlines()[0]
    for bad, why in ((b"\xff\xfe", "not UTF-8 text (invalid start byte at byte 0)"), (b"{nope", "not a JSON object")):
        bundle.write_bytes(first + b"\n\n" + bad + b"\n")
        result = siem_gad("kibana", "validate", str(bundle), check=False)
        assert result.returncode == 1 and f"{bundle}:3: {why}" in result.stderr, result.stderr


def test_each_product_refuses_the_others_fields():
    problems = [str(p) for p in validate_bundle(shipped("kibana"), "opensearch-dashboards", view_field_types())]
    assert problems and all("'name' was unexpected" in p for p in problems)
    osd = shipped("opensearch-dashboards")
    osd[3]["coreMigrationVersion"] = "8.8.0"
    assert any("coreMigrationVersion" in str(p) for p in validate_bundle(osd, "opensearch-dashboards"))
    assert validate_bundle(osd, "kibana", view_field_types()) == []  # Kibana has the field


def problems_of(objects: list[dict], product: str = "kibana") -> list[str]:
    return [str(p) for p in validate_bundle(objects, product, view_field_types())]


def test_a_dangling_reference_is_refused():
    objects = shipped("kibana")
    dashboard = objects[-1]
    dashboard["references"][2]["id"] = "siem-gad-nowhere"
    assert problems_of(objects) == [f"dashboard/siem-gad-overview: references.2: "
                                    f"{dashboard['references'][2]['type']}/siem-gad-nowhere is not in the bundle "
                                    f"(dangling reference)"]
    objects = shipped("kibana")
    objects[-1]["attributes"]["panelsJSON"] = objects[-1]["attributes"]["panelsJSON"].replace('"panel_3"', '"panel_9"')
    assert any("panelsJSON.3.panelRefName: 'panel_9' names no reference" in p for p in problems_of(objects))


def test_an_unknown_field_is_refused():
    objects = shipped("kibana")
    objects[3]["attributes"]["colour"] = "red"
    objects[4]["owner"] = "me"
    found = problems_of(objects)
    assert len(found) == 2
    assert "attributes: Additional properties are not allowed ('colour' was unexpected)" in found[0]
    assert "('owner' was unexpected)" in found[1]


def test_a_malformed_nested_json_string_is_refused():
    objects = shipped("kibana")
    objects[3]["attributes"]["visState"] = objects[3]["attributes"]["visState"][:-1]
    objects[-1]["attributes"]["panelsJSON"] = '{"not": "a list"}'
    objects[6]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"] = "{'single': 'quotes'}"
    found = problems_of(objects)
    assert any(p.startswith(f"visualization/{objects[3]['id']}: attributes.visState: not valid JSON") for p in found)
    assert any("attributes.panelsJSON: must hold a JSON list, not dict" in p for p in found)
    assert any("searchSourceJSON: not valid JSON" in p for p in found)


def test_fields_must_be_mapped_with_a_type_the_aggregation_takes():
    objects = shipped("kibana")
    state = json.loads(objects[3]["attributes"]["visState"])
    state["aggs"][1]["params"]["field"] = "message"  # text: no date histogram on it
    objects[3]["attributes"]["visState"] = json.dumps(state)
    objects[6]["attributes"]["columns"].append("siem_gad.no_such_field")
    found = problems_of(objects)
    assert any("aggs.1.params.field: 'message' is mapped text; this needs one of date" in p for p in found)
    assert any("'siem_gad.no_such_field' is not mapped in the index behind 'siem-gad-alerts'" in p for p in found)


def test_migration_versions_must_be_set_and_not_newer_than_the_oldest_server():
    objects = shipped("opensearch-dashboards")
    objects[3]["migrationVersion"] = {"visualization": "8.5.0"}
    del objects[4]["migrationVersion"]
    found = problems_of(objects, "opensearch-dashboards")
    assert any("migrationVersion.visualization: 8.5.0 is newer than opensearch-dashboards 7.10.2" in p for p in found)
    assert any(p.startswith(f"visualization/{objects[4]['id']}: (object): 'migrationVersion' is a required property")
               for p in found)


def test_the_bundle_uses_fields_of_all_three_indices():
    checked = view_field_types()
    views = {r["id"] for o in shipped("kibana") for r in o["references"] if r["type"] == "index-pattern"}
    assert views == set(checked) == {"siem-gad-alerts", "siem-gad-incidents", "siem-gad-status"}


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=10)


@settings(max_examples=150, deadline=None)
@given(position=st.integers(0, 9), key=st.sampled_from(["attributes", "references", "migrationVersion", "id", "type"]),
       value=JSON, nested=st.sampled_from(["visState", "panelsJSON", "uiStateJSON", "optionsJSON"]), text=st.text())
def test_the_validator_reports_any_damage_and_never_crashes(position, key, value, nested, text):
    """Whatever one field of one object is replaced by, the validator answers with problems
    (never an exception), and a nested JSON string replaced by text that is not the JSON the
    server reads is always reported."""
    objects = shipped("kibana")
    damaged = copy.deepcopy(objects)
    damaged[position][key] = value
    assert isinstance(validate_bundle(damaged, "kibana", view_field_types()), list)
    target = next((o for o in objects if nested in o["attributes"]), None)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    expected = list if nested == "panelsJSON" else dict
    if target is not None and not isinstance(parsed, expected):
        target["attributes"][nested] = text
        assert any(f"attributes.{nested}" in str(p) for p in validate_bundle(objects, "kibana"))


class SavedObjectsServer(BaseHTTPRequestHandler):
    """Kibana's or OpenSearch Dashboards' `_import` endpoint as far as a client can tell: the
    xsrf header of its product, one multipart file part of NDJSON, objects it validates."""

    product = "kibana"
    received: list = []

    def log_message(self, *args):
        pass

    def answer(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        header = PRODUCTS[self.product]["xsrf"]
        if self.headers.get(header) is None:
            return self.answer(400, {"statusCode": 400, "error": "Bad Request",
                                     "message": f"Request must contain a {header} header."})
        if not self.path.endswith("/api/saved_objects/_import?overwrite=true"):
            return self.answer(404, {"statusCode": 404, "message": "Not Found"})
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
        parts = list(message.iter_parts()) if message.is_multipart() else []
        files = [p for p in parts if p.get_param("name", header="content-disposition") == "file"]
        if len(files) != 1 or not (files[0].get_filename() or "").endswith(".ndjson"):
            return self.answer(415, {"statusCode": 415, "message": "expected one .ndjson file part"})
        objects = [json.loads(line) for line in files[0].get_content().splitlines() if line.strip()]
        type(self).received.append((self.path, self.headers, objects))
        errors = [{"id": p.object, "error": {"type": "validation", "message": f"{p.where}: {p.message}"}}
                  for p in validate_bundle(objects, self.product, view_field_types())]
        self.answer(200, {"success": not errors, "successCount": len(objects) - len(errors), "errors": errors})


def import_into(tmp_path: Path, product: str, answering: str | None = None):
    handler = type("Server", (SavedObjectsServer,), {"product": answering or product, "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = yaml.safe_load((ROOT / "examples" / "elastic.yaml").read_text())
    config["kibana"].update(url=f"http://127.0.0.1:{server.server_address[1]}", space="soc", product=product)
    path = tmp_path / "elastic.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        result = siem_gad("kibana", "import", "-c", str(path), check=False,
                          env={"KIBANA_API_KEY": "a2V5OnNlY3JldA==", "ES_API_KEY": "x"})
    finally:
        server.shutdown()
    return result, handler.received


@pytest.mark.parametrize("product", sorted(BUNDLES))
def test_import_posts_the_products_objects_with_its_header(tmp_path: Path, product: str):
    result, received = import_into(tmp_path, product)
    assert result.returncode == 0, result.stderr
    assert f"imported {len(saved_objects())} saved objects" in result.stdout
    url, headers, objects = received[-1]
    assert url == "/s/soc/api/saved_objects/_import?overwrite=true"
    assert headers[PRODUCTS[product]["xsrf"]] == "true" and headers["Authorization"] == "ApiKey a2V5OnNlY3JldA=="
    assert objects == saved_objects(product=product)
    assert "a2V5OnNlY3JldA==" not in result.stdout + result.stderr, "credentials are never printed"


def test_import_into_the_other_product_fails_with_its_answer(tmp_path: Path):
    result, received = import_into(tmp_path, "kibana", answering="opensearch-dashboards")
    assert result.returncode == 1 and not received
    assert "HTTP 400" in result.stderr and "osd-xsrf" in result.stderr


@pytest.mark.skipif(not os.environ.get("KIBANA_URL"), reason="a live Kibana: set KIBANA_URL (and KIBANA_API_KEY)")
def test_live_kibana_import(tmp_path: Path):
    config = yaml.safe_load((ROOT / "examples" / "elastic.yaml").read_text())
    config["kibana"]["url"] = os.environ["KIBANA_URL"]
    config["kibana"]["product"] = os.environ.get("KIBANA_PRODUCT", "kibana")
    path = tmp_path / "elastic.yaml"
    path.write_text(yaml.safe_dump(config))
    result = siem_gad("kibana", "import", "-c", str(path), env={"ES_API_KEY": os.environ.get("ES_API_KEY", "x")})
    assert f"imported {len(saved_objects())} saved objects" in result.stdout


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
