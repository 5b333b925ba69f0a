"""The elasticsearch source and sink against a real OpenSearch-compatible server process.

The server comes from the `osmem-server` wheel; it holds real IoT-23 Zeek flows (capture
42-1: 4,426 flows over 8 hours from a Raspberry Pi lab network) indexed as ECS documents.
Both clients are covered: opensearch-py as is, and the official elasticsearch client through
`elastic_support.PlainJsonNode` (the test server rejects its compatibility media type).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from opensearchpy import OpenSearch
from osmem_server import OsmemServer

from conftest import require_data, siem_gad, wait_for
from elastic_support import FaultProxy, index_documents, iot23_documents, sample_alerts
from siem_gad.elastic.mappings import field_types

TESTS = Path(__file__).resolve().parent
ENV = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
EVENTS_INDEX = "logs-iot23"
ALERTS_INDEX = "siem-gad-alerts"
END = "2019-01-10T22:00:00Z"  # the capture ends at 21:55
FLAVORS = {
    "opensearch": {"flavor": "opensearch"},
    "elasticsearch": {"flavor": "elasticsearch", "node_class": "elastic_support:PlainJsonNode"},
}


@pytest.fixture(scope="module")
def base():
    """A server whose base holds the events; each test works on a copy-on-write clone."""
    require_data("iot23")
    server = OsmemServer.start(japanese=False)
    index_documents(OpenSearch(hosts=[server.url]), EVENTS_INDEX, iot23_documents())
    server.freeze()
    yield server
    server.close()


@pytest.fixture
def clone_url(base):
    clone = base.clone()
    yield clone.url
    clone.close()


def es_config(directory: Path, url: str, flavor: str = "opensearch", *, sink_extra: dict | None = None,
              job_extra: dict | None = None, connection: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    conn = {"hosts": [url], **FLAVORS[flavor], **(connection or {})}
    config = {
        "state_dir": "state",
        "sources": {"siem": {"type": "elasticsearch", "index": "logs-*", "end": END, "query_delay": "1m",
                             "page_size": 500, **conn}},
        "sinks": {"siem": {"type": "elasticsearch", "index": ALERTS_INDEX, "refresh": True, **conn, **(sink_extra or {})}},
        "jobs": {"flows": {
            "source": "siem", "window": "15m", "batch_windows": 4, "schedule": "1s",
            "graph": {"type": "bipartite", "source_field": "source.ip", "target_field": "destination.ip"},
            "detectors": {"iforest": {"type": "iforest", "n_estimators": 50, "training": {"windows": 12}}},
            "sinks": ["siem"], **(job_extra or {}),
        }},
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / "rules").mkdir(exist_ok=True)
    (directory / "rules" / "flow-outlier.yml").write_text(yaml.safe_dump({
        "name": "Flow endpoint unlike its history", "job": "flows", "detector": "iforest", "severity": "high",
        "condition": {"top_k": 2}, "threat": {"techniques": ["T1071"], "tactics": ["TA0011"]}}))
    return directory / "config.yaml"


def evidence_page(config: Path, alert: dict) -> str:
    """The web view's page of `alert`, served over the config's elasticsearch sink."""
    from siem_gad.pipeline import App
    from siem_gad.ui.stores import open_store
    from siem_gad.ui.web import create_app

    app = App.open(config)
    try:
        name, store = open_store(app)
        return create_app(app, store, sink_name=name).test_client().get(f"/alerts/{alert['_id']}").get_data(as_text=True)
    finally:
        app.close()


def leaf_fields(doc: dict, prefix: str = "") -> set[str]:
    """Dotted names of every leaf of a document; arrays of objects map like objects."""
    names = set()
    for key, value in doc.items():
        name = prefix + key
        items = value if isinstance(value, list) else [value]
        if items and all(isinstance(v, dict) for v in items):
            for item in items:
                names |= leaf_fields(item, name + ".")
        else:
            names.add(name)
    return names


def index_docs(url: str, index: str) -> list[dict]:
    """Every document of an index (none when it does not exist), with its `_id`."""
    client = OpenSearch(hosts=[url])
    if not client.indices.exists(index=index):
        return []
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"size": 10_000, "query": {"match_all": {}}})["hits"]["hits"]
    return [{"_id": h["_id"], **h["_source"]} for h in hits]


def alert_docs(url: str) -> list[dict]:
    return index_docs(url, ALERTS_INDEX)


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_run_reads_events_and_writes_mapped_ecs_alerts_once(tmp_path: Path, clone_url: str, flavor: str):
    config = es_config(tmp_path, clone_url, flavor)
    setup = siem_gad("setup", "-c", str(config), env=ENV)
    assert f"index template siem-gad-alerts for {ALERTS_INDEX}" in setup.stdout
    siem_gad("setup", "-c", str(config), env=ENV)  # safe to repeat
    siem_gad("run", "-c", str(config), "--once", env=ENV)

    alerts = alert_docs(clone_url)
    assert alerts, "the run wrote no alerts"
    assert all(a["_id"] == a["siem_gad"]["alert_id"] == a["event"]["id"] for a in alerts)
    events = OpenSearch(hosts=[clone_url])
    for alert in alerts:
        assert alert["event"]["kind"] == "alert" and alert["rule"]["name"] == "Flow endpoint unlike its history"
        assert alert["siem_gad"]["explanation"] and alert["siem_gad"]["summary"]
        assert alert["threat"]["technique"]["id"] == ["T1071"]
        entity = alert["siem_gad"]["entity"]
        assert alert[entity["field"].split(".")[0]]["ip"] == entity["value"]  # ECS entity field set
        evidence = alert["siem_gad"]["evidence"]["event_ids"]
        found = events.search(index=EVENTS_INDEX, body={"query": {"terms": {"event.id": evidence}}, "size": 0,
                                                        "track_total_hits": True})
        assert found["hits"]["total"]["value"] == len(evidence), "evidence ids point back at indexed events"

    mapping = events.indices.get_mapping(index=ALERTS_INDEX)[ALERTS_INDEX]["mappings"]
    assert mapping["dynamic"] == "strict"
    actual = field_types(mapping)
    for name in {k for a in alerts for k in leaf_fields({k: v for k, v in a.items() if k != "_id"})}:
        if name.startswith(("siem_gad.details.", "siem_gad.graph.")):
            continue  # kept in _source, not indexed (enabled: false)
        assert name in actual, f"alert field {name} has no mapping"
    assert actual["source.ip"] == "ip" and actual["siem_gad.score"] == "double" and actual["@timestamp"] == "date"
    assert all(a["siem_gad"]["graph"]["nodes"] for a in alerts) and actual["siem_gad.graph"] == "object"
    page = evidence_page(config, alerts[0])  # the web view fetches the evidence from the source by id
    for event_id in alerts[0]["siem_gad"]["evidence"]["event_ids"]:
        assert f"<b>event.id</b> {event_id}</span>" in page
    assert page.count("<tr><td><span class=\"field\">") == len(alerts[0]["siem_gad"]["evidence"]["event_ids"])
    shown = siem_gad("explain", alerts[0]["_id"], "-c", str(config), env=ENV).stdout  # read back from the index
    assert f"entity   {alerts[0]['siem_gad']['entity']['field']} = {alerts[0]['siem_gad']['entity']['value']}" in shown

    # A repeated pass writes nothing: first with the checkpoint (nothing due), then with the
    # checkpoint lost (every batch is sent again and answered 409 per alert).
    siem_gad("run", "-c", str(config), "--once", env=ENV)
    with sqlite3.connect(tmp_path / "state" / "state.sqlite") as db:
        db.execute("DELETE FROM checkpoints")
    repeat = siem_gad("run", "-c", str(config), "--once", env=ENV)
    assert "(0 new" in repeat.stderr and f"({len(alerts)} new" not in repeat.stderr
    again = alert_docs(clone_url)
    assert sorted(a["_id"] for a in again) == sorted(a["_id"] for a in alerts)


def test_rejected_alerts_go_to_the_dead_letter_queue_and_replay_after_the_fix(tmp_path: Path, clone_url: str):
    # A local plugin adds a field the strict alert mapping does not know to some alerts.
    plugins = tmp_path / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "ticketing.py").write_text(
        "from siem_gad import hookimpl\n\n"
        "@hookimpl\n"
        "def enrich_alert(alert, job):\n"
        "    if int(alert['siem_gad']['alert_id'][0], 16) < 8:\n"
        "        alert['siem_gad']['ticket'] = 'SOC-' + alert['siem_gad']['alert_id'][:6]\n")
    config = es_config(tmp_path, clone_url)
    siem_gad("run", "-c", str(config), "--once", env=ENV)

    written = alert_docs(clone_url)
    listing = siem_gad("deadletter", "list", "-c", str(config), "--json", env=ENV)
    dead = json.loads(listing.stdout)
    assert dead and written, "some alerts are rejected, the others written"
    assert all(d["status"] == 400 and "strict_dynamic_mapping_exception" in d["error"] for d in dead)
    assert all("ticket" in d["document"]["siem_gad"] for d in dead)
    assert not any("ticket" in a["siem_gad"] for a in written)
    status = json.loads(siem_gad("status", "-c", str(config), "--json", env=ENV).stdout)[0]
    assert status["checkpoint"] == END, "dead-lettered alerts count as handled: the job went on"
    assert status["dead_letters"] == len(dead)
    assert "DEAD-LETTERED" in siem_gad("status", "-c", str(config), env=ENV).stdout

    # Replay before the fix: still rejected, kept, exit status 1.
    failed = siem_gad("deadletter", "replay", "-c", str(config), env=ENV, check=False)
    assert failed.returncode == 1 and f"0 replayed, {len(dead)} still rejected" in failed.stdout

    # The fix: map the plugin's field, apply it to the existing index, replay.
    data = yaml.safe_load(config.read_text())
    data["sinks"]["siem"]["extra_mappings"] = {"siem_gad": {"properties": {"ticket": {"type": "keyword"}}}}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    assert "mappings updated" in siem_gad("setup", "-c", str(config), env=ENV).stdout
    replay = siem_gad("deadletter", "replay", "-c", str(config), env=ENV)
    assert f"{len(dead)} replayed, 0 still rejected" in replay.stdout
    assert json.loads(siem_gad("deadletter", "list", "-c", str(config), "--json", env=ENV).stdout) == []
    final = alert_docs(clone_url)
    assert len(final) == len(written) + len(dead)
    assert {d["alert_id"] for d in dead} <= {a["_id"] for a in final}


def _sink(url: str, state_dir: Path, **params):
    from siem_gad.sinks.elasticsearch import ElasticsearchSink
    from siem_gad.state import StateStore

    params = {"hosts": [url], "flavor": "opensearch", "refresh": True,
              "retry": {"attempts": 4, "initial": 0.01, "maximum": 0.05}, **params}
    return ElasticsearchSink(**params).bind("siem", StateStore(state_dir))


def test_429_and_5xx_are_retried_with_backoff(tmp_path: Path, clone_url: str):
    bulk_faults = iter([429, 429, 503])
    proxy = FaultProxy(clone_url, lambda method, path: next(bulk_faults, None) if "_bulk" in path else None)
    try:
        sink = _sink(proxy.url, tmp_path)
        assert sink.write(sample_alerts(5)) == 5
        assert proxy.faults_sent == 3
        assert len(alert_docs(clone_url)) == 5
        assert sink.state.dead_letters() == []
    finally:
        proxy.close()


def test_a_sink_that_stays_overloaded_raises_and_keeps_nothing(tmp_path: Path, clone_url: str):
    from siem_gad.sinks.elasticsearch import SinkRejected

    proxy = FaultProxy(clone_url, lambda method, path: 429 if "_bulk" in path else None)
    try:
        sink = _sink(proxy.url, tmp_path)
        with pytest.raises(SinkRejected, match="not stored after 4 tries"):
            sink.write(sample_alerts(3))
        assert proxy.faults_sent == 4
        assert sink.state.dead_letters() == [], "overload is not a rejection: the pass is repeated instead"
    finally:
        proxy.close()


def test_source_pages_by_search_after_and_retries_search_errors(tmp_path: Path, clone_url: str):
    from siem_gad.sources.elasticsearch import ElasticsearchSource
    from siem_gad.state import StateStore
    from siem_gad.timeutil import parse_time

    faults = iter([503, 429])
    proxy = FaultProxy(clone_url, lambda method, path: next(faults, None) if "_search" in path else None)
    try:
        source = ElasticsearchSource(hosts=[proxy.url], flavor="opensearch", index="logs-*", page_size=100,
                                     retry={"attempts": 3, "initial": 0.01}).bind("siem", StateStore(tmp_path))
        first, horizon = source.bounds(None)
        assert first.isoformat().startswith("2019-01-10T13:34:42")
        a = source.read(parse_time("2019-01-10T13:00:00Z"), parse_time("2019-01-10T16:00:00Z"), None)
        b = source.read(parse_time("2019-01-10T16:00:00Z"), parse_time(END), a.cursor)
    finally:
        proxy.close()
    assert proxy.faults_sent == 2
    documents = iot23_documents()
    assert len(a.events) + len(b.events) == len(documents), "every event read once across the boundary"
    assert set(a.events["event.id"]).isdisjoint(b.events["event.id"])
    assert a.stats["pages"] == len(a.events) // 100 + 1
    assert a.cursor["until"] == "2019-01-10T16:00:00Z" and len(a.cursor["sort"]) == 2
    assert str(a.events["source.ip"].dtype) == "category" and a.events["@timestamp"].is_monotonic_increasing


def test_event_times_come_from_the_servers_reading_of_the_time_field(tmp_path: Path):
    """An index whose time field is mapped `epoch_second`, a custom format or `date_nanos` keeps
    in `_source` what was indexed: 1767600000 (seconds, read before as milliseconds: 1970-01-21),
    '05.01.2026 08:30' (day first). Such events fell outside every window the job read and were
    lost without a word. Their time is now the hit's sort value, the server's own reading."""
    from siem_gad.sources.elasticsearch import ElasticsearchSource
    from siem_gad.state import StateStore
    from siem_gad.timeutil import parse_time

    server = OsmemServer.start(japanese=False)
    try:
        client = OpenSearch(hosts=[server.url])
        for index, mapping, stamp in (("logs-a", {"format": "epoch_second"}, 1767600000),
                                      ("logs-b", {"format": "dd.MM.yyyy HH:mm||strict_date_optional_time"},
                                       "05.01.2026 08:30"),
                                      ("logs-c", {"type": "date_nanos"}, "2026-01-05T08:45:00.123456789Z")):
            client.indices.create(index=index, body={"mappings": {"properties": {"@timestamp": {"type": "date",
                                                                                                   **mapping}}}})
            client.index(index=index, body={"@timestamp": stamp, "source": {"ip": index}}, refresh=True)
        source = ElasticsearchSource(hosts=[server.url], flavor="opensearch", index="logs-*",
                                     end="2026-02-01T00:00:00Z").bind("siem", StateStore(tmp_path))
        events = source.read(parse_time("2026-01-05T08:00:00Z"), parse_time("2026-01-05T09:00:00Z"), None).events
    finally:
        server.close()
    assert events["source.ip"].astype(str).tolist() == ["logs-a", "logs-b", "logs-c"]
    assert [t.isoformat() for t in events["@timestamp"]] == [
        "2026-01-05T08:00:00+00:00", "2026-01-05T08:30:00+00:00", "2026-01-05T08:45:00.123456789+00:00"]


def test_events_indexed_after_their_window_was_read_are_counted_once_as_late_and_named(tmp_path: Path, caplog):
    """A shipper's backlog indexed after its windows were read was lost without a word (the
    next read starts at the checkpoint). Such events are now counted as late, once, by the first
    read after they arrive, and named in a warning."""
    import logging

    from siem_gad.sources.elasticsearch import ElasticsearchSource
    from siem_gad.state import StateStore
    from siem_gad.timeutil import isoformat, parse_time, utcnow

    def put(client, doc_id: str, stamp: str, ingested: bool = True) -> None:
        body = {"@timestamp": stamp, "source": {"ip": doc_id}, **({"event": {"ingested": isoformat(utcnow())}}
                                                                   if ingested else {})}
        client.index(index="logs-a", id=doc_id, body=body, refresh=True)

    server = OsmemServer.start(japanese=False)
    try:
        client = OpenSearch(hosts=[server.url])
        client.indices.create(index="logs-a", body={"mappings": {"properties": {
            "@timestamp": {"type": "date"}, "event": {"properties": {"ingested": {"type": "date"}}}}}})
        put(client, "on-time", "2026-01-05T08:10:00Z")
        source = ElasticsearchSource(hosts=[server.url], flavor="opensearch", index="logs-*",
                                     end="2026-02-01T00:00:00Z").bind("siem", StateStore(tmp_path))
        hour = [parse_time(f"2026-01-05T{h:02d}:00:00Z") for h in (8, 9, 10, 11)]
        first = source.read(hour[0], hour[1], None)
        time.sleep(2.5)  # past the read's margin
        put(client, "late", "2026-01-05T08:20:00Z")  # window 08:00 was read already
        put(client, "late-unstamped", "2026-01-05T08:30:00Z", ingested=False)  # no event.ingested: not seen
        put(client, "next", "2026-01-05T09:10:00Z")
        with caplog.at_level(logging.WARNING, logger="siem_gad.sources.elasticsearch"):
            second = source.read(hour[1], hour[2], first.cursor)
            time.sleep(2.5)  # an event indexed within the margin of a read is the next read's to count
            third = source.read(hour[2], hour[3], second.cursor)
            fourth = source.read(hour[3], hour[3] + (hour[1] - hour[0]), third.cursor)
    finally:
        server.close()
    assert first.events["source.ip"].astype(str).tolist() == ["on-time"] and "late" not in first.stats
    assert second.events["source.ip"].astype(str).tolist() == ["next"]
    # counted once, by one read, not the on-time or next events indexed just before their reads
    assert [r.stats.get("late", 0) for r in (second, third, fourth)] in ([1, 0, 0], [0, 1, 0])
    assert "1 event(s) were indexed after their window had been read" in caplog.text
    assert "logs-a/late" in caplog.text and "raise query_delay" in caplog.text


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
@pytest.mark.parametrize("auth, header", [
    ({"api_key": "aWQ6a2V5"}, "ApiKey aWQ6a2V5"),
    ({"username": "elastic", "password": "s3cret"}, "Basic ZWxhc3RpYzpzM2NyZXQ="),
    ({"bearer_token": "tok"}, "Bearer tok"),
])
def test_every_request_carries_the_configured_credentials(tmp_path: Path, clone_url: str, flavor: str, auth: dict,
                                                          header: str):
    from siem_gad.sources.elasticsearch import ElasticsearchSource
    from siem_gad.state import StateStore

    proxy = FaultProxy(clone_url)
    try:
        source = ElasticsearchSource(hosts=[proxy.url], index="logs-*", **FLAVORS[flavor], **auth)
        source.bind("siem", StateStore(tmp_path))
        assert source.bounds(None)[0] is not None
        source.close()
    finally:
        proxy.close()
    assert proxy.requests and all(h.get("authorization") == header for _, _, h in proxy.requests)
    assert "s3cret" not in repr(source.params) and "aWQ6a2V5" not in repr(source.params)


def _checkpoint(state: Path) -> tuple[str | None, int]:
    """(the job's watermark, how many passes failed so far)."""
    try:
        with sqlite3.connect(state / "state.sqlite") as db:
            row = db.execute("SELECT watermark FROM checkpoints").fetchone()
            errors = db.execute("SELECT COUNT(*) FROM passes WHERE status = 'error'").fetchone()[0]
    except sqlite3.OperationalError:
        return None, 0
    return (row[0] if row else None), errors


def test_server_stopped_mid_run_then_started_again_loses_no_alert(tmp_path: Path, clone_url: str):
    # Reference: the same job on an undisturbed copy of the data.
    reference = es_config(tmp_path / "reference", clone_url)
    siem_gad("run", "-c", str(reference), "--once", env=ENV)
    expected = {a["_id"] for a in alert_docs(clone_url)}
    assert expected

    server = OsmemServer.start(japanese=False)
    stopped = []

    def stop_after_first_bulk(method: str, path: str, status: int) -> None:
        # The first batch's alerts are written; the server stops before the job can
        # refresh and commit its checkpoint: that batch must be repeated without duplicates.
        if "_bulk" in path and not stopped:
            stopped.append(True)
            os.kill(server.pid, signal.SIGSTOP)

    proxy = FaultProxy(server.url, after=stop_after_first_bulk)
    state = tmp_path / "live" / "state"
    try:
        index_documents(OpenSearch(hosts=[server.url]), EVENTS_INDEX, iot23_documents())
        config = es_config(tmp_path / "live", proxy.url, connection={
            "request_timeout": 1, "retry": {"attempts": 2, "initial": 0.1, "maximum": 0.2}})
        with (tmp_path / "live.log").open("w") as log:
            run = subprocess.Popen([sys.executable, "-m", "siem_gad", "run", "-c", str(config)], stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, **ENV})
            try:
                wait_for(lambda: _checkpoint(state)[1] >= 2, "passes failing while the server is stopped", 240)
                stalled = _checkpoint(state)[0]
                os.kill(server.pid, signal.SIGCONT)
                wait_for(lambda: _checkpoint(state)[0] == END, "the job to catch up", 120)
            finally:
                os.kill(server.pid, signal.SIGCONT)
                run.send_signal(signal.SIGTERM)
                run.wait(60)
        output = (tmp_path / "live.log").read_text()
        assert stopped and stalled != END, "the outage happened before the job was done"
        assert run.returncode == 0, output[-3000:]
        assert "pass failed" in output
        assert {a["_id"] for a in alert_docs(server.url)} == expected
    finally:
        proxy.close()
        server.close()


