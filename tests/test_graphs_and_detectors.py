"""The bipartite builder against a plain pandas computation; detectors' fit/score/save/load."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from siem_gad.detectors import NotFittedError
from siem_gad.detectors.gcn_hmm import GcnHmmDetector
from siem_gad.detectors.iforest import IsolationForestDetector
from siem_gad.detectors.baselines import look_up
from siem_gad.detectors.rare_links import RareLinksDetector
from siem_gad.graphs import WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.pipeline import App
from siem_gad.simulator import Enterprise

from conftest import make_config

HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def sim_windows():
    enterprise = Enterprise(seed=3, hosts=20, hours=36)
    events = enterprise.events(enterprise.start, enterprise.end)
    windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, HOUR, 36))
    return enterprise, events, windows


def test_bipartite_matches_a_groupby(sim_windows):
    enterprise, events, windows = sim_windows
    for window in (windows[3], windows[27]):  # a night window and the port-scan hour
        frame = events[(events["@timestamp"] >= window.start) & (events["@timestamp"] < window.end)]
        expected = frame.groupby(["source.ip", "destination.ip"]).agg(
            events=("event.id", "size"), bytes=("network.bytes", "sum"), ports=("destination.port", "nunique"),
            failures=("event.outcome", lambda s: (s == "failure").sum()))
        got = pd.DataFrame({
            "source.ip": window.node_value[window.edge_index[0]], "destination.ip": window.node_value[window.edge_index[1]],
            "events": np.expm1(window.edge_attr[:, 0].astype(np.float64)), "bytes": np.expm1(window.edge_attr[:, 1].astype(np.float64)),
            "ports": np.expm1(window.edge_attr[:, 2].astype(np.float64)),
        }).set_index(["source.ip", "destination.ip"]).sort_index()
        expected = expected.sort_index()
        assert list(got.index) == list(expected.index)
        np.testing.assert_allclose(got["events"], expected["events"], rtol=1e-5)
        np.testing.assert_allclose(got["bytes"], expected["bytes"], rtol=1e-5)
        np.testing.assert_allclose(got["ports"], expected["ports"], rtol=1e-5)
        assert window.num_events == len(frame)
        degree = frame.groupby("source.ip")["destination.ip"].nunique()
        sources = window.node_kind == 0
        got_degree = dict(zip(window.node_value[sources], np.rint(np.expm1(window.x[sources, 1].astype(np.float64)))))
        assert got_degree == degree.to_dict()


@pytest.mark.parametrize("threads", [1, 2])
def test_bipartite_related_fields_are_the_other_fields_of_each_nodes_events(sim_windows, threads):
    """An auth graph (user x host) keeping source.ip and destination.ip: each node carries the
    addresses its events name, most events first, as a groupby gives them; hubs marked."""
    from siem_gad.hubs import MAX_RELATED
    from siem_gad.triage.related import Related, related_entities
    from siem_gad.detectors import Explanation

    enterprise, events, _ = sim_windows
    builder = BipartiteGraphBuilder(source_field="user.name", target_field="host.name",
                                    related_fields=["source.ip", "destination.ip"], threads=threads)
    grid = WindowGrid(enterprise.start, HOUR, 36)
    windows = builder.build(events, grid)
    lateral = enterprise.attack_hours()["lateral_movement"][0]
    for window in (windows[5], windows[lateral]):
        frame = events[(events["@timestamp"] >= window.start) & (events["@timestamp"] < window.end)]
        frame = frame.dropna(subset=["user.name", "host.name"])
        for node in range(window.num_nodes):
            (field, value), = window.entity(node).items()
            mine = frame[frame[field] == value]
            carried = window.node_related.get(node, [])
            for related_field in ("source.ip", "destination.ip"):
                counts = mine[related_field].dropna().astype(str).value_counts()  # present values only
                got = [v for f, v, _ in carried if f == related_field]
                dropped = counts.drop(got)
                assert len(got) == min(len(counts), MAX_RELATED) and set(got) <= set(counts.index), (value, got)
                assert [counts[v] for v in got] == sorted((counts[v] for v in got), reverse=True)  # most events first
                assert dropped.empty or counts[got[-1]] >= dropped.max()  # a cap keeps the most frequent
    window = windows[lateral]
    user = enterprise.attack_entities()["lateral_movement"]["user.name"]
    node = int(np.flatnonzero((window.node_value == user) & (window.node_kind == 0))[0])
    carried = related_entities(window, Explanation({"user.name": user}, [], [], 0), "node", node)
    attacker = enterprise.attack_entities()["lateral_movement"]["source.ip"]
    # the attacker's address is on the events of every host it logged on to: a hub of the window
    assert Related("source.ip", attacker, True) in carried
    assert sum(1 for r in carried if r.field == "destination.ip" and not r.hub) >= 10  # the hosts it reached
    plain = BipartiteGraphBuilder(source_field="user.name", target_field="host.name").build(events, grid)[lateral]
    assert plain.node_related is None


def test_evidence_points_at_the_events_of_an_entity(sim_windows):
    enterprise, events, windows = sim_windows
    scan_hour = enterprise.attack_hours()["port_scan"][0]
    scanner = enterprise.attack_entities()["port_scan"]["source.ip"]
    window = windows[scan_hour]
    node = int(np.flatnonzero((window.node_value == scanner) & (window.node_kind == 0))[0])
    ids, total = window.node_evidence(node, limit=50)
    frame = events.set_index("event.id")
    in_window = events[(events["@timestamp"] >= window.start) & (events["@timestamp"] < window.end)]
    assert total == int((in_window["source.ip"] == scanner).sum())
    assert len(ids) == 50 and (frame.loc[ids, "source.ip"] == scanner).all()
    assert set(frame.loc[ids, "labels.attack"]) == {"port_scan"}


def test_evidence_is_the_same_whether_ids_are_python_or_arrow_strings(sim_windows):
    """A CSV or JSON reader gives Arrow-backed string ids, which the builder leaves in their
    buffers: the evidence an alert shows must not depend on that."""
    enterprise, events, windows = sim_windows
    arrow_ids = events.assign(**{"event.id": events["event.id"].astype("string[pyarrow]")})
    again = BipartiteGraphBuilder().build(arrow_ids, WindowGrid(enterprise.start, HOUR, 36))
    scan_hour = enterprise.attack_hours()["port_scan"][0]
    for window, other in zip(windows[scan_hour - 1:scan_hour + 2], again[scan_hour - 1:scan_hour + 2]):
        for node in range(0, window.num_nodes, 7):
            ids, total = other.node_evidence(node, limit=30)
            assert (ids, total) == window.node_evidence(node, limit=30)
            assert all(type(i) is str for i in ids)


def test_empty_events_give_empty_windows():
    empty = pd.DataFrame({"@timestamp": pd.Series([], dtype="datetime64[ns, UTC]"), "event.id": [], "source.ip": [],
                          "destination.ip": []})
    windows = BipartiteGraphBuilder().build(empty, WindowGrid(Enterprise().start, HOUR, 3))
    assert [w.num_nodes for w in windows] == [0, 0, 0]


@pytest.mark.parametrize("cls, params", [(IsolationForestDetector, {"n_estimators": 50}),
                                         (GcnHmmDetector, {"epochs": 30}), (RareLinksDetector, {})])
def test_saved_models_reload_with_identical_scores(sim_windows, tmp_path: Path, cls, params):
    _, _, windows = sim_windows
    detector = cls(**params).fit(windows[:24])
    with pytest.raises(NotFittedError):
        cls(**params).score(windows)
    before = detector.score(windows[24:])
    path = tmp_path / "model.pt"
    detector.save(path)
    torch.load(path, weights_only=True)  # a plain-data file: no pickled code
    loaded = cls.load(path)
    after = loaded.score(windows[24:])
    assert loaded.threshold_ == detector.threshold_
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # suppression keys on the entity an alert names before it is explained: the same entity
    window, values = windows[30], after[6]
    item = int(np.nanargmax(values))
    assert loaded.alert_entity(window, item) in (None, loaded.explain(window, item).entity)
    assert (loaded.alert_entity(window, item) is None) == (cls.level == "window")


def test_gcn_hmm_scores_do_not_depend_on_pass_boundaries(sim_windows):
    _, _, windows = sim_windows
    detector = GcnHmmDetector(epochs=30).fit(windows[:24])
    whole = np.concatenate(detector.score(windows[24:]))
    detector.stream_state_ = None
    first = np.concatenate(detector.score(windows[24:30]))
    carried = detector.stream_state_
    assert carried["next_window"] == "2026-01-06T06:00:00Z"
    second = np.concatenate(detector.score(windows[30:]))
    np.testing.assert_allclose(np.concatenate([first, second]), whole)


def test_gcn_hmm_does_not_carry_an_outlier_window_into_the_regime(sim_windows):
    """After an alerting window the filter goes on from its prediction, as if that window had
    held no data: the normal windows after an attack score as they would without it."""
    from dataclasses import replace

    enterprise, _, windows = sim_windows
    detector = GcnHmmDetector(epochs=30).fit(windows[:24])
    scan = enterprise.attack_hours()["port_scan"][0]
    scores = np.concatenate(detector.score(windows[scan:scan + 4]))
    assert scores[0] >= detector.threshold_
    assert detector.explain(windows[scan]).extra["state_held"]
    empty = replace(windows[scan], node_kind=windows[scan].node_kind[:0], node_value=windows[scan].node_value[:0],
                    x=windows[scan].x[:0], edge_index=windows[scan].edge_index[:, :0],
                    edge_attr=windows[scan].edge_attr[:0])
    detector.stream_state_ = None
    without = np.concatenate(detector.score([empty, *windows[scan + 1:scan + 4]]))
    np.testing.assert_allclose(scores[1:], without[1:])
    # with the state conditioned on the attack window, the windows after it score otherwise
    detector.set_params(hold_state_on_outliers=False)
    detector.stream_state_ = None
    plain = np.concatenate(detector.score(windows[scan:scan + 4]))
    assert plain[0] == pytest.approx(scores[0]) and not np.allclose(plain[1:], scores[1:])


def test_gcn_hmm_ranks_attack_windows_and_names_the_attacker(sim_windows):
    enterprise, _, windows = sim_windows
    detector = GcnHmmDetector(epochs=40).fit(windows[:24])
    scores = np.concatenate(detector.score(windows))
    hours = enterprise.attack_hours()
    attack_windows = {first for name, (first, _) in hours.items() if name != "beaconing"}
    ranked = [int(i) for i in np.argsort(-scores)]
    assert ranked[0] == hours["port_scan"][0]
    assert set(ranked[:3]) <= attack_windows, ranked[:5]
    scan = detector.explain(windows[hours["port_scan"][0]], 0)
    assert scan.entity == enterprise.attack_entities()["port_scan"]
    brute = detector.explain(windows[hours["ssh_bruteforce"][0]], 0)
    assert "203.0.113.45" in [c["value"] for c in brute.contributors[:3]]


def test_rare_links_scores_links_by_their_history_and_names_the_scanner(sim_windows):
    enterprise, events, windows = sim_windows
    detector = RareLinksDetector(prior=0.01).fit(windows[:24])
    # a link's score is -log(its training events per window + prior), from a plain groupby
    training = events[events["@timestamp"] < windows[24].start]
    rate = training.groupby(["source.ip", "destination.ip"]).size() / 24
    scan_hour = enterprise.attack_hours()["port_scan"][0]
    window = windows[scan_hour]
    src, dst = window.edge_index
    pairs = pd.MultiIndex.from_arrays([window.node_value[src], window.node_value[dst]])
    expected = -np.log(rate.reindex(pairs).fillna(0).to_numpy() + 0.01)
    np.testing.assert_allclose(detector.score_edges([window])[0], expected)

    # the scanner's traffic runs mostly over links never seen
    scanner = [i for i in range(window.num_nodes) if window.entity(i) == enterprise.attack_entities()["port_scan"]][0]
    scores = detector.score([window])[0]
    assert scores[scanner] > detector.threshold_
    explanation = detector.explain(window, scanner)
    ip = window.node_value[scanner]
    now = events[(events["@timestamp"] >= window.start) & (events["@timestamp"] < window.end)]
    now = now[now["source.ip"] == ip]  # the scanner's node is its source.ip entity
    unseen = ~pd.MultiIndex.from_frame(now[["source.ip", "destination.ip"]]).isin(rate.index)
    assert explanation.extra["unseen_event_share"] == pytest.approx(unseen.mean(), abs=1e-3) and unseen.mean() > 0.5
    assert all(c["typical"] == 0 and c["value"].startswith("-> ") for c in explanation.contributors)
    frame = events.set_index("event.id")
    assert set(frame.loc[explanation.evidence, "labels.attack"]) == {"port_scan"}
    assert "never seen in 24 training windows" in explanation.summary

    # the hosts the history knows score low on average; the new internet addresses of the
    # simulated web browsing score at least as high as the scan: what this detector cannot tell apart
    known = np.isin(window.node_value, [v for w in windows[:24] for v in w.node_value])
    assert scores[known & (window.node_kind == 0)].mean() < detector.threshold_
    assert scores[~known].max() >= scores[scanner]


def test_rare_links_entity_score_links_counts_new_peers_and_ranks_lateral_movement_first():
    """`entity_score: links`: an entity scores the sum over its distinct links of their
    surprisal above 0, so an account logging on to many hosts it never used outranks one that
    tried a single new host, which `traffic` (the mean) scores just as high."""
    from siem_gad.graphs.temporal import TemporalGraphBuilder

    enterprise = Enterprise(seed=7, hosts=40, hours=72)
    events = enterprise.events(enterprise.start, enterprise.end)
    grid = WindowGrid(enterprise.start, HOUR, 72)
    windows = BipartiteGraphBuilder(source_field="user.name", target_field="host.name").build(events, grid)
    by_links = RareLinksDetector(entity_score="links").fit(windows[:48])
    by_traffic = RareLinksDetector().fit(windows[:48])
    hour = enterprise.attack_hours()["lateral_movement"][0]
    window = windows[hour]
    links = by_links.score([window])[0]
    rare = np.maximum(by_links.score_edges([window])[0], 0)
    src, dst = window.edge_index
    expected = np.array([rare[(src == i) | (dst == i)].sum() for i in range(window.num_nodes)])
    np.testing.assert_allclose(links, expected)

    attacker = enterprise.attack_entities()["lateral_movement"]["user.name"]
    position = int(np.flatnonzero(window.node_value == attacker)[0])
    single = [i for i in range(window.num_nodes) if np.count_nonzero(rare[(src == i) | (dst == i)] > 4) == 1]
    assert single  # the hosts it logged on to: each has one new link (the attacker)
    assert links[position] == links.max() and links[position] > 10 * links[single].max()
    traffic = by_traffic.score([window])[0]
    assert traffic[single].max() >= traffic[position]  # the mean ranks a single new link as high

    # one edge per event (`temporal`): each link still counts once
    temporal = TemporalGraphBuilder(source_field="user.name", target_field="host.name").build(events, grid)
    per_event = RareLinksDetector(entity_score="links").fit(temporal[:48])
    t_window = temporal[hour]
    t_scores = per_event.score([t_window])[0]
    t_rare = np.maximum(per_event.score_edges([t_window])[0], 0)
    t_src, t_dst = t_window.edge_index
    pairs = {}
    for s_, d_, r in zip(t_src, t_dst, t_rare):
        pairs[(int(s_), int(d_))] = r
    once = np.zeros(t_window.num_nodes)
    for (s_, d_), r in pairs.items():
        once[s_] += r
        once[d_] += r
    np.testing.assert_allclose(t_scores, once)


def labeled_flows() -> pd.DataFrame:
    """Four hourly windows of flows: A -> X every window (normal), B -> Y in the first two,
    labeled attacks (some of them), C -> X once; and in the scored fifth hour B -> Y again,
    a never-seen D -> Z and the usual A -> X."""
    from siem_gad.events import finalize_events

    start = pd.Timestamp("2026-01-05T00:00:00Z")
    rows = []
    for hour in range(5):
        t = start + pd.Timedelta(hours=hour)
        rows += [(t + pd.Timedelta(minutes=m), "10.0.0.1", "10.9.9.9", "benign") for m in range(6)]
        if hour in (0, 1, 4):
            rows += [(t + pd.Timedelta(minutes=10 + m), "10.0.0.2", "198.51.100.7", "Malicious" if m < 3 else "-")
                     for m in range(4)]
        if hour == 2:
            rows.append((t, "10.0.0.3", "10.9.9.9", "benign"))
        if hour == 4:
            rows.append((t + pd.Timedelta(minutes=30), "10.0.0.4", "203.0.113.5", "benign"))
    frame = pd.DataFrame(rows, columns=["@timestamp", "source.ip", "destination.ip", "label"])
    return finalize_events(frame, "labeled")


@settings(max_examples=40, deadline=None)
@given(flows=st.lists(st.tuples(st.integers(0, 3 * 3600 - 1), st.sampled_from("abc"), st.sampled_from("xyz"),
                                st.sampled_from([None, "", "benign", "Benign ", "-", "0", "malicious", "MALICIOUS",
                                                 "scan"])), min_size=1, max_size=60),
       positives=st.sampled_from([[], ["malicious"]]))
def test_bipartite_counts_each_edges_labeled_attacks_whatever_the_order_and_spelling(flows, positives):
    """`edge_attacks` is a groupby of the attack-labeled events per window and link, for events
    in any order, labels in any case or missing, with or without `positive_values`."""
    start = pd.Timestamp("2026-01-05T00:00:00Z")
    events = pd.DataFrame({"@timestamp": [start + pd.Timedelta(seconds=t) for t, *_ in flows],
                           "source.ip": [s for _, s, _, _ in flows], "destination.ip": [d for _, _, d, _ in flows],
                           "verdict": pd.Series([v for *_, v in flows], dtype=object)})
    events["event.id"] = [f"e{i}" for i in range(len(events))]
    windows = BipartiteGraphBuilder(label_field="verdict", positive_values=positives).build(
        events, WindowGrid(start.to_pydatetime(), HOUR, 3))
    text = events["verdict"].fillna("").str.strip().str.lower()
    attack = text.isin([p.lower() for p in positives]) if positives else ~text.isin(["", "benign", "-", "0"])
    for window in windows:
        inside = (events["@timestamp"] >= window.start) & (events["@timestamp"] < window.end)
        expected = attack[inside].groupby([events.loc[inside, "source.ip"], events.loc[inside, "destination.ip"]]).sum()
        src, dst = window.edge_index
        pairs = pd.MultiIndex.from_arrays([window.node_value[src], window.node_value[dst]])
        np.testing.assert_array_equal(window.edge_attacks, expected.reindex(pairs).to_numpy(dtype=np.float64))


def test_rare_links_learns_known_bad_links_from_labeled_history():
    """With the history's labels (the builder's `label_field`), a link's attacks do not count as
    normal traffic and raise its score above that of a link never seen; without labels nothing
    changes; the threshold comes from the entities that carried no attack."""
    events = labeled_flows()
    grid = WindowGrid(events["@timestamp"].min().floor("h"), HOUR, 5)
    plain = BipartiteGraphBuilder().build(events, grid)
    labeled = BipartiteGraphBuilder(label_field="label").build(events, grid)

    # nothing is counted without a label field (the counts themselves: the Hypothesis property above)
    assert all(w.edge_attacks is None for w in plain)

    unlabeled = RareLinksDetector().fit(plain[:4])
    learned = RareLinksDetector().fit(labeled[:4])
    scored = plain[4]
    src, dst = scored.edge_index
    link = {(scored.node_value[s], scored.node_value[d]): i for i, (s, d) in enumerate(zip(src, dst))}
    before, after = unlabeled.score_edges([scored])[0], learned.score_edges([scored])[0]
    bad, new, usual = link[("10.0.0.2", "198.51.100.7")], link[("10.0.0.4", "203.0.113.5")], link[("10.0.0.1", "10.9.9.9")]
    prior = 0.01
    assert before[bad] == pytest.approx(-np.log(8 / 4 + prior))  # unlabeled: the attacker's link is familiar
    # labeled: 2 normal and 6 attack events in 4 windows
    assert after[bad] == pytest.approx(-np.log(2 / 4 + prior) + np.log((6 / 4 + prior) / prior))
    assert after[new] == before[new] == pytest.approx(-np.log(prior))
    assert after[bad] > after[new] > after[usual] == before[usual]
    # a window with no label: the same scores as before
    np.testing.assert_array_equal(RareLinksDetector().fit(labeled[2:4]).score([scored])[0],
                                  RareLinksDetector().fit(plain[2:4]).score([scored])[0])
    # the threshold: from entities without a labeled attack, so a link never seen still crosses it
    assert learned.metrics_["attack_links"] == 1 and learned.metrics_["attack_events"] == 6
    assert learned.metrics_["training_nodes"] == sum(w.num_nodes for w in labeled[:4]) - 4  # B and Y, twice
    assert learned.threshold_ < -np.log(prior)
    # what the Ray shards do: score from the table looked up by key
    keys, values = learned.baseline_table()
    np.testing.assert_array_equal(learned.score_from_baseline(scored, look_up(keys, values, learned.baseline_keys(scored))),
                                  learned.score([scored])[0])
    attacker = int(np.flatnonzero(scored.node_value == "10.0.0.2")[0])
    explanation = learned.explain(scored, attacker)
    assert explanation.extra["known_attack_links"] == 1 and "1 carried labeled attacks in training" in explanation.summary
    assert explanation.contributors[0]["attacks_per_window"] == 1.5 and explanation.contributors[0]["typical"] == 0.5


def test_rare_links_learns_an_analysts_true_positive_and_loads_older_models(tmp_path: Path):
    """A true-positive verdict on an entity (feedback) marks its links in that window as
    attacks at the next training; a model saved before labeled history loads as unlabeled."""
    from siem_gad.timeutil import isoformat
    from siem_gad.triage.feedback import Verdict, label_windows

    events = labeled_flows().assign(label="benign")
    windows = BipartiteGraphBuilder().build(events, WindowGrid(events["@timestamp"].min().floor("h"), HOUR, 5))
    verdict = Verdict("incident-1", "true_positive", alerts=[
        {"alert_id": f"alert-{i}", "start": isoformat(windows[i].start), "entity": {"source.ip": "10.0.0.2"}} for i in (0, 1)])
    assert label_windows(windows[:4], [verdict]) == 2
    taught, untaught = RareLinksDetector().fit(windows[:4]), RareLinksDetector().fit(
        BipartiteGraphBuilder().build(events, WindowGrid(windows[0].start, HOUR, 5))[:4])
    scored = windows[4]
    attacker = int(np.flatnonzero(scored.node_value == "10.0.0.2")[0])
    assert taught.score([scored])[0][attacker] > -np.log(0.01) > untaught.score([scored])[0][attacker]
    assert taught.metrics_["attack_events"] == 8  # its two windows' four flows each

    path = tmp_path / "old.pt"
    untaught.save(path)
    state = torch.load(path, weights_only=True)
    state["state"].pop("attack_rate")
    torch.save(state, path)
    np.testing.assert_array_equal(RareLinksDetector.load(path).score([scored])[0], untaught.score([scored])[0])


def test_rare_links_refuses_graphs_without_entity_links():
    from siem_gad.graphs.host_flow import HostFlowGraphBuilder

    enterprise = Enterprise(seed=3, hosts=5, hours=2)
    events = enterprise.events(enterprise.start, enterprise.end)
    windows = HostFlowGraphBuilder().build(events, WindowGrid(enterprise.start, HOUR, 2))
    with pytest.raises(ValueError, match="heterogeneous graphs"):
        RareLinksDetector().fit(windows)


def test_a_model_trained_with_another_config_is_stale_and_retrained(tmp_path: Path):
    deploy = tmp_path / "deploy"
    jobs = {"network": {"source": "sim", "graph": {"type": "bipartite"},
                        "detectors": {"iforest": {"type": "iforest", "n_estimators": 50, "training": {"windows": 24}}}}}
    config = make_config(deploy, jobs=jobs, rules={})
    app = App.open(config)
    app.job("network").run_pass()
    assert app.job("network").status()["models"][0] == {**app.job("network").status()["models"][0], "version": 1, "state": "current"}
    app.close()
    jobs["network"]["detectors"]["iforest"]["n_estimators"] = 60
    config = make_config(deploy, jobs=jobs, rules={})
    app = App.open(config)
    assert app.job("network").status()["models"][0]["state"] == "stale"
    app.job("network").ensure_models(app.job("network").plan())
    assert app.job("network").status()["models"][0]["version"] == 2
    assert app.job("network").models.loaded["iforest"].detector.params.n_estimators == 60
    app.close()


@pytest.mark.parametrize("damage", ["cut short", "not a model", "a list"])
def test_a_damaged_model_file_is_retrained_not_fatal(tmp_path: Path, damage: str):
    """A model file cut short (a crash or a full disk while it was copied) made every later
    pass of its job fail with torch's RuntimeError; now the model is retrained, with a warning."""
    deploy = tmp_path / "deploy"
    jobs = {"network": {"source": "sim", "graph": {"type": "bipartite"},
                        "detectors": {"iforest": {"type": "iforest", "n_estimators": 20, "training": {"windows": 24}}}}}
    app = App.open(make_config(deploy, jobs=jobs, rules={}))
    app.job("network").run_pass()
    path = app.state.latest_model("network", "iforest").path
    app.close()
    data = path.read_bytes()
    if damage == "cut short":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not a model":
        path.write_bytes(b"\x00" * 100)
    else:
        torch.save([1, 2], path)
    with pytest.raises(ValueError, match="not a (readable )?model file"):
        IsolationForestDetector.load(path)
    app = App.open(make_config(deploy, jobs=jobs, rules={}))
    job = app.job("network")
    job.ensure_models(job.plan())
    assert job.status()["models"][0]["version"] == 2 and job.models.loaded["iforest"].detector.threshold_ > 0
    app.close()


