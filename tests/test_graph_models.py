"""The research's graph models on real IoT-23 and LUFlow flows: builders, detectors, explanations."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, SHARED_DATA, make_config, read_alerts, require_data, siem_gad
from flow_data import IOT23_CAPTURES, iot23
from graph_detectors import build

from siem_gad.graphs.host_flow import HostFlowGraphBuilder
from siem_gad.graphs.temporal import TemporalGraphBuilder

MIRAI = "CTU-Malware-Capture-34-1"
LABELS = {"label_field": "label", "class_field": "label.detailed"}


@pytest.fixture(scope="module")
def flows():
    """The first 4,000 flows of the Mirai capture: benign traffic, C&C and DDoS."""
    require_data("iot23")
    return iot23(MIRAI, rows=4000)


def test_host_flow_joins_each_flow_to_its_sender_and_receiver(flows):
    windows = build(HostFlowGraphBuilder(flows_per_graph=100, **LABELS), flows, timedelta(hours=1))
    assert sum(w.num_events for w in windows) == len(flows)
    by_id = flows.set_index("event.id")
    for w in windows:
        flow_nodes = np.flatnonzero(w.node_kind == 1)
        assert len(flow_nodes) == w.num_events and w.num_edges == 2 * w.num_events
        src, dst = w.edge_index
        senders = {int(d): int(s) for s, d in zip(src, dst) if w.node_kind[s] == 0}
        receivers = {int(s): int(d) for s, d in zip(src, dst) if w.node_kind[s] == 1}
        for node in flow_nodes[:: max(1, len(flow_nodes) // 50)]:
            event = by_id.loc[w.node_value[node]]
            assert w.node_value[senders[node]] == event["source.ip"]
            assert w.node_value[receivers[node]] == event["destination.ip"]
            assert w.node_label[node] == ("benign" if event["label"] == "benign" else event["label.detailed"])
            edge = np.flatnonzero((dst == node) & (w.node_kind[src] == 0))
            assert w.edge_evidence(edge)[0] == [w.node_value[node]]
        # hosts are copied into each subgraph of 100 flows; flows and hosts fill their own columns only
        subgraphs = -(-w.num_events // 100)
        assert (w.node_kind == 0).sum() >= subgraphs
        host_cols, flow_cols = map(list, w.kind_features)
        assert not w.x[w.node_kind == 0][:, flow_cols].any() and not w.x[w.node_kind == 1][:, host_cols].any()
        assert all(v is None for v in w.node_label[w.node_kind == 0])


def test_host_flow_keeps_ports_and_address_bits_out_unless_asked(flows):
    plain = HostFlowGraphBuilder()
    assert not any(n.startswith("port ") for n in plain.flow_feature_names) and "ip_bit_0" not in plain.host_feature_names
    both = HostFlowGraphBuilder(port_field="destination.port", ip_bits=True)
    window = build(both, flows.iloc[:300], timedelta(hours=1))[0]
    assert "port log" in window.feature_names and "ip_bit_15" in window.feature_names
    # 192.168.1.195: the last two octets are 1 and 195
    host = int(np.flatnonzero(window.node_value == "192.168.1.195")[0])
    bits = window.x[host, [window.feature_names.index(f"ip_bit_{i}") for i in range(16)]]
    assert int("".join(str(int(b)) for b in bits), 2) == (1 << 8) + 195


def test_host_flow_time_features_are_the_flows_time_of_day_and_week_and_can_be_left_out(flows):
    timed = build(HostFlowGraphBuilder(), flows.iloc[:300], timedelta(hours=1))[0]
    flow = int(np.flatnonzero(timed.node_kind == 1)[0])
    stamp = flows.set_index("event.id").loc[timed.node_value[flow], "@timestamp"]
    hour = (stamp.hour + stamp.minute / 60) / 24 * 2 * np.pi
    assert timed.x[flow, timed.feature_names.index("hour_sin")] == pytest.approx(np.sin(hour), abs=1e-5)
    untimed = build(HostFlowGraphBuilder(time_features=False), flows.iloc[:300], timedelta(hours=1))[0]
    assert not any(n.startswith(("hour_", "weekday_")) for n in untimed.feature_names)
    assert untimed.x.shape[1] == timed.x.shape[1] - 4


def test_temporal_graph_times_edges_and_labels_hosts_by_what_they_send(flows):
    size = timedelta(minutes=10)
    windows = build(TemporalGraphBuilder(**LABELS), flows, size)
    assert sum(w.num_edges for w in windows) == len(flows)
    for w in windows:
        assert (w.edge_time >= 0).all() and (w.edge_time < size.total_seconds()).all()
        in_window = flows[(flows["@timestamp"] >= w.start) & (flows["@timestamp"] < w.end)]
        attackers = set(in_window.loc[in_window["label"] != "benign", "source.ip"].astype(str))
        for node in range(w.num_nodes):
            assert (w.node_label[node] != "benign") == (str(w.node_value[node]) in attackers)


def test_supervised_detectors_say_where_labels_come_from(flows):
    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector

    unlabeled = build(HostFlowGraphBuilder(), flows.iloc[:500], timedelta(hours=1))
    with pytest.raises(ValueError, match="label_field"):
        HeteroGnnDetector(epochs=1).fit(unlabeled)


def test_hetero_gnn_classifies_later_flows_alerts_per_sender_and_reloads(flows, tmp_path: Path):
    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector

    windows = build(HostFlowGraphBuilder(flows_per_graph=128, **LABELS), flows, timedelta(minutes=10))
    train, test = windows[: len(windows) * 2 // 3], windows[len(windows) * 2 // 3:]
    model = HeteroGnnDetector(epochs=25, hidden=32, seed=1).fit(train)
    assert model.classes_[0] == "benign" and len(model.classes_) >= 2
    truth = np.concatenate([w.node_label[w.node_kind == 1] for w in test]) != "benign"
    scores = np.concatenate(model.target_scores(test))
    from sklearn.metrics import roc_auc_score

    assert 0 < truth.sum() < len(truth) and roc_auc_score(truth, scores) > 0.9

    window = max(test, key=lambda w: np.nanmax(model.score([w])[0]))
    node_scores = model.score([window])[0]
    assert np.isnan(node_scores[window.node_kind == 1]).all()  # alerts are per sending host
    hosts = window.node_value[(window.node_kind == 0) & ~np.isnan(node_scores)]
    assert len(hosts) == len(set(hosts))  # one scored copy per host and window
    top = int(np.nanargmax(node_scores))
    explanation = model.explain(window, top)
    sender = explanation.entity["source.ip"]
    assert model.alert_entity(window, top) == explanation.entity  # what suppression keys on before explaining
    sent = set(flows.loc[flows["source.ip"].astype(str) == sender, "event.id"])
    assert explanation.evidence and set(explanation.evidence) <= sent
    assert explanation.extra["flows"][0]["score"] >= explanation.extra["flows"][-1]["score"]
    assert len(explanation.contributors) == 5 and all(np.isfinite(c["weight"]) for c in explanation.contributors)

    model.save(tmp_path / "hetero.pt")
    loaded = HeteroGnnDetector.load(tmp_path / "hetero.pt")
    assert np.array_equal(np.concatenate(loaded.target_scores(test)), scores)
    assert loaded.threshold_ == model.threshold_ and loaded.classes_ == model.classes_


def test_a_verdict_on_a_hetero_gnn_alert_labels_the_flows_it_showed_for_the_next_training(flows):
    """`hetero_gnn` alerts name the sending host but learns from the flows' labels: a verdict
    labels the host and the evidence flows the alert showed (an analyst's word wins over the
    events' labels), and the next training reads them. Here a new window arrives unlabeled, as a
    SOC's own traffic does; the analyst calls its top alert a false positive."""
    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
    from siem_gad.timeutil import isoformat
    from siem_gad.triage.feedback import Verdict, label_windows

    windows = build(HostFlowGraphBuilder(flows_per_graph=100, **LABELS), flows, timedelta(minutes=10))
    target = windows[-1]
    target.node_label = None
    params = {"epochs": 10, "hidden": 16, "seed": 1, "min_class_rows": 1}
    before = HeteroGnnDetector(**params).fit(windows)
    top = int(np.nanargmax(before.score([target])[0]))
    explanation = before.explain(target, top)
    verdict = Verdict("a", "false_positive", alerts=[{"alert_id": "a", "start": isoformat(target.start),
                                                     "entity": explanation.entity, "evidence": explanation.evidence}])
    assert label_windows(windows, [verdict]) == 1 + len(explanation.evidence)
    flows_shown = (target.node_kind == 1) & np.isin(target.node_value.astype(str), explanation.evidence)
    assert list(target.node_label[flows_shown]) == ["benign"] * len(explanation.evidence)
    assert target.node_label[top] == "benign" and sum(v is not None for v in target.node_label) == 1 + len(explanation.evidence)
    after = HeteroGnnDetector(**params).fit(windows)
    assert labeled_flows(after) == labeled_flows(before) + len(explanation.evidence)
    shown_before, shown_after = (np.asarray(m.target_scores([target])[0])[flows_shown[target.node_kind == 1]]
                                 for m in (before, after))
    assert shown_after.mean() < shown_before.mean()  # taught benign (by little: the same C&C is labeled elsewhere)

def labeled_flows(model) -> int:
    return model.metrics_["training_nodes"] + model.metrics_["validation_nodes"]


def test_hetero_gnn_novelty_half_finds_a_burst_no_label_taught_it_and_reloads(flows, tmp_path: Path):
    """With `novelty`, a sender's burst of flows unlike anything in training alerts even where the
    labels never taught the network its kind; one such flow alone counts for nothing; flows
    below both thresholds stay below the alert one."""
    from dataclasses import replace

    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
    from siem_gad.graphs.host_flow import FLOW

    windows = build(HostFlowGraphBuilder(flows_per_graph=128, **LABELS), flows, timedelta(minutes=10))
    train, test = windows[: len(windows) * 2 // 3], windows[len(windows) * 2 // 3:]
    plain = HeteroGnnDetector(epochs=15, hidden=16, seed=1, novelty=False).fit(train)
    both = HeteroGnnDetector(epochs=15, hidden=16, seed=1, novelty_burst=4).fit(train)  # novelty: on by default
    assert both.threshold_ == plain.threshold_ and both.novelty_ is not None
    window = next(w for w in test if (w.node_kind == FLOW).sum() >= 10)
    flows_at = np.flatnonzero(window.node_kind == FLOW)
    senders = both.novelty_groups(window).astype(str)
    names, counts = np.unique(senders, return_counts=True)
    busy = names[np.argmax(counts)]
    assert counts.max() >= 5
    burst = np.flatnonzero(senders == busy)[:4]
    x = window.x.copy()
    x[flows_at[burst]] = x[flows_at[burst]] * 50 + 25  # four flows of a kind nobody labeled: far off every one seen
    strange = replace(window, x=x)
    network, combined = plain.target_scores([strange])[0], both.target_scores([strange])[0]
    ratios = both.novelty_ratios(strange)
    assert (combined >= network).all() and (ratios[burst] > 1).all()
    assert (combined[burst] >= both.threshold_).all()
    quiet = (ratios < 1) & (network < both.threshold_)
    assert quiet.any() and (combined[quiet] < both.threshold_).all()
    assert np.array_equal(combined >= both.threshold_, (network >= both.threshold_) | (ratios >= 1))
    lone = x.copy()
    lone[flows_at[burst[1:]]] = window.x[flows_at[burst[1:]]]  # the first of them alone
    alone = both.novelty_ratios(replace(window, x=lone))[burst[0]]
    assert alone == 0  # one novel flow of the four a burst needs: no novelty at all
    sender_of = both.explain(strange, int(flows_at[burst[0]]))
    top = sender_of.extra["flows"][0]
    assert "novelty threshold" in sender_of.summary and top["novelty"] > 1, sender_of.summary
    assert top["rarest feature"] in sender_of.summary and 0 < top["training share"] < 0.01
    assert "4 novel flows from this host" in sender_of.summary, sender_of.summary
    both.save(tmp_path / "novel.pt")
    loaded = HeteroGnnDetector.load(tmp_path / "novel.pt")
    np.testing.assert_allclose(loaded.target_scores([strange])[0], combined)


def test_cat_gnn_intervener_mixes_only_environment_nodes():
    import torch

    from siem_gad.detectors.graph_nets import CatGnnNet

    net = CatGnnNet(3, 0, 8, 2, 1, 0.0, attention="temporal", heads=2, time_dim=4, intervene=True,
                    causal_ratio=0.25, mix=1.0)
    # two windows of 4 nodes; node 0 and node 5 receive all the attention of their window
    batch = {"x": torch.zeros(8, 3), "graph": torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
             "edge_index": torch.tensor([[0, 0, 0, 5, 5, 5], [1, 2, 3, 4, 6, 7]])}
    h = torch.arange(8, dtype=torch.float32).unsqueeze(1).repeat(1, 8)
    torch.manual_seed(0)
    mixed = net._intervene(h, batch, torch.ones(6))
    assert torch.equal(mixed[[0, 5]], h[[0, 5]])  # causal nodes are kept
    for node, causal in ((1, 0), (2, 0), (3, 0), (4, 5), (6, 5), (7, 5)):
        lam = (h[node, 0] - mixed[node, 0]) / (h[node, 0] - h[causal, 0])
        assert 0 <= lam <= 1 and torch.allclose(mixed[node], (1 - lam) * h[node] + lam * h[causal])


@pytest.mark.parametrize("variant", [{}, {"intervene": False}, {"attention": "gat", "intervene": False},
                                     {"novelty": True}])
def test_cat_gnn_variants_learn_hosts_explain_by_attention_and_reload(flows, tmp_path: Path, variant: dict):
    from siem_gad.detectors.cat_gnn import CatGnnDetector

    windows = build(TemporalGraphBuilder(**LABELS), flows, timedelta(minutes=10))
    model = CatGnnDetector(epochs=15, hidden=16, heads=2, seed=0, **variant).fit(windows)
    scores = model.score(windows)
    truth = np.concatenate([w.node_label for w in windows]) != "benign"
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(truth, np.concatenate(scores)) > 0.8
    position = int(np.argmax([s.max() for s in scores]))
    window = windows[position]
    item = int(np.argmax(scores[position]))
    explanation = model.explain(window, item)
    attention = [e["attention"] for e in explanation.extra["attention_edges"]]
    assert attention == sorted(attention, reverse=True) and explanation.evidence
    host = str(window.node_value[item])
    involved = flows[(flows["source.ip"].astype(str) == host) | (flows["destination.ip"].astype(str) == host)]
    assert set(explanation.evidence) <= set(involved["event.id"])
    assert ("novelty" in explanation.extra) == bool(variant.get("novelty"))  # its ratio, when the half is on
    model.save(tmp_path / "cat.pt")
    loaded = CatGnnDetector.load(tmp_path / "cat.pt")
    assert np.array_equal(np.concatenate(loaded.score(windows)), np.concatenate(scores))


def test_graph_ae_ranks_a_distorted_entity_high_scores_edges_and_reloads(tmp_path: Path):
    from siem_gad.detectors.graph_ae import GraphAeDetector
    from siem_gad.graphs import WindowGrid
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder
    from siem_gad.simulator import Enterprise

    enterprise = Enterprise(seed=3, hosts=20, hours=26)
    events = enterprise.events(enterprise.start, enterprise.end)
    windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), 26))
    train, test = windows[:24], windows[24:26]
    model = GraphAeDetector(epochs=40, hidden=16, seed=0).fit(train)
    window = test[0]
    distorted = window.x.copy()
    victim = int(np.argmin(window.x[:, window.feature_names.index("events")]))
    distorted[victim] = window.x.max(axis=0) * 1.5  # a quiet entity suddenly does everything at once
    from dataclasses import replace

    odd = replace(window, x=distorted)
    scores = model.score([odd])[0]
    assert scores[victim] >= np.percentile(scores, 90) and scores[victim] > model.score([window])[0][victim]
    edges = model.score_edges([odd])[0]
    assert edges.shape == (odd.num_edges,) and np.isfinite(edges).all()
    explanation = model.explain(odd, victim)
    assert explanation.contributors[0]["name"] in window.feature_names and explanation.extra["unexpected_neighbors"]
    # The evidence: events of the victim's least expected links, and the count of all its events.
    field, value = window.node_fields[window.node_kind[victim]], window.node_value[victim]
    others = {n["neighbor"] for n in explanation.extra["unexpected_neighbors"]}
    other_field = window.node_fields[1 - window.node_kind[victim]]
    frame = events.set_index("event.id").loc[explanation.evidence]
    in_window = events[(events["@timestamp"] >= window.start) & (events["@timestamp"] < window.end)]
    assert explanation.evidence and (frame[field] == value).all() and set(frame[other_field]) <= others
    assert explanation.evidence_count == int((in_window[field] == value).sum())
    model.save(tmp_path / "gae.pt")
    loaded = GraphAeDetector.load(tmp_path / "gae.pt")
    assert np.array_equal(loaded.score([odd])[0], scores)


