"""Simulated Ray clusters of two and four nodes on this machine (`ray.cluster_utils.Cluster`,
one CPU each): graph building, training and scoring tasks run on every node, the link table's
shard actors are spread over the nodes, and the models and alerts are those of the local
engine. What it proves: scheduling across raylets, models and windows moving between the
nodes' object stores, results gathered in order. What it does not: real network latency or
partitions, or machines of different speed; a node lost mid-pass is
tests/test_execution_node_loss.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require_module

ray = require_module("ray", extra="ray")
from ray.cluster_utils import Cluster  # noqa: E402

from cluster_support import run  # noqa: E402


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
