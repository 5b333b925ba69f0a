"""Triage: incidents that group alerts, entity risk, analysts' verdicts and the heartbeat,
through the real command line and the state store."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from siem_gad.triage.entities import entity_risks
from siem_gad.triage.feedback import Verdict, label_windows, read_verdicts
from siem_gad.triage.incidents import IncidentBook, combined_risk
from siem_gad.state import StateStore

from conftest import make_config, read_alerts, siem_gad

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def record(n: int, hour: int, entity: dict, links=(), rule="r1", risk=60.0, hubs=()) -> dict:
    start = T0 + timedelta(hours=hour)
    return {"alert_id": f"a{n:03d}", "job": "j", "detector": "d", "rule_id": rule, "rule_name": rule.upper(),
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "risk": risk, "severity": "medium", "tactics": [], "techniques": [], "entity": entity,
            "related": {}, "links": list(links), "hubs": list(hubs), "message": ""}


def partition(db: sqlite3.Connection) -> set[frozenset[str]]:
    rows = db.execute("SELECT incident_id, alert_id FROM incident_alerts").fetchall()
    groups: dict[str, set[str]] = {}
    for incident, alert in rows:
        groups.setdefault(incident, set()).add(alert)
    return {frozenset(g) for g in groups.values()}


def fold_all(tmp: Path, batches: list[list[dict]]) -> tuple[set[frozenset[str]], list[str]]:
    store = StateStore(tmp)
    for batch in batches:
        with store.transaction() as db:
            IncidentBook(db, timedelta(hours=24)).fold(batch)
    with store.transaction() as db:
        book = IncidentBook(db, timedelta(hours=24))
        result = partition(db), sorted(d["event"]["id"] for d in book.incidents())
    store.close()
    return result


STORY = [
    record(0, 10, {"source.ip": "10.0.0.5"}),
    record(1, 30, {"destination.ip": "10.0.0.5"}, rule="r2"),  # same address, other field, within 24 h
    record(2, 60, {"source.ip": "10.0.0.5"}),  # 30 h later: a new incident
    record(3, 10, {"destination.ip": "10.0.0.9"}, links=["ip:10.0.0.5"], rule="r3"),  # touches the first, same window
    record(4, 12, {"source.ip": "203.0.113.1"}, links=["ip:10.0.0.60"]),  # two probes of one server, one rule
    record(5, 14, {"source.ip": "203.0.113.2"}, links=["ip:10.0.0.60"]),
    record(6, 14, {"source.ip": "203.0.113.3"}, links=["ip:10.0.0.60"], rule="r2"),  # another rule: not linked
    record(7, 40, {"user.name": "alice"}, hubs=["ip:10.0.0.5"]),  # a hub link in another window: not linked
]


def test_incidents_follow_the_documented_links(tmp_path: Path):
    groups, _ = fold_all(tmp_path, [STORY])
    assert groups == {frozenset({"a000", "a001", "a003"}), frozenset({"a002"}), frozenset({"a004", "a005"}),
                      frozenset({"a006"}), frozenset({"a007"})}


def test_a_group_opens_as_an_incident_when_corroboration_lifts_it_to_open_at(tmp_path: Path):
    """Risk-based alerting: one medium alert waits on watch; a second rule's alert about the
    same address lifts the group to 75 (noisy-OR of 50 and 50) and it opens, under the same id."""
    store = StateStore(tmp_path)
    with store.transaction() as db:
        book = IncidentBook(db, timedelta(hours=24), open_at=75.0)
        book.fold([record(0, 10, {"source.ip": "10.0.0.5"}, risk=50.0),
                   record(1, 11, {"source.ip": "10.0.0.8"}, risk=80.0)])
        [watched] = [d for d in book.incidents(everything=True) if d["siem_gad"]["incident"]["status"] == "watch"]
        assert [d["siem_gad"]["incident"]["alert_ids"] for d in book.incidents()] == [["a001"]]  # the queue: open only
        book.fold([record(2, 12, {"destination.ip": "10.0.0.5"}, rule="r2", risk=50.0)])
        opened = book.find(watched["event"]["id"])
        assert opened["siem_gad"]["incident"]["status"] == "open" and opened["event"]["risk_score"] == 75.0
        assert opened["siem_gad"]["incident"]["alert_ids"] == ["a000", "a002"]
        assert len(book.incidents()) == 2
    store.close()


@settings(max_examples=40, deadline=None)
@given(st.permutations(STORY), st.integers(1, len(STORY)))
def test_incidents_do_not_depend_on_the_order_alerts_arrive(tmp_path_factory, order, cut):
    """Jobs commit in any order and batches fall anywhere: same groups, same incident ids."""
    reference = fold_all(tmp_path_factory.mktemp("ref"), [STORY])
    shuffled = fold_all(tmp_path_factory.mktemp("perm"), [list(order[:cut]), list(order[cut:])])
    assert shuffled == reference


def risk_record(rule: str, risk: float, job: str = "network", start: str = "2026-01-07T03:00:00Z",
                field: str = "source.ip", value: str = "10.0.0.5") -> dict:
    return {"rule_id": rule, "risk": risk, "job": job, "start": start, "entity": {field: value}}


@given(st.lists(st.tuples(st.sampled_from(["r1", "r2", "r3"]), st.floats(0, 100), st.sampled_from(["network", "auth"]),
                          st.sampled_from(["2026-01-07T03:00:00Z", "2026-01-07T04:00:00Z"]),
                          st.sampled_from(["source.ip", "destination.ip"]), st.sampled_from(["10.0.0.5", "10.0.0.6"])),
                min_size=1, max_size=12),
       st.floats(0, 100))
def test_combined_risk_is_bounded_and_grows_with_corroboration(alerts, extra):
    records = [risk_record(*alert) for alert in alerts]
    risk = combined_risk(records)
    assert max(alert[1] for alert in alerts) - 0.01 <= risk <= 100
    assert combined_risk([*records, risk_record("other", extra, job="web")]) >= risk - 1e-9


def test_combined_risk_counts_one_sighting_once():
    """Two detectors of a job alerting on one address in one window read the same events: the
    stronger alert counts, not their noisy-OR. Another window, another job or another entity
    corroborates."""
    iforest = risk_record("iforest", 50.0, field="destination.ip")
    rare_links = risk_record("rare_links", 60.0, field="source.ip")
    assert combined_risk([iforest, rare_links]) == 60.0
    assert combined_risk([{**iforest, "start": "2026-01-07T04:00:00Z"}, rare_links]) == 80.0
    assert combined_risk([{**iforest, "job": "auth"}, rare_links]) == 80.0
    assert combined_risk([{**iforest, "entity": {"destination.ip": "10.0.0.6"}}, rare_links]) == 80.0
    # a tie in a sighting keeps the same alert whatever the order, so another sighting of the
    # other rule corroborates the same way
    tie = [risk_record("a", 50.0), risk_record("b", 50.0), risk_record("b", 60.0, start="2026-01-07T04:00:00Z")]
    assert combined_risk(tie) == combined_risk(tie[::-1]) == combined_risk([tie[1], tie[0], tie[2]])


def test_entity_risk_decays_with_its_half_life(tmp_path: Path):
    store = StateStore(tmp_path)
    with store.transaction() as db:
        IncidentBook(db, timedelta(hours=24)).fold([record(0, 0, {"source.ip": "10.0.0.5"}, risk=80.0),
                                                    record(1, 0, {"source.ip": "10.0.0.6"}, risk=40.0)])
        fresh = {r.entity: r.risk for r in entity_risks(db, timedelta(hours=24))}
        later = {r.entity: r.risk for r in entity_risks(db, timedelta(hours=24), T0 + timedelta(hours=25))}
    assert fresh == {"ip:10.0.0.5": 80.0, "ip:10.0.0.6": 40.0}
    assert later["ip:10.0.0.5"] == pytest.approx(40.0, abs=0.01)  # one half-life after the window's end


def test_false_positive_scopes():
    verdict = Verdict("x", "false_positive", "entity+rule", ["r1"], ["ip:10.0.0.5"], until=T0 + timedelta(days=1))
    assert verdict.suppresses("r1", {"destination.ip": "10.0.0.5"}, T0)
    assert not verdict.suppresses("r2", {"source.ip": "10.0.0.5"}, T0)
    assert not verdict.suppresses("r1", {"source.ip": "10.0.0.5"}, T0 + timedelta(days=2))  # expired
    verdict.scope = "entity"
    assert verdict.suppresses("r2", {"source.ip": "10.0.0.5"}, T0)
    verdict.scope = "rule"
    assert verdict.suppresses("r1", {"user.name": "bob"}, T0)
    verdict.verdict = "true_positive"
    assert not verdict.suppresses("r1", {"source.ip": "10.0.0.5"}, T0)


def test_top_k_counts_the_alerts_sent_so_suppressed_and_stopped_entities_leave_their_place():
    """A rule's `top_k` is the alerts a window sends: the entity that tops every window and was
    alerted within the suppression period, or that an analyst stopped, gives its place to the
    next one over the threshold instead of silencing the window."""
    from types import SimpleNamespace

    import numpy as np

    from siem_gad.detectors import Explanation
    from siem_gad.rules import Rule, Suppressor

    names = ["loud", "second", "third", "quiet"]

    class Scored:
        threshold_ = 1.0
        explained = 0

        def alert_entity(self, window, item):
            return {"source.ip": names[item]}

        def explain(self, window, item):
            self.explained += 1
            return Explanation(self.alert_entity(window, item), [], [], 0)

    windows = [SimpleNamespace(start=T0 + timedelta(hours=h)) for h in range(3)]
    scores = [np.array([9.0, 5.0, 3.0, 0.5])] * 3  # "quiet" stays under the threshold
    rule = Rule(id="r1", name="R1", job="j", detector="d", condition={"top_k": 1}, suppress={"period": "6h"})
    detector = Scored()
    sent = Suppressor(rule).alerts(windows, scores, detector)
    assert [(position, names[item]) for position, item, *_ in sent] == [(0, "loud"), (1, "second"), (2, "third")]
    assert detector.explained == 3  # suppressed items are dropped before any explanation is computed

    stopped = Verdict("x", "false_positive", "entity+rule", ["r1"], ["ip:second"])
    suppressor = Suppressor(rule, stops=[stopped])
    sent = suppressor.alerts(windows, scores, Scored())
    assert [(position, names[item]) for position, item, *_ in sent] == [(0, "loud"), (1, "third")]
    assert suppressor.by_feedback == 2 and suppressor.suppressed == 3  # window 2: loud and third suppressed, quiet under


def test_a_true_positive_verdict_reaches_deep_sad_as_a_label_and_changes_its_scores():
    from siem_gad.graphs.profile import ProfileGraphBuilder
    from siem_gad.detectors.deep_sad import DeepSadDetector
    from siem_gad.graphs import WindowGrid
    from siem_gad.simulator import Enterprise

    enterprise = Enterprise(hosts=12, hours=12)
    builder = ProfileGraphBuilder()
    grid = WindowGrid(enterprise.start, timedelta(hours=1), 12)
    windows = builder.build(enterprise.events(enterprise.start, enterprise.end), grid)
    target = windows[5]
    value = str(target.node_value[0])
    field = target.node_fields[int(target.node_kind[0])]
    params = {"epochs": 15, "pretrain_epochs": 5, "seed": 3}
    before = DeepSadDetector(**params).fit(windows).score([target])[0][0]
    verdict = Verdict("a", "true_positive", alerts=[{"alert_id": "a", "start": "2026-01-05T05:00:00Z",
                                                    "entity": {field: value}}])
    assert label_windows(windows, [verdict]) == 1
    assert target.node_label[0] == "analyst_true_positive"
    labeled = DeepSadDetector(**params).fit(windows)
    after = labeled.score([target])[0][0]
    assert after > before * 1.5, (before, after)  # the labeled row is pushed away from the centre


# ---------------------------------------------------------------------------- end to end
def run(config: Path) -> None:
    siem_gad("run", "-c", str(config), "--once")


def incidents_file(deploy: Path) -> list[dict]:
    return read_alerts(deploy / "state" / "alerts.incidents.jsonl")


def with_hours(config: Path, hours: int) -> None:
    data = yaml.safe_load(config.read_text())
    data["sources"]["sim"]["hours"] = hours
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def test_incidents_heartbeat_and_feedback_through_the_command_line(tmp_path: Path):
    config = make_config(tmp_path)
    with_hours(config, 30)
    run(config)
    deploy = tmp_path
    alerts = read_alerts(deploy / "state" / "alerts.jsonl")
    incidents = incidents_file(deploy)
    assert alerts and incidents
    ids = [i["event"]["id"] for i in incidents]
    assert len(ids) == len(set(ids)), "an incident is in the file twice"
    # every alert is in exactly one group that was not merged away: an open incident when the
    # group's combined risk reaches incidents.open_at (75), else one on watch
    live = [i for i in incidents if i["siem_gad"]["incident"]["status"] != "merged"]
    members = Counter(a for i in live for a in i["siem_gad"]["incident"]["alert_ids"])
    assert set(members) == {a["siem_gad"]["alert_id"] for a in alerts} and max(members.values()) == 1
    for incident in live:
        info = incident["siem_gad"]["incident"]
        assert info["status"] == ("open" if info["risk_score"] >= 75 else "watch"), info
    status = read_alerts(deploy / "state" / "alerts.status.jsonl")
    assert [s["siem_gad"]["status"]["job"] for s in status] == ["network"]  # one per pass
    assert status[0]["siem_gad"]["status"]["outcome"] == "ok" and status[0]["siem_gad"]["status"]["lag_seconds"] > 0

    listed = siem_gad("incidents", "-c", str(config), "--json").stdout
    ranked = [i["siem_gad"]["incident"]["risk_score"] for i in json.loads(listed)]
    assert ranked == sorted(ranked, reverse=True)
    assert "alerts=" in siem_gad("entities", "-c", str(config)).stdout

    # A false positive on the graph-shift rule (scope: the rule) stops it from the next pass on.
    shift = next(a for a in alerts if a["rule"]["id"] == "graph-shift")
    out = siem_gad("feedback", shift["siem_gad"]["alert_id"], "-c", str(config), "--verdict", "false_positive",
                   "--scope", "rule", "--note", "maintenance window").stdout
    assert "recorded: suppresses rule" in out
    listing = siem_gad("feedback", "list", "-c", str(config)).stdout
    assert "false_positive rule" in listing and "maintenance window" in listing
    # the verdict keeps the events the alert showed: what it labels at the next training
    stored = read_verdicts(deploy / "state" / "state.sqlite")
    assert stored[0].alerts[0]["evidence"] == shift["siem_gad"]["evidence"]["event_ids"] != []
    with_hours(config, 48)
    run(config)
    later = read_alerts(deploy / "state" / "alerts.jsonl")[len(alerts):]
    assert later, "the second pass wrote no alerts at all"
    assert not [a for a in later if a["rule"]["id"] == "graph-shift"]
    status = read_alerts(deploy / "state" / "alerts.status.jsonl")
    assert len(status) == 2 and status[1]["siem_gad"]["status"]["stopped_by_feedback"] > 0
    # Repeating the run changes nothing: no second copy of any incident.
    before = (deploy / "state" / "alerts.incidents.jsonl").read_text()
    run(config)
    assert (deploy / "state" / "alerts.incidents.jsonl").read_text() == before
    # evaluate reports each rule's precision with and without the verdicts.
    siem_gad("evaluate", "-c", str(config), "--label-field", "labels.attack", "--out", str(tmp_path / "evaluation"))
    rules = {rule: r for d in json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["detectors"]
             for rule, r in d["rules"].items()}
    assert rules["graph-shift"]["feedback"]["verdicts"] == 1 and rules["graph-shift"]["alerts"] > 0
    assert rules["graph-shift"]["feedback"]["alerts"] == 0  # the rule's scope stops all of it
    assert rules["entity-outlier"]["feedback"]["alerts"] == rules["entity-outlier"]["alerts"]
    assert "with analysts' verdicts" in (tmp_path / "evaluation" / "report.md").read_text()
    bad = siem_gad("feedback", "nope", "-c", str(config), "--verdict", "true_positive", check=False)
    assert bad.returncode != 0 and "no alert or incident with this id" in bad.stderr
