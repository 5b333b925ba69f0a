"""Simulated Ray clusters of two and four nodes on this machine (`ray.cluster_utils.Cluster`,
one CPU each): graph building, training and scoring tasks run on every node, the link table's
shard actors are spread over the nodes, and the models and alerts are those of the local engine. What it proves: scheduling across raylets, models and windows moving between
the nodes' object stores, results gathered in order. What it does not: real network latency
or partitions, machines of different speed, or a node lost mid-pass."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from siem_gad.pipeline import App
from siem_gad.scheduler import run_once

from conftest import make_config, read_alerts, require_module

ray = require_module("ray", extra="ray")
from ray.cluster_utils import Cluster  # noqa: E402



@pytest.fixture(scope="module", params=[2, 4], ids=lambda n: f"{n}-nodes")
def cluster(request):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(request.param - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


DETECTORS = ("gcn_hmm", "iforest", "rare_links")
RULES = {"graph-shift": {"name": "Graph shift", "job": "network", "detector": "gcn_hmm"},
         "entity-outlier": {"name": "Entity outlier", "job": "network", "detector": "iforest", "condition": {"top_k": 3}},
         "new-links": {"name": "New links", "job": "network", "detector": "rare_links", "condition": {"top_k": 2}}}


def run(directory: Path, execution: dict) -> tuple[dict, dict, set[str], set[str], set[str]]:
    jobs = {"network": {"source": "sim", "window": "1h", "batch_windows": 24,
                        "graph": {"type": "bipartite", "source_field": "source.ip", "target_field": "destination.ip"},
                        "detectors": {"gcn_hmm": {"type": "gcn_hmm", "epochs": 40, "training": {"windows": 24}},
                                      "iforest": {"type": "iforest", "n_estimators": 100, "training": {"windows": 24}},
                                      "rare_links": {"type": "rare_links", "training": {"windows": 24}}},
                        "sinks": ["alerts"]}}
    app = App.open(make_config(directory, jobs=jobs, rules=RULES, extra={"execution": execution}))
    try:
        assert all(o.status == "ok" for o in run_once(app, ["network"], threading.Event()))
        records = [app.state.latest_model("network", name) for name in DETECTORS]
        executor = app.executor()
        used = set(getattr(executor, "nodes_used", set()))
        shards_on = {ray.get(actor.node.remote()) for _, actors in getattr(executor, "shards", {}).values()
                     for actor in actors}
    finally:
        app.close()
    alerts = {a["siem_gad"]["alert_id"]: a["siem_gad"]["score"] for a in read_alerts(directory / "state" / "alerts.jsonl")}
    return ({r.detector: r.metrics["threshold"] for r in records}, alerts, {r.metrics["node"] for r in records},
            used, shards_on)


def test_tasks_and_shards_run_on_every_node_and_the_results_are_the_local_ones(tmp_path: Path, cluster):
    thresholds, alerts, fitted_on, used, shards_on = run(tmp_path / "ray", {"engine": "ray", "address": cluster.address})
    local_thresholds, local_alerts, local_fitted_on, _, _ = run(tmp_path / "local", {"engine": "local"})
    nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(nodes) == len(cluster.list_all_nodes())
    assert fitted_on <= nodes and "local" not in fitted_on  # fitted in Ray tasks, wherever a CPU was free
    assert used == nodes  # a building and a scoring run per CPU: every node worked
    assert shards_on == nodes  # one shard actor per CPU, spread
    assert local_fitted_on == {"local"}
    assert thresholds == local_thresholds and alerts == local_alerts and alerts