ZEEK_FIELDS = {"id.orig_h": "source.ip", "id.resp_h": "destination.ip", "id.resp_p": "destination.port",
               "proto": "network.transport", "duration": "event.duration", "orig_bytes": "source.bytes",
               "resp_bytes": "destination.bytes", "orig_pkts": "source.packets", "resp_pkts": "destination.packets",
               "conn_state": "zeek.connection.state", "history": "zeek.connection.history",
               "detailed-label": "label.detailed"}


def zeek_source(directory: Path, rows: int, keep_labels: bool = True) -> dict:
    """The first `rows` flows of the Mirai capture as a Zeek conn.csv read by the `csv` source."""
    require_data("iot23")
    flows = pd.read_csv(SHARED_DATA / "iot23" / f"{MIRAI}-labeled.csv", nrows=rows, dtype=str, keep_default_na=False)
    if not keep_labels:
        flows = flows.drop(columns=["label", "detailed-label"])
    csv = directory / "conn.csv"
    flows.to_csv(csv, index=False)
    return {"zeek": {"type": "csv", "path": str(csv), "timestamp_field": "ts", "timestamp_format": "epoch_s",
                     "id_field": "uid", "field_map": ZEEK_FIELDS}}


def test_hetero_gnn_end_to_end_from_a_labeled_zeek_csv(tmp_path: Path):
    """A SOC trains on its labeled flows: CSV source, host_flow builder with a label field, alerts
    per sending host with the flows behind them, and `siem-gad explain` showing them."""
    sources = zeek_source(tmp_path, 3000)
    jobs = {"flows": {"source": "zeek", "window": "10m", "batch_windows": 12,
                      "graph": {"type": "host_flow", "flows_per_graph": 128, **LABELS},
                      "detectors": {"hetero": {"type": "hetero_gnn", "epochs": 10, "hidden": 16,
                                               "training": {"windows": 6}}},
                      "sinks": ["alerts"]}}
    rules = {"flow-attack": {"name": "Host sends attack flows", "job": "flows", "detector": "hetero",
                             "severity": "high", "threat": {"techniques": ["T1498"]}}}
    config = make_config(tmp_path, sources=sources, jobs=jobs, rules=rules)
    siem_gad("run", "-c", str(config), "--once")
    alerts = read_alerts(tmp_path / "state" / "alerts.jsonl")
    assert alerts and all(a["siem_gad"]["entity"]["field"] == "source.ip" for a in alerts)
    top = max(alerts, key=lambda a: a["siem_gad"]["score"])
    assert top["siem_gad"]["details"]["flows"] and top["siem_gad"]["evidence"]["event_ids"]
    shown = json.loads(siem_gad("explain", top["siem_gad"]["alert_id"], "-c", str(config), "--json").stdout)
    assert shown["siem_gad"]["details"]["flows"] == top["siem_gad"]["details"]["flows"]

    # binary labels instead of attack classes: the trained model no longer fits the job
    from siem_gad.pipeline import App

    del jobs["flows"]["graph"]["class_field"]
    app = App.open(make_config(tmp_path, sources=sources, jobs=jobs, rules=rules))
    try:
        assert app.job("flows").status()["models"][0]["state"] == "stale"
    finally:
        app.close()