def test_windows_are_right_for_any_timestamp_resolution(sim_windows):
    enterprise, events, windows = sim_windows
    coarse = events.copy()
    coarse["@timestamp"] = coarse["@timestamp"].dt.as_unit("us")
    again = BipartiteGraphBuilder().build(coarse, WindowGrid(enterprise.start, HOUR, 36))
    assert [w.num_events for w in again] == [w.num_events for w in windows]


def test_unsorted_events_give_the_same_graphs(sim_windows):
    enterprise, events, windows = sim_windows
    shuffled = events.sample(frac=1.0, random_state=0).reset_index(drop=True)
    again = BipartiteGraphBuilder().build(shuffled, WindowGrid(enterprise.start, HOUR, 36))
    for a, b in zip(windows, again):
        edges_a = set(zip(a.node_value[a.edge_index[0]], a.node_value[a.edge_index[1]], a.edge_attr[:, 0]))
        edges_b = set(zip(b.node_value[b.edge_index[0]], b.node_value[b.edge_index[1]], b.edge_attr[:, 0]))
        assert edges_a == edges_b


def test_windows_built_in_parallel_chunks_equal_one_pass(sim_windows, monkeypatch):
    from siem_gad.graphs import bipartite

    enterprise, events, _ = sim_windows
    events = events.copy()
    events.loc[events.index[::97], "source.ip"] = None  # events without an entity join no edge
    grid = WindowGrid(enterprise.start + 2 * HOUR, HOUR, 30)  # events before and after the grid are left out
    one = BipartiteGraphBuilder(threads=1).build(events, grid)
    monkeypatch.setattr(bipartite, "MIN_EVENTS_PER_THREAD", 1)
    parallel = BipartiteGraphBuilder(threads=3).build(events, grid)
    assert [w.index for w in parallel] == list(range(30)) and len({id(w.evidence) for w in parallel}) == 3
    inside = events[(events["@timestamp"] >= grid.start) & (events["@timestamp"] < grid.end)]
    assert sum(w.num_events for w in one) == inside["source.ip"].notna().sum()
    for a, b in zip(one, parallel):
        assert (a.start, a.num_events) == (b.start, b.num_events)
        assert list(a.node_value) == list(b.node_value)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.edge_index, b.edge_index)
        np.testing.assert_array_equal(a.edge_attr, b.edge_attr)
        for node in range(0, a.num_nodes, 7):
            assert a.node_evidence(node, limit=1000) == b.node_evidence(node, limit=1000)
    window = one[10]
    node = int(np.argmax(window.x[:, 1]))
    ids, total = window.node_evidence(node, limit=10_000)
    frame = inside[(inside["@timestamp"] >= window.start) & (inside["@timestamp"] < window.end)]
    side = window.node_fields[window.node_kind[node]]
    expected = frame[(frame[side] == window.node_value[node]) & frame["source.ip"].notna()]
    assert total == len(expected) and sorted(ids) == sorted(expected["event.id"])


