"""`siem-gad evaluate`: metrics against hand-computed values, the label join at each level,
reports on the simulator and on a real IoT-23 capture, and clear errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from conftest import SHARED_DATA, make_config, siem_gad
from siem_gad.evaluate.labels import LabelIndex
from siem_gad.labeling import positive_mask
from siem_gad.evaluate.metrics import expected_entities_at_k, precision_at_k, score_metrics
from siem_gad.events import finalize_events
from siem_gad.graphs import WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.1, 0.5, 0.5, 0.9]), st.sampled_from("abc")),
                min_size=1, max_size=7),
       st.integers(1, 8))
def test_precision_and_entities_at_k_are_the_mean_over_every_order_of_the_ties(items, k):
    """Equal to the plain top k averaged over all orders of the items (only the order among
    equal scores can change the top k): precision, and the distinct entities with a positive
    item in it."""
    from itertools import permutations

    labels = np.array([h for h, _, _ in items])
    scores = np.array([s for _, s, _ in items])
    entities = np.array([e for _, _, e in items], dtype=object)
    tops = [[i for i in sorted(order, key=lambda i: -scores[i])][:k] for order in permutations(range(len(items)))]
    assert precision_at_k(labels, scores, k) == pytest.approx(np.mean([labels[top].mean() for top in tops]))
    found = np.mean([len({entities[i] for i in top if labels[i]}) for top in tops])
    assert expected_entities_at_k(labels, scores, entities, k) == pytest.approx(found)


def test_precision_at_k_breaks_no_tie_by_write_order():
    labels, scores = np.array([True, False, False, True]), np.array([0.9, 0.5, 0.5, 0.5])
    assert precision_at_k(labels, scores, 2) == pytest.approx((1 + 1 / 3) / 2)
    assert precision_at_k(labels[::-1], scores[::-1], 2) == precision_at_k(labels, scores, 2)
    assert precision_at_k(np.array([], dtype=bool), np.array([]), 10) == 0.0
    assert precision_at_k(np.array([False, True]), np.array([np.nan, 0.1]), 1) == 1.0  # no score ranks last


def test_metrics_match_a_hand_computed_example():
    labels = np.array([True, False, True, False])
    scores = np.array([0.9, 0.8, 0.4, 0.1])
    m = score_metrics(labels, scores, threshold=0.5, k=2)
    # AUC: of the 4 (positive, negative) pairs, 3 are ordered right.
    assert m["roc_auc"] == pytest.approx(0.75)
    # AP: precision 1 at recall 0.5 (0.9), 2/3 at recall 1 (0.4): 0.5 * 1 + 0.5 * 2/3.
    assert m["average_precision"] == pytest.approx(5 / 6)
    assert m["precision_at_2"] == 0.5
    assert m["at_threshold"] == pytest.approx({"threshold": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5,
                                               "true_positives": 1, "false_positives": 1, "false_negatives": 1})
    assert m["at_best_f1"]["threshold"] == 0.4 and m["at_best_f1"]["f1"] == pytest.approx(0.8)
    single = score_metrics(np.array([False, False]), np.array([0.1, 0.2]), 0.5)
    assert single["roc_auc"] is None and single["average_precision"] is None


def test_positive_values_default_and_explicit():
    values = pd.Series(["Benign", "Malicious", "-", "port_scan", None, "normal", "0"])
    assert positive_mask(values, None).tolist() == [False, True, False, True, False, False, False]
    assert positive_mask(values, ["port_scan"]).tolist() == [False, False, False, True, False, False, False]


def test_label_join_at_window_node_and_edge_level():
    events = finalize_events(pd.DataFrame({
        "@timestamp": [T0 + timedelta(minutes=m) for m in (5, 10, 20, 70, 80)],
        "source.ip": ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.3"],
        "destination.ip": ["10.9.0.1", "10.9.0.2", "10.9.0.1", "10.9.0.1", "10.9.0.1"],
        "labels.attack": ["benign", "scan", "benign", "benign", "exfil"],
    }), "test")
    builder = BipartiteGraphBuilder()
    windows = builder.build(events, WindowGrid(T0, HOUR, 2))
    index = LabelIndex.build(events, "labels.attack", None, T0, HOUR, builder.entity_fields)
    first, second = windows
    assert index.item_labels(first, "window") == [{"scan"}] and index.item_labels(second, "window") == [{"exfil"}]
    nodes = {" ".join(f"{k}={v}" for k, v in first.entity(n).items()): labels
             for n, labels in enumerate(index.item_labels(first, "node"))}
    # 10.0.0.1 has one attack event in window 0; 10.9.0.2 is its destination; 10.9.0.1 only
    # saw benign events in window 0 (its attack event is in window 1).
    assert nodes == {"source.ip=10.0.0.1": {"scan"}, "source.ip=10.0.0.2": set(),
                     "destination.ip=10.9.0.1": set(), "destination.ip=10.9.0.2": {"scan"}}
    edges = {(str(first.node_value[a]), str(first.node_value[b])): labels
             for (a, b), labels in zip(first.edge_index.T, index.item_labels(first, "edge"))}
    assert edges == {("10.0.0.1", "10.9.0.1"): set(), ("10.0.0.1", "10.9.0.2"): {"scan"},
                     ("10.0.0.2", "10.9.0.1"): set()}
    second_nodes = {str(second.node_value[n]): labels for n, labels in enumerate(index.item_labels(second, "node"))}
    assert second_nodes == {"10.0.0.1": set(), "10.0.0.3": {"exfil"}, "10.9.0.1": {"exfil"}}
    assert index.first_seen == {"scan": T0 + timedelta(minutes=10), "exfil": T0 + timedelta(minutes=80)}


def test_evaluate_on_the_simulator_writes_report_metrics_and_plots(small_config: Path, tmp_path: Path):
    out = tmp_path / "evaluation"
    result = siem_gad("evaluate", "-c", str(small_config), "--label-field", "labels.attack", "--out", str(out))
    assert "network/iforest: ROC-AUC" in result.stdout
    for name in ("report.md", "metrics.json", "roc.png", "pr.png", "timeline.png", "alerts_per_day.png"):
        assert (out / name).stat().st_size > 500, name
    metrics = json.loads((out / "metrics.json").read_text())
    by_name = {d["detector"]: d for d in metrics["detectors"]}
    assert set(by_name) == {"gcn_hmm", "iforest"} and by_name["iforest"]["level"] == "node"
    assert by_name["iforest"]["roc_auc"] > 0.65  # 0.73 measured on this small run
    assert by_name["iforest"]["positives"] > 0 and by_name["gcn_hmm"]["items"] == 12  # 36 windows, 24 train
    rule = by_name["iforest"]["rules"]["entity-outlier"]
    assert rule["alerts"] > 0 and 0 <= rule["precision"] <= 1 and rule["incidents"]
    assert "ssh_bruteforce" in by_name["gcn_hmm"]["detection_delay_s"]
    days = by_name["iforest"]["per_day"]
    assert [d["day"] for d in days] == sorted(d["day"] for d in days) and sum(d["items"] for d in days) == \
        by_name["iforest"]["items"]
    assert all((d["roc_auc"] is None) == (d["positives"] in (0, d["items"])) for d in days)
    report = (out / "report.md").read_text()
    assert "| network/iforest (iforest) | node |" in report and "![roc](roc.png)" in report
    assert f"| network/iforest | {days[0]['day']} |" in report
    assert not (small_config.parent / "state").exists(), "production state is not touched"


@pytest.mark.needs_data("iot23")
def test_evaluate_on_a_real_iot23_capture(tmp_path: Path):
    capture = SHARED_DATA / "iot23" / "CTU-Malware-Capture-34-1-labeled.csv"
    config = make_config(tmp_path / "iot", sources={"flows": {
        "type": "csv", "path": str(capture), "timestamp_field": "ts", "timestamp_format": "epoch_s",
        "id_field": "uid", "field_map": {"id.orig_h": "source.ip", "id.resp_h": "destination.ip",
                                         "id.resp_p": "destination.port", "proto": "network.transport",
                                         "orig_bytes": "network.bytes"}}},
        jobs={"network": {"source": "flows", "window": "1h", "graph": {"type": "bipartite"},
                          "detectors": {"iforest": {"type": "iforest", "training": {"windows": 8}}}}},
        rules={"entity-outlier": {"name": "Flow endpoint outlier", "job": "network", "detector": "iforest",
                                  "condition": {"top_k": 3}}})
    out = tmp_path / "out"
    siem_gad("evaluate", "-c", str(config), "--label-field", "label", "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    data = metrics["data"]["network"]
    assert data["events"] == 23145 and data["positive_events"] == 21222  # Malicious flows of the capture
    detector = metrics["detectors"][0]
    assert detector["items"] > 0 and 0 < detector["positives"] < detector["items"]
    assert detector["roc_auc"] is not None and (out / "roc.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--label-field", "labels.nope"], "the events have no field 'labels.nope'"),
    (["--label-field", "labels.attack", "--positive", "no-such-attack"], "no positive labels in 'labels.attack'"),
    (["--label-field", "labels.attack", "--use-models"], "is not trained: run `siem-gad train"),
    (["--label-field", "labels.attack", "--from", "2030-01-01", "--to", "2030-01-02"], "no events between"),
])
def test_evaluate_explains_bad_input(small_config: Path, tmp_path: Path, args: list[str], message: str):
    result = siem_gad("evaluate", "-c", str(small_config), "--job", "network", "--out", str(tmp_path / "o"), *args,
                      check=False)
    assert result.returncode == 1 and message in result.stderr, result.stderr


def test_day_metrics_rank_each_day_alone_and_never_pool_benign_days():
    import pandas as pd

    from siem_gad.evaluate.metrics import day_metrics

    day1, day2 = datetime(2026, 1, 5, tzinfo=timezone.utc), datetime(2026, 1, 6, tzinfo=timezone.utc)
    rows = [(day1, "a", 9.0, True), (day1, "b", 8.0, False), (day1, "a", 7.0, True), (day1, "c", 1.0, True)]
    rows += [(day1, f"n{i}", 5.0 - i / 100, False) for i in range(20)]
    rows += [(day2, f"m{i}", float(i), False) for i in range(30)]
    items = pd.DataFrame(rows, columns=["window_start", "entity", "score", "positive"])
    attack_day, benign_day = day_metrics(items, threshold=6.0, budgets=(2, 10))
    assert attack_day["day"] == "2026-01-05" and attack_day["positives"] == 3 and attack_day["attack_entities"] == 2
    assert attack_day["alerts_at_threshold"] == 3 and attack_day["recall_at_threshold"] == pytest.approx(2 / 3)
    assert attack_day["recall_at_2"] == pytest.approx(1 / 3) and attack_day["precision_at_2"] == 0.5
    assert attack_day["entity_recall_at_10"] == 0.5  # "c" ranks last: one of two attackers in the top 10
    assert 0.5 < attack_day["roc_auc"] < 1
    assert benign_day["roc_auc"] is None and benign_day["recall_at_10"] is None  # nothing to rank
    assert benign_day["alerts_at_threshold"] == 24  # scores 6 .. 29: every one a false positive