def documented_plugin(marker: str) -> str:
    """The Python code block of docs/detectors.md whose first line is `marker`, unindented."""
    import textwrap

    text = (ROOT / "docs" / "detectors.md").read_text()
    start = text.rindex("\n", 0, text.index(marker)) + 1
    return textwrap.dedent(text[start:text.index("```", start)].rstrip(" "))


def test_documented_incidents_plugin_labels_flows_for_hetero_gnn(tmp_path: Path):
    """docs/detectors.md's `enrich_events` example, as written there: confirmed incidents from a
    CSV label an unlabeled Zeek export, and `hetero_gnn` learns the C&C flows from them."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "incidents.py").write_text(documented_plugin("# plugins/incidents.py"))
    (plugins / "confirmed_incidents.csv").write_text(
        "ip,start,end,class\n185.244.25.235,2018-12-21T14:55:00Z,2018-12-21T18:00:00Z,C&C\n")
    jobs = {"flows": {"source": "zeek", "window": "10m", "batch_windows": 12,
                      "graph": {"type": "host_flow", "flows_per_graph": 128, "label_field": "verdict"},
                      "detectors": {"hetero": {"type": "hetero_gnn", "epochs": 10, "hidden": 16,
                                               "training": {"windows": 6}}},
                      "sinks": ["alerts"]}}
    rules = {"flow-attack": {"name": "Host talks to its C&C", "job": "flows", "detector": "hetero",
                             "severity": "high"}}
    config = make_config(tmp_path, sources=zeek_source(tmp_path, 3000, keep_labels=False), jobs=jobs, rules=rules)

    listed = siem_gad("plugins", "-c", str(config)).stdout
    assert "incidents" in listed and "enrich_events" in listed
    trained = siem_gad("train", "-c", str(config)).stdout
    siem_gad("run", "-c", str(config), "--once")
    alerts = read_alerts(tmp_path / "state" / "alerts.jsonl")
    assert alerts, trained
    top = max(alerts, key=lambda a: a["siem_gad"]["score"])
    assert top["siem_gad"]["entity"]["value"] == "192.168.1.195"
    assert {(flow["receiver"], flow["class"]) for flow in top["siem_gad"]["details"]["flows"]} == {
        ("185.244.25.235", "malicious")}


@pytest.mark.needs_data("iot23", "luflow")
@pytest.mark.parametrize("bench", ["iot23-flows", "iot23-hosts", "luflow"])
def test_reduced_graph_benchmarks_run(bench: str, tmp_path: Path, capsys):
    """The benchmarks of docs/benchmarks.md on small slices with 5 epochs and one seed."""
    from graph_detectors import main

    results = main([bench, "--quick", "--seeds", "1", "--out", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text())["seconds"] == results["seconds"]
    metrics = []

    def collect(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("auc", "ap", "f1", "macro_f1") and value is not None:
                    metrics.append(value)
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(results)
    assert metrics and all(-1e-9 <= m <= 1 + 1e-9 for m in metrics)
    if bench == "luflow":  # links new to the history carry the attacks, on the slice as on the days
        rare = results["flow_level"]["rare_links"][0]
        assert rare["with outliers"]["auc"] > 0.9 and rare["without outliers"]["auc"] > 0.95, rare
        table = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()
                 if line.startswith("| ")}
        assert set(results["flow_level"]) <= set(table)  # one row per model, as in docs/benchmarks.md
        assert f"| {rare['with outliers']['auc']:.3f} (" in table["rare_links"]


@pytest.mark.needs_data("iot23")
def test_reduced_hetero_novelty_benchmark_holds_each_capture_out(capsys):
    """bench/hetero_novelty.py on 3,000 flows a capture, one seed, 5 epochs: a row per capture
    and model; the novelty half only ever adds alerts (same network, same threshold), and none
    on the honeypots, whose oddities come in fewer than a burst."""
    from hetero_novelty import main

    main(["--rows", "3000", "--seeds", "1", "--epochs", "5"])
    rows = [line.strip("|").split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| CTU-")]
    assert [r[0].strip() for r in rows[::2]] == IOT23_CAPTURES and len(rows) == 2 * len(IOT23_CAPTURES)
    value = lambda cell: float(cell.split(" (")[0])  # noqa: E731 - "median (range)"
    for plain, novel in zip(rows[::2], rows[1::2]):
        assert "`novelty: true`" in novel[2] and "`novelty: false`" in plain[2]
        assert value(novel[5]) >= value(plain[5])  # false-positive rate: a superset of the alerts
        if "Honeypot" in plain[0]:
            assert novel[5] == plain[5], plain[0]
        for cell in (*plain[3:], *novel[3:]):
            assert cell.strip() == "-" or 0 <= value(cell) <= 1


def test_reduced_hetero_past_benchmark_scores_each_capture_after_its_training_part(capsys):
    """bench/hetero_novelty.py --protocol past on 3,000 flows a capture: a row per capture and
    model, each capture's later windows scored by the model of every capture's earlier ones,
    the novelty half only adding alerts."""
    from hetero_novelty import main

    main(["--rows", "3000", "--seeds", "1", "--epochs", "5", "--protocol", "past"])
    rows = [line.strip("|").split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| CTU-")]
    assert [r[0].strip() for r in rows[::2]] == IOT23_CAPTURES and len(rows) == 2 * len(IOT23_CAPTURES)
    value = lambda cell: float(cell.split(" (")[0])  # noqa: E731 - "median (range)"
    for plain, novel in zip(rows[::2], rows[1::2]):
        assert "`novelty: false`" in plain[2] and "`novelty: true`" in novel[2] and plain[1] == novel[1]
        assert value(novel[5]) >= value(plain[5])
        scored = int(plain[1].split(" / ")[1])
        assert 0 < scored < 3000  # only the later part of the capture


def test_reduced_hetero_verdicts_benchmark_reviews_the_first_half_and_scores_the_second(capsys):
    """bench/hetero_novelty.py --verdicts on 3,000 flows a capture: the verdicts follow the
    ground truth (a honeypot gives only false positives), and on the two captures whose C&C the
    other captures teach only in part, the confirmed alerts raise F1 on the later half."""
    from hetero_novelty import main

    main(["--rows", "3000", "--seeds", "1", "--epochs", "5", "--verdicts", "10"])
    rows = {(r[0].strip(), "verdicts" in r[3]): r for r in (line.strip("|").split(" | ") for line in
                                                            capsys.readouterr().out.splitlines() if line.startswith("| CTU-"))}
    assert len(rows) == 2 * len(IOT23_CAPTURES)
    value = lambda cell: float(cell.split(" (")[0])  # noqa: E731 - "median (range)"
    for capture in IOT23_CAPTURES:
        true_positives, false_positives = map(int, rows[(capture, True)][2].split(" / "))
        assert true_positives + false_positives <= 10
        if "Honeypot" in capture:
            assert true_positives == 0
    for capture in ("CTU-Malware-Capture-34-1", "CTU-Malware-Capture-42-1"):
        assert value(rows[(capture, True)][5]) > value(rows[(capture, False)][5]), capture

@pytest.mark.needs_data("iot23")
def test_iot23_label_correction_relabels_only_the_cc_network():
    """Capture 42-1's heartbeat to the Mirai C&C network is benign in the dataset, C&C once corrected."""
    from flow_data import IOT23_CC_NETWORK

    capture = "CTU-Malware-Capture-42-1"
    raw = pd.read_csv(SHARED_DATA / "iot23" / f"{capture}-labeled.csv", dtype=str, keep_default_na=False)
    dataset, corrected = iot23(capture), iot23(capture, corrected_labels=True)
    to_cc = (raw["id.resp_h"].str.startswith(IOT23_CC_NETWORK) | raw["id.orig_h"].str.startswith(IOT23_CC_NETWORK))
    relabeled = set(raw.loc[to_cc & (raw["label"].str.lower() == "benign"), "uid"])
    changed = (dataset["label"] != corrected["label"]).to_numpy()
    assert len(relabeled) > 1000 and set(corrected.loc[changed, "event.id"]) == relabeled
    assert set(corrected.loc[changed, "label.detailed"]) == {"C&C"}
    assert (corrected.loc[~changed, "label.detailed"] == dataset.loc[~changed, "label.detailed"]).all()