def test_flavor_auto_asks_the_root_endpoint(clone_url: str):
    from siem_gad.elastic.client import ConnectionParams, ElasticError, connect

    client = connect(ConnectionParams(hosts=[clone_url]))
    assert client.flavor == "opensearch"
    client.close()
    with pytest.raises(ElasticError, match="GET http://127.0.0.1:9/"):
        connect(ConnectionParams(hosts=["http://127.0.0.1:9"], retry={"attempts": 1}))


def _mapped_type(url: str, field: str) -> str:
    from siem_gad.elastic.mappings import field_types

    mapping = OpenSearch(hosts=[url]).indices.get_mapping(index=ALERTS_INDEX)
    return field_types(next(iter(mapping.values()))["mappings"])[field]


@pytest.mark.parametrize("lost", ["index", "index and template"])
def test_a_lost_alert_index_is_recreated_from_its_template(tmp_path: Path, clone_url: str, lost: str):
    """Defect 17.3: after the cluster lost the index, alerts went into an auto-created index
    with dynamic mapping (source.ip as text)."""
    sink = _sink(clone_url, tmp_path)
    assert sink.write(sample_alerts(3)) == 3
    client = OpenSearch(hosts=[clone_url])
    client.indices.delete(index=ALERTS_INDEX)
    if lost == "index and template":  # a new cluster
        client.indices.delete_index_template(name="siem-gad-alerts")
    assert sink.write(sample_alerts(5)) == 5
    assert _mapped_type(clone_url, "source.ip") == "ip"
    assert len(alert_docs(clone_url)) == 5


