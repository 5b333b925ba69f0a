"""A node of a simulated three-node Ray cluster lost in the middle of a pass (its raylet and
workers killed, as when a machine goes down): the tasks it was running are retried on the
nodes left, the runs it held in its object store are rebuilt from their lineage, its shard
actor is placed anew, and the alerts are those of the local engine."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import require_module

ray = require_module("ray", extra="ray")
from ray.cluster_utils import Cluster  # noqa: E402

from cluster_support import run  # noqa: E402


def test_a_node_lost_mid_pass_changes_no_alert(tmp_path: Path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    doomed = cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    removed = {}

    def lose_a_node(executor) -> None:
        deadline = time.monotonic() + 120
        while executor.scored_runs == 0 and time.monotonic() < deadline:  # the first batch's scoring is out
            time.sleep(0.01)
        removed["while_scoring"] = executor.scored_runs > 0
        cluster.remove_node(doomed, allow_graceful=False)

    try:
        _, alerts, _, used, shards_on = run(tmp_path / "ray", {"engine": "ray", "address": cluster.address},
                                            during=lose_a_node, batch_windows=6)
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
    _, local_alerts, _, _, _ = run(tmp_path / "local", {"engine": "local"}, batch_windows=6)
    assert removed == {"while_scoring": True}
    assert doomed.node_id in used and doomed.node_id not in alive  # it had worked, and it is gone
    assert shards_on <= alive and len(shards_on) == 2  # its shard went to a node left
    assert alerts == local_alerts and alerts