@pytest.mark.needs_data("iot23")
def test_label_audit_sorts_every_held_out_attack_flow_by_what_training_says():
    from graph_detectors import SIGNATURE, iot23_labels

    audit = iot23_labels(quick=False, seeds=1)["labels"]
    captures = {labels: {c: iot23(c, corrected_labels=labels == "corrected") for c in IOT23_CAPTURES}
                for labels in audit}
    for labels, table in audit.items():
        for held, classes in table.items():
            test = captures[labels][held]
            attacks = test[test["label"] != "benign"]
            assert sum(n for row in classes.values() for n in row.values()) == len(attacks)
            train = pd.concat([e for c, e in captures[labels].items() if c != held], ignore_index=True)
            signatures = lambda frame: frame[SIGNATURE].astype(str).apply(lambda c: c + "|").sum(axis=1)  # noqa: E731
            attack_signatures = set(signatures(train[train["label"] != "benign"]))
            only_benign = set(signatures(train)) - attack_signatures
            expected = signatures(attacks).isin(only_benign).sum()
            assert sum(row.get("benign only", 0) for row in classes.values()) == expected
    # The dataset's labels teach a model to pass every C&C flow of 34-1; the corrected ones do not.
    mirai_cc = {labels: audit[labels][MIRAI]["C&C"] for labels in audit}
    assert mirai_cc["dataset"].get("mostly attack", 0) == 0
    assert mirai_cc["corrected"]["mostly attack"] > 0.9 * sum(mirai_cc["corrected"].values())