def test_profile_builder_rows_per_source_with_idf_weighted_port_buckets():
    from datetime import datetime, timedelta, timezone

    import pandas as pd

    from siem_gad.events import finalize_events
    from siem_gad.graphs import WindowGrid
    from siem_gad.graphs.profile import ProfileGraphBuilder

    t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
    rows = []
    for host in range(4):  # every host talks to 10.9.0.1:443; host 0 also probes 22 on many targets
        rows += [(t0 + timedelta(minutes=host), f"10.0.0.{host}", "10.9.0.1", 443, "success", 100)] * 3
    rows += [(t0 + timedelta(minutes=10 + i), "10.0.0.0", f"10.9.1.{i}", 22, "failure", 10) for i in range(6)]
    rows += [(t0 + timedelta(minutes=20), "10.0.0.1", "10.9.0.1", 51234, "success", 5),
             (t0 + timedelta(minutes=21), "10.0.0.1", "10.9.0.1", 60001, "success", 5)]
    events = finalize_events(pd.DataFrame(rows, columns=["@timestamp", "source.ip", "destination.ip",
                                                         "destination.port", "event.outcome", "network.bytes"]), "t")
    builder = ProfileGraphBuilder(ports=[22, 443])
    (window,) = builder.build(events, WindowGrid(t0, timedelta(hours=1), 1))
    table = window.node_table().set_index("entity.value")
    assert list(table.index) == ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]
    scanner, other = table.loc["10.0.0.0"], table.loc["10.0.0.2"]
    assert np.expm1(scanner["events"]) == pytest.approx(9) and np.expm1(scanner["destinations"]) == pytest.approx(7)
    assert scanner["failure_ratio"] == pytest.approx(6 / 9) and other["failure_ratio"] == 0
    # Port 443 is used by all four sources: idf = log(5/5) + 1 = 1; port 22 by one: log(5/2) + 1.
    assert scanner["port 443"] == pytest.approx(np.log1p(3)) and other["port 443"] == pytest.approx(np.log1p(3))
    assert scanner["port 22"] == pytest.approx(np.log1p(6) * (np.log(5 / 2) + 1))
    # The two high client ports fold into one bucket.
    assert table.loc["10.0.0.1", "port ephemeral"] == pytest.approx(np.log1p(2) * (np.log(5 / 2) + 1))
    assert table["port other"].sum() == 0
    evidence, count = window.node_evidence(0)
    assert count == 9 and len(evidence) == 9