def test_a_conflicting_index_mapping_is_refused_naming_the_field_and_both_types(tmp_path: Path, clone_url: str):
    """Defect 17.3: a conflicting existing mapping failed with a bare 'HTTP 400: illegal_argument_exception'."""
    from siem_gad.sinks.elasticsearch import SinkRejected

    OpenSearch(hosts=[clone_url]).indices.create(index=ALERTS_INDEX, body={
        "mappings": {"properties": {"source": {"properties": {"ip": {"type": "text"}}}}}})
    sink = _sink(clone_url, tmp_path)
    with pytest.raises(SinkRejected, match=r"source\.ip: index siem-gad-alerts maps it as text, the template as ip"):
        sink.write(sample_alerts(2))
    deploy = tmp_path / "deploy"
    out = siem_gad("setup", "-c", str(es_config(deploy, clone_url)), cwd=deploy, check=False)
    assert out.returncode != 0 and "source.ip: index siem-gad-alerts maps it as text, the template as ip" in out.stderr


def test_on_ray_the_workers_read_the_index_in_slices_and_the_alerts_are_the_local_ones(tmp_path: Path, base):
    """`engine: ray`: each run of windows is read from the server by a worker's own copy of the
    source (its own client and point in time), built there, and the alert documents written
    from the driver equal those of the local engine."""
    from conftest import require_module
    from siem_gad.pipeline import App
    from siem_gad.scheduler import run_once

    require_module("ray", extra="ray")
    import threading

    documents = {}
    for engine in ("local", "ray"):
        clone = base.clone()
        try:
            config = es_config(tmp_path / engine, clone.url, job_extra={"batch_windows": 8})
            settings = yaml.safe_load(config.read_text())
            settings["execution"] = {"engine": engine, "workers": 2}
            config.write_text(yaml.safe_dump(settings, sort_keys=False))
            app = App.open(config)
            try:
                assert all(o.status == "ok" for o in run_once(app, ["flows"], threading.Event()))
                if engine == "ray":
                    assert app.executor().built_runs >= 2 and app.source("siem").splittable
            finally:
                app.close()
            documents[engine] = {d["_id"]: (d["siem_gad"]["score"], d["siem_gad"]["evidence"]["event_ids"])
                                 for d in alert_docs(clone.url)}
        finally:
            clone.close()
    assert documents["ray"] == documents["local"] and documents["local"]