@pytest.mark.needs_data("luflow")
def test_reduced_deployment_benchmark_scores_each_day_alone(tmp_path: Path, capsys):
    """bench/deployment.py on 20,000 flows a day: trained on the two earliest days, every later
    day scored alone at the training threshold, attack days and benign days apart."""
    from deployment import main

    results = main(["luflow", "--quick", "--seeds", "1", "--out", str(tmp_path / "out.json")])
    folds = {fold["scored"]: fold for fold in results["folds"]}
    assert set(folds) == {"2020.07.11", "2020.09.09", "2020.12.17", "2020.12.18", "2020.12.22", "2020.12.23"}
    assert all(fold["train"] == ["2020.07.08", "2020.07.09"] for fold in folds.values())
    assert [d for d, f in folds.items() if f["has_attacks"]] == ["2020.07.11", "2020.09.09"]
    for fold in folds.values():
        for name, (entry, *_) in fold["models"].items():
            assert entry["flows"] == (12_993 if fold["scored"] == "2020.09.09" else 20_000), (fold["scored"], name)  # 09-09 is short
            if fold["has_attacks"]:
                assert 0 <= entry["auc"] <= 1 and 0 <= entry["recall_at_50"] <= 1
                assert entry["alerted_malicious_sources"] <= min(entry["alerted_sources"], entry["malicious_sources"])
            else:
                assert entry["malicious_sources"] == 0 and entry["recall_at_10"] is None
    # links new to the history carry most of 07-11's attacks, even on a slice
    july = folds["2020.07.11"]["models"]
    assert july["rare_links"][0]["auc"] > 0.9
    # the history's labels: July's returning attackers no longer count as familiar
    labeled, plain = july["rare_links, labeled history"][0], july["rare_links"][0]
    assert labeled["auc"] > plain["auc"] and labeled["alerted_malicious_sources"] > plain["alerted_malicious_sources"]
    printed = capsys.readouterr().out
    assert "Attack days (each scored alone):" in printed and "Days without a malicious flow:" in printed