def test_detectors_answer_to_the_estimator_names_data_scientists_know(sim_windows, tmp_path: Path):
    """decision_function = score, predict = over the threshold, get_params/set_params from the
    Params model, and load refuses a file that another detector class saved."""
    windows = sim_windows[2]
    detector = IsolationForestDetector(n_estimators=20, seed=1).fit(windows[:24])
    scores, labels = detector.decision_function(windows[24:]), detector.predict(windows[24:])
    for s, expected, got in zip(detector.score(windows[24:]), scores, labels):
        assert np.array_equal(s, expected) and np.array_equal(got, (s >= detector.threshold_).astype(np.int8))
    assert detector.get_params()["n_estimators"] == 20
    assert detector.set_params(n_estimators=30).get_params()["n_estimators"] == 30
    with pytest.raises(Exception, match="n_estimators"):
        detector.set_params(n_estimators=0)
    detector.save(tmp_path / "model.pt")
    assert IsolationForestDetector.load(tmp_path / "model.pt").threshold_ == detector.threshold_
    with pytest.raises(ValueError, match="saved by detector siem_gad.detectors.iforest.IsolationForestDetector"):
        RareLinksDetector.load(tmp_path / "model.pt")


def test_explanations_show_features_as_their_builder_scaled_them(sim_windows):
    """Builders declare their log1p-scaled features; the detector base no longer guesses them
    from bipartite's feature names (which showed address bits and one-hots as expm1)."""
    from siem_gad.detectors import readable
    from siem_gad.graphs.host_flow import HostFlowGraphBuilder

    window = next(w for w in sim_windows[2] if w.num_nodes)
    degree, ratio = window.feature_names.index("degree"), window.feature_names.index("failure_ratio")
    assert readable(window, degree, np.log1p(4.0)) == 4.0 and readable(window, ratio, 0.25) == 0.25
    builder = HostFlowGraphBuilder(ip_bits=True)
    assert {"flows_out", "peers"} <= builder.log_scaled and not any(n.startswith("ip_bit") for n in builder.log_scaled)
