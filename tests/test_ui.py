"""The web view (`siem-gad ui`) through Flask's test client: lists, filters, pages, an alert with
its evidence graph, verdicts, the token and CSRF guards, escaping, and the JSON Lines store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import read_alerts, siem_gad
from ui_support import HOSTILE_ID, HOSTILE_MESSAGE, HOSTILE_USER, deploy, hostile_alert

from siem_gad.ui.stores import AlertQuery, JsonlStore


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Path:
    return deploy(tmp_path_factory.mktemp("ui") / "deploy")


@pytest.fixture(scope="module")
def alerts(deployment: Path) -> list[dict]:
    return read_alerts(deployment.parent / "state" / "alerts.jsonl")


@pytest.fixture
def client(deployment: Path):
    from siem_gad.pipeline import App
    from siem_gad.ui.stores import open_store
    from siem_gad.ui.web import create_app

    app = App.open(deployment)
    name, store = open_store(app)
    web = create_app(app, store, sink_name=name)
    web.testing = True
    yield web.test_client()
    app.close()


def rows(html: str) -> list[str]:
    return re.findall(r'data-alert-id="([0-9a-f]+)"', html)


def test_alert_list_pages_through_every_alert_newest_or_riskiest_first(client, alerts):
    assert len(alerts) > 20, "the deployment should alert more than two pages' worth"
    seen: list[str] = []
    page = 1
    while True:
        answer = client.get(f"/alerts?page={page}&per_page=10")
        assert answer.status_code == 200
        found = rows(answer.get_data(as_text=True))
        if not found:
            break
        seen += found
        page += 1
    assert sorted(seen) == sorted(a["siem_gad"]["alert_id"] for a in alerts)  # each alert once
    by_id = {a["siem_gad"]["alert_id"]: a for a in alerts}
    times = [by_id[i]["@timestamp"] for i in seen]
    assert times == sorted(times, reverse=True)
    riskiest = rows(client.get("/alerts?sort=riskiest").get_data(as_text=True))
    risks = [by_id[i]["event"]["risk_score"] for i in riskiest]
    assert risks == sorted(risks, reverse=True) and risks[0] == max(a["event"]["risk_score"] for a in alerts)


def test_filters_keep_only_matching_alerts(client, alerts):
    by_id = {a["siem_gad"]["alert_id"]: a for a in alerts}
    iforest = rows(client.get("/alerts?detector=iforest&sort=riskiest").get_data(as_text=True))
    assert iforest and all(by_id[i]["siem_gad"]["detector"] == "iforest" for i in iforest)
    entity = alerts[0]["siem_gad"]["entity"]["value"]
    part = entity[len(entity) // 2:].upper()
    matched = rows(client.get(f"/alerts?entity={part}").get_data(as_text=True))
    assert matched and all(part.lower() in by_id[i]["siem_gad"]["entity"]["value"].lower() for i in matched)
    times = sorted({a["@timestamp"] for a in alerts})
    middle = times[len(times) // 2]
    later = rows(client.get(f"/alerts?since={middle}").get_data(as_text=True))
    assert later and all(by_id[i]["@timestamp"] >= middle for i in later)
    html = client.get(f"/alerts?severity=high&until={middle}").get_data(as_text=True)
    expected = sum(1 for a in alerts if a["siem_gad"]["severity"] == "high" and a["@timestamp"] < middle)
    assert f"{expected} match" in html


def test_a_filter_that_cannot_be_used_is_named(client):
    answer = client.get("/alerts?since=yesterday-ish")
    assert answer.status_code == 400
    assert "since: &#39;yesterday-ish&#39; is not a time" in answer.get_data(as_text=True)
    assert client.get("/alerts?sort=oldest").status_code == 400


def test_alert_page_shows_scores_explanation_and_evidence_graph(client, alerts):
    alert = max(alerts, key=lambda a: sum(e["unusual"] for e in a["siem_gad"]["graph"]["edges"]))
    graph = alert["siem_gad"]["graph"]
    html = client.get(f"/alerts/{alert['siem_gad']['alert_id']}").get_data(as_text=True)
    info = alert["siem_gad"]
    assert f"{info['score']:.5g}" in html and f"{info['threshold']:.5g}" in html
    assert f"model v{info['model_version']}" in html
    assert html.count('<tr><td class="name">') == len(info["explanation"])
    alerted = [n["value"] for n in graph["nodes"] if n["role"] == "alerted"]
    assert re.findall(r'data-role="alerted" data-kind="[a-z.]+" data-entity="([^"]+)"', html) == alerted
    assert info["entity"]["value"] in alerted or info["level"] == "window"
    assert html.count('class="edge unusual"') == sum(e["unusual"] for e in graph["edges"]) > 0
    assert html.count('class="edge') == len(graph["edges"])
    for event_id in info["evidence"]["event_ids"]:
        assert event_id in html
    assert client.get("/alerts/ffffffffffffffffffffffffffffffff").status_code == 404


def test_every_alert_carries_its_neighbourhood(alerts):
    for alert in alerts:
        graph = alert["siem_gad"]["graph"]
        assert graph["nodes"], alert["siem_gad"]["alert_id"]
        roles = [n["role"] for n in graph["nodes"]]
        assert roles.count("alerted") >= 1 and roles[: roles.count("alerted")] == ["alerted"] * roles.count("alerted")
        for edge in graph["edges"]:
            assert 0 <= edge["a"] < edge["b"] < len(graph["nodes"]) and edge["events"] >= 1
        if alert["siem_gad"]["level"] == "node":
            threshold = alert["siem_gad"]["threshold"]
            for edge in graph["edges"]:
                both = all((graph["nodes"][e]["score"] or float("-inf")) >= threshold for e in (edge["a"], edge["b"]))
                assert edge["unusual"] == both


def test_entity_timeline_draws_each_detector_with_its_threshold(client, alerts):
    alert = next(a for a in alerts if a["siem_gad"]["detector"] == "iforest")
    entity = alert["siem_gad"]["entity"]
    from siem_gad.triage.related import entity_key

    html = client.get(f"/entities/{entity_key(entity['field'], entity['value'])}").get_data(as_text=True)
    assert html.count('class="timeline"') >= 1
    assert 'data-detector="iforest"' in html
    assert 'class="threshold"' in html and 'class="alerted"' in html
    assert alert["siem_gad"]["alert_id"] in html


def test_status_page_shows_each_job_and_its_models(client):
    html = client.get("/status").get_data(as_text=True)
    assert 'id="job-network"' in html and "gcn_hmm" in html and "iforest" in html and "v1" in html


def test_incident_list_and_page(client, deployment):
    incidents = read_alerts(deployment.parent / "state" / "alerts.incidents.jsonl")
    open_ones = [d for d in incidents if d["siem_gad"]["incident"]["status"] == "open"]
    html = client.get("/").get_data(as_text=True)
    top = max(open_ones, key=lambda d: d["siem_gad"]["incident"]["risk_score"])
    assert top["siem_gad"]["incident"]["id"] in html
    page = client.get(f"/incidents/{top['siem_gad']['incident']['id']}").get_data(as_text=True)
    for alert_id in top["siem_gad"]["incident"]["alert_ids"]:
        assert alert_id in page


def test_a_verdict_needs_the_form_token_and_then_suppresses_and_shows(client, alerts, deployment):
    alert_id = next(a for a in alerts if a["siem_gad"]["detector"] == "iforest")["siem_gad"]["alert_id"]
    assert client.post(f"/alerts/{alert_id}/feedback", data={"verdict": "false_positive"}).status_code == 403
    html = client.get(f"/alerts/{alert_id}").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    assert client.post(f"/alerts/{alert_id}/feedback", data={"verdict": "false_positive", "csrf": csrf},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    answer = client.post(f"/alerts/{alert_id}/feedback", data={"verdict": "false_positive", "csrf": csrf,
                                                               "scope": "entity+rule", "note": "backup job"})
    assert answer.status_code == 303
    assert "Marked <b>false_positive</b>" in client.get(answer.headers["Location"]).get_data(as_text=True)
    assert rows(client.get("/alerts?verdict=false_positive").get_data(as_text=True)) == [alert_id]
    assert alert_id not in rows(client.get("/alerts?verdict=none&detector=iforest").get_data(as_text=True))
    listed = json.loads(siem_gad("feedback", "list", "-c", str(deployment), "--json").stdout)
    assert [v["target"] for v in listed] == [alert_id] and listed[0]["note"] == "backup job"


def test_a_token_guards_every_page_but_the_login(deployment):
    from siem_gad.pipeline import App
    from siem_gad.ui.stores import open_store
    from siem_gad.ui.web import create_app

    app = App.open(deployment)
    try:
        name, store = open_store(app)
        client = create_app(app, store, sink_name=name, token="s3cret").test_client()
        answer = client.get("/alerts?sort=riskiest")
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
        assert client.get("/alerts", headers={"Authorization": "Bearer wrong"}).status_code == 302
        assert client.get("/alerts", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.post("/login", data={"token": "nope"}).status_code == 401
        signed = client.post("/login?next=/status", data={"token": "s3cret"})
        assert signed.status_code == 302 and signed.headers["Location"] == "/status"
        assert "HttpOnly" in signed.headers["Set-Cookie"] and "SameSite=Strict" in signed.headers["Set-Cookie"]
        assert client.get("/status").status_code == 200  # the cookie now
        assert client.post("/login?next=//evil.example", data={"token": "s3cret"}).headers["Location"] == "/"
    finally:
        app.close()


def test_the_ui_refuses_another_host_without_a_token(deployment):
    result = siem_gad("ui", "-c", str(deployment), "--host", "0.0.0.0", check=False, env={"SIEM_GAD_UI_TOKEN": ""})
    assert result.returncode == 1 and "SIEM_GAD_UI_TOKEN" in result.stderr


def test_values_from_events_render_as_text(client, deployment, alerts):
    path = deployment.parent / "state" / "alerts.jsonl"
    with path.open("a") as handle:
        handle.write(json.dumps(hostile_alert(alerts[0])) + "\n")
    for url in (f"/alerts/{HOSTILE_ID}", "/alerts?entity=img", "/entities/user:" + HOSTILE_USER):
        answer = client.get(url)
        html = answer.get_data(as_text=True)
        assert answer.status_code == 200, url
        assert "<img" not in html and "<script>" not in html and "<svg onload" not in html and "<i>id" not in html
        assert "script-src 'none'" in answer.headers["Content-Security-Policy"]
    html = client.get(f"/alerts/{HOSTILE_ID}").get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&#34;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;" in html  # quotes escaped too
    assert HOSTILE_MESSAGE not in html


# ---------------------------------------------------------------------- the JSON Lines store
def alert_doc(number: int, risk: float, text: str) -> dict:
    return {"@timestamp": f"2026-01-{1 + number // 24:02d}T{number % 24:02d}:00:00Z", "message": text,
            "event": {"id": f"{number:032x}", "risk_score": risk},
            "rule": {"id": "r"}, "siem_gad": {"alert_id": f"{number:032x}", "severity": "low", "detector": "d",
                                               "job": "j", "entity": {"field": "user.name", "value": text}}}


@settings(max_examples=60, deadline=None)
@given(risks=st.lists(st.floats(0, 100, allow_nan=False), min_size=0, max_size=40),
       texts=st.lists(st.text(min_size=0, max_size=12), min_size=40, max_size=40),
       junk=st.lists(st.sampled_from(["", "{", "not json", "[1, 2]", "{\"siem_gad\": 3}", "\x00\xff"]), max_size=5),
       per_page=st.integers(1, 7), torn=st.booleans())
def test_jsonl_store_reads_every_alert_once_and_sets_bad_lines_aside(tmp_path_factory, risks, texts, junk, per_page,
                                                                     torn):
    path = tmp_path_factory.mktemp("store") / "alerts.jsonl"
    docs = [alert_doc(n, risk, texts[n]) for n, risk in enumerate(risks)]
    lines = [json.dumps(d) for d in docs] + junk + [json.dumps(d) for d in docs[:1]]  # a repeat counts once
    path.write_text("".join(line + "\n" for line in lines) + ('{"half": ' if torn else ""), encoding="utf-8")
    store = JsonlStore(path, None)
    seen, page = [], 1
    while True:
        found = store.alerts(AlertQuery(sort="riskiest", page=page, per_page=per_page), {})
        assert found.total == len(docs)
        if not found.rows:
            break
        seen += found.rows
        page += 1
    assert sorted(r.alert_id for r in seen) == sorted(d["siem_gad"]["alert_id"] for d in docs)
    assert [r.risk for r in seen] == sorted((r.risk for r in seen), reverse=True)
    for doc in docs[:3]:
        assert store.alert(doc["siem_gad"]["alert_id"]) == doc
    if torn:  # the line being written is read once it is complete
        with path.open("a") as handle:
            handle.write('"x"}\n' + json.dumps(alert_doc(99, 50.0, "late")) + "\n")
        assert store.alerts(AlertQuery(), {}).total == len(docs) + 1


def test_jsonl_store_follows_appends_and_a_replaced_file(tmp_path: Path):
    path = tmp_path / "alerts.jsonl"
    path.write_text(json.dumps(alert_doc(1, 10, "a")) + "\n")
    store = JsonlStore(path, None)
    assert store.alerts(AlertQuery(), {}).total == 1
    with path.open("a") as handle:
        handle.write(json.dumps(alert_doc(2, 20, "b")) + "\n")
    assert [r.entity_value for r in store.alerts(AlertQuery(), {}).rows] == ["b", "a"]
    replacement = tmp_path / "new.jsonl"
    replacement.write_text(json.dumps(alert_doc(3, 30, "c")) + "\n")
    replacement.replace(path)  # rotated: read again from the start
    assert [r.entity_value for r in store.alerts(AlertQuery(), {}).rows] == ["c"]