@pytest.mark.needs_data("iot23")
def test_reduced_leave_one_capture_out_benchmark_holds_each_capture_out(tmp_path: Path):
    """bench/deployment.py iot23 on 3,000 flows a capture: every capture scored by models of the
    five others, thresholds fixed on those, the combination alerting where either half does."""
    from deployment import main

    results = main(["iot23", "--protocol", "leave-one-out", "--quick", "--seeds", "1",
                    "--out", str(tmp_path / "out.json")])
    folds = {fold["scored"]: fold for fold in results["folds"]}
    assert set(folds) == set(IOT23_CAPTURES)
    for held, fold in folds.items():
        assert sorted(fold["train"]) == sorted(c for c in IOT23_CAPTURES if c != held)
        assert fold["has_attacks"] == ("Malware" in held)
        entries = {name: runs[0] for name, runs in fold["models"].items()}
        supervised = entries["supervised (forest + port)"]
        for both, novelty in (("supervised + novelty", "novelty (isolation forest, benign flows)"),
                              ("supervised + rarity novelty", "novelty (rarity in bursts, as `hetero_gnn`)")):
            combined, halves = entries[both], (supervised, entries[novelty])
            assert all(combined["alerts"] >= e["alerts"] for e in halves)  # an alert when either half alerts
            assert combined["alerts"] <= sum(e["alerts"] for e in halves)
            if not fold["has_attacks"]:
                assert combined["auc"] is None
                assert combined["false_positive_rate"] == combined["alerts"] / combined["rows"]
