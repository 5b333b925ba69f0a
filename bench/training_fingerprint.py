"""Fingerprints of what every neural detector learns, for refactors of the training code.

Trains each torch detector (vae, aegmm, vaegmm, deep_sad, lstm_ae, graph_ae, gcn_hmm,
hetero_gnn, cat_gnn) on small fixed data with a fixed seed, and prints a SHA-256 of its saved
state, its threshold and its scores. Equal fingerprints before and after a change mean the
change trains exactly the same models, so every figure of docs/benchmarks.md that those
detectors produced reproduces without re-running the benchmarks.

    .venv/bin/python bench/training_fingerprint.py > before.json   # on the old code
    .venv/bin/python bench/training_fingerprint.py > after.json    # on the new code
    diff before.json after.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def digest(detector, windows) -> dict:
    import torch

    state = detector.get_state()
    hasher = hashlib.sha256()

    def feed(value):
        if isinstance(value, torch.Tensor):
            hasher.update(value.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value):
                hasher.update(str(key).encode())
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            for item in value:
                feed(item)
        else:
            hasher.update(repr(value).encode())

    feed(state)
    scores = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in detector.score(windows)])
    return {"state": hasher.hexdigest()[:16], "threshold": repr(float(detector.threshold_)),
            "scores": hashlib.sha256(scores.tobytes()).hexdigest()[:16]}


def main() -> None:
    from siem_gad.threads import decide

    decide(1).apply()
    from siem_gad.graphs import WindowGrid
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder
    from siem_gad.simulator import Enterprise

    enterprise = Enterprise(seed=3, hosts=20, hours=30)
    events = enterprise.events(enterprise.start, enterprise.end)
    windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), 30))
    out = {}
    from siem_gad.detectors.deep_sad import DeepSadDetector
    from siem_gad.detectors.gcn_hmm import GcnHmmDetector
    from siem_gad.detectors.gmm import AeGmmDetector, VaeGmmDetector
    from siem_gad.detectors.graph_ae import GraphAeDetector
    from siem_gad.detectors.lstm_ae import LstmAeDetector
    from siem_gad.detectors.vae import VaeDetector

    tabular = {"epochs": 8, "hidden": [16], "latent": 4, "seed": 2}
    for name, make in (("vae", lambda: VaeDetector(**tabular)), ("aegmm", lambda: AeGmmDetector(**tabular)),
                       ("vaegmm", lambda: VaeGmmDetector(**tabular)),
                       ("deep_sad", lambda: DeepSadDetector(**tabular, pretrain_epochs=3)),
                       ("lstm_ae", lambda: LstmAeDetector(sequence=6, epochs=12, seed=2)),
                       ("graph_ae", lambda: GraphAeDetector(epochs=10, hidden=16, seed=2)),
                       ("gcn_hmm", lambda: GcnHmmDetector(epochs=10, seed=2))):
        out[name] = digest(make().fit(windows[:24]), windows[24:])
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "iot23"
    if data.exists():
        from flow_data import iot23

        from siem_gad.detectors.cat_gnn import CatGnnDetector
        from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
        from siem_gad.graphs.host_flow import HostFlowGraphBuilder
        from siem_gad.graphs.temporal import TemporalGraphBuilder

        flows = iot23("CTU-Malware-Capture-34-1", rows=3000)
        labels = {"label_field": "label", "class_field": "label.detailed"}
        for name, builder, make in (
                ("hetero_gnn", HostFlowGraphBuilder(flows_per_graph=128, **labels),
                 lambda: HeteroGnnDetector(epochs=8, hidden=16, seed=1)),
                ("cat_gnn", TemporalGraphBuilder(**labels), lambda: CatGnnDetector(epochs=6, hidden=16, heads=2, seed=0))):
            start = flows["@timestamp"].min().floor("10min")
            count = int((flows["@timestamp"].max() - start) / timedelta(minutes=10)) + 1
            graph = builder.build(flows, WindowGrid(start.to_pydatetime(), timedelta(minutes=10), count))
            out[name] = digest(make().fit(graph), graph)
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
