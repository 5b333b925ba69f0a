"""Incidents, heartbeats and analysts' verdicts against the OpenSearch-compatible test server."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml
from opensearchpy import OpenSearch

from conftest import siem_gad
from test_elastic import ALERTS_INDEX, ENV, alert_docs, base, clone_url, es_config  # noqa: F401 - fixtures
from test_elastic import index_docs as docs

INCIDENTS, STATUS = "siem-gad-incidents", "siem-gad-status"


def set_end(config: Path, end: str) -> None:
    data = yaml.safe_load(config.read_text())
    data["sources"]["siem"]["end"] = end
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def test_incidents_and_heartbeats_reach_their_indices_and_a_kibana_verdict_stops_its_scope(tmp_path: Path,
                                                                                           clone_url: str):
    # the capture's busy first two hours are the training range: alert on them too
    config = es_config(tmp_path, clone_url, job_extra={"alert_training_windows": True})
    set_end(config, "2019-01-10T18:00:00Z")
    siem_gad("run", "-c", str(config), "--once", env=ENV)
    alerts = alert_docs(clone_url)
    incidents = docs(clone_url, INCIDENTS)
    assert alerts and incidents
    assert all(i["_id"] == i["siem_gad"]["incident"]["id"] for i in incidents)
    live = [i for i in incidents if i["siem_gad"]["incident"]["status"] != "merged"]  # open or on watch
    members = Counter(a for i in live for a in i["siem_gad"]["incident"]["alert_ids"])
    assert set(members) == {a["_id"] for a in alerts} and max(members.values()) == 1
    status = docs(clone_url, STATUS)
    assert len(status) == 1 and status[0]["siem_gad"]["status"]["outcome"] == "ok"
    assert status[0]["siem_gad"]["status"]["models"][0]["state"] == "current"

    # The analyst marks an alert a false positive in Kibana: a field on the alert document.
    marked = max(alerts, key=lambda a: a["event"]["risk_score"])
    entity = marked["siem_gad"]["entity"]
    client = OpenSearch(hosts=[clone_url])
    client.update(index=ALERTS_INDEX, id=marked["_id"], body={"doc": {"siem_gad": {"feedback": {
        "verdict": "false_positive", "scope": "entity", "by": "analyst1", "note": "our NAS"}}}}, refresh=True)
    set_end(config, "2019-01-10T22:00:00Z")
    siem_gad("run", "-c", str(config), "--once", env=ENV)
    listing = siem_gad("feedback", "list", "-c", str(config), env=ENV).stdout
    assert f"{marked['_id']} false_positive entity" in listing and "analyst1" in listing and "(siem)" in listing
    later = [a for a in alert_docs(clone_url) if a["siem_gad"]["window"]["start"] >= "2019-01-10T18:00:00Z"]
    assert later, "the second pass wrote no alerts"
    assert not [a for a in later if a["siem_gad"]["entity"]["value"] == entity["value"]]
    assert len(docs(clone_url, STATUS)) == 2

    # A verdict on an incident from the command line is written onto the incident and every
    # alert document in it.
    other = later[0]
    incident = next(i for i in docs(clone_url, INCIDENTS) if other["_id"] in i["siem_gad"]["incident"]["alert_ids"])
    out = siem_gad("feedback", incident["_id"], "-c", str(config), "--verdict", "true_positive", env=ENV).stdout
    count = incident["siem_gad"]["incident"]["alert_count"]
    assert f"({count} alert(s)) recorded" in out and f"{count} alert document(s) marked" in out
    stored = client.get(index=ALERTS_INDEX, id=other["_id"])["_source"]
    assert stored["siem_gad"]["feedback"]["verdict"] == "true_positive"
    incident = next(i for i in docs(clone_url, INCIDENTS) if i["_id"] == incident["_id"])
    assert incident["siem_gad"]["incident"]["feedback"]["verdict"] == "true_positive"
    # Every incident is stored once, under its id, whatever was rewritten.
    ids = [i["_id"] for i in docs(clone_url, INCIDENTS)]
    assert len(ids) == len(set(ids))


def test_an_unreachable_siem_keeps_the_heartbeat_in_the_dead_letter_queue(tmp_path: Path, clone_url: str):
    config = es_config(tmp_path, clone_url)
    data = yaml.safe_load(config.read_text())
    data["sinks"]["siem"].update(hosts=["http://127.0.0.1:9"], retry={"attempts": 1, "initial": 0.05, "maximum": 0.1},
                                 request_timeout=1)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    result = siem_gad("run", "-c", str(config), "--once", env=ENV, check=False)
    assert "pass failed" in result.stderr
    listed = siem_gad("deadletter", "list", "-c", str(config), env=ENV).stdout
    assert "1 dead-lettered" in listed
    data["sinks"]["siem"]["hosts"] = [clone_url]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    replay = siem_gad("deadletter", "replay", "-c", str(config), env=ENV)
    assert "1 replayed, 0 still rejected" in replay.stdout
    status = docs(clone_url, STATUS)
    assert len(status) == 1 and status[0]["siem_gad"]["status"]["outcome"] == "error"
    assert status[0]["siem_gad"]["status"]["errors"] == 1 and status[0]["siem_gad"]["status"]["reason"]
