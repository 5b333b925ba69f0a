"""What the simulated-cluster tests share: one job with a sequence detector, a plain one and a
keyed baseline, run once, and what the run reports about where its work ran."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import ray

from siem_gad.pipeline import App
from siem_gad.scheduler import run_once

from conftest import make_config, read_alerts

DETECTORS = ("gcn_hmm", "iforest", "rare_links")
RULES = {"graph-shift": {"name": "Graph shift", "job": "network", "detector": "gcn_hmm"},
         "entity-outlier": {"name": "Entity outlier", "job": "network", "detector": "iforest", "condition": {"top_k": 3}},
         "new-links": {"name": "New links", "job": "network", "detector": "rare_links", "condition": {"top_k": 2}}}


def run(directory: Path, execution: dict, during: Callable | None = None, batch_windows: int = 24
        ) -> tuple[dict, dict, set[str], set[str], set[str]]:
    """Run the job once; `during(executor)` runs in a thread beside the pass. Returns the
    thresholds, the alerts (id -> score), the nodes that fitted, ran tasks and hold shards."""
    jobs = {"network": {"source": "sim", "window": "1h", "batch_windows": batch_windows,
                        "graph": {"type": "bipartite", "source_field": "source.ip", "target_field": "destination.ip"},
                        "detectors": {"gcn_hmm": {"type": "gcn_hmm", "epochs": 40, "training": {"windows": 24}},
                                      "iforest": {"type": "iforest", "n_estimators": 100, "training": {"windows": 24}},
                                      "rare_links": {"type": "rare_links", "training": {"windows": 24}}},
                        "sinks": ["alerts"]}}
    app = App.open(make_config(directory, jobs=jobs, rules=RULES, extra={"execution": execution}))
    try:
        beside = threading.Thread(target=during, args=(app.executor(),), daemon=True) if during else None
        if beside:
            beside.start()
        assert all(o.status == "ok" for o in run_once(app, ["network"], threading.Event()))
        if beside:
            beside.join(timeout=120)
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
