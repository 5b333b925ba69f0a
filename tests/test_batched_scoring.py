"""Graph detectors score many windows per forward pass (detectors/batching.py): the batched
path gives every window the scores it gets alone (`batch_nodes: 1`, one window per pass)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from siem_gad.detectors.batching import split_rows, window_groups
from siem_gad.graphs import WindowGrid
from siem_gad.simulator import LABEL_FIELD, Enterprise


@pytest.fixture(scope="module")
def enterprise_events():
    """Ten hours of the simulated enterprise with its labeled attacks (lateral movement and
    exfiltration fall in hours 5-9 of a 10-hour run)."""
    enterprise = Enterprise(seed=5, hosts=15, hours=10)
    return enterprise, enterprise.events(enterprise.start, enterprise.end)


def windows_of(builder, enterprise_events, minutes: int = 30):
    enterprise, events = enterprise_events
    count = int(10 * 60 / minutes)
    windows = builder.build(events, WindowGrid(enterprise.start, timedelta(minutes=minutes), count))
    assert sum(w.num_nodes > 0 for w in windows) >= 10
    return windows


def per_window_and_batched(detector, windows, method: str = "score"):
    detector.set_params(batch_nodes=1)
    alone = getattr(detector, method)(windows)
    detector.set_params(batch_nodes=200_000)
    together = getattr(detector, method)(windows)
    assert len(alone) == len(together) == len(windows)
    return alone, together


def assert_same(alone, together):
    for a, b in zip(alone, together):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_window_groups_cut_at_the_node_budget_and_split_rows_undoes_the_stacking():
    class W:
        def __init__(self, n):
            self.num_nodes = n

    sizes = [5, 5, 5, 20, 1]
    groups = window_groups([W(n) for n in sizes], 10)
    assert [[w.num_nodes for w in g] for g in groups] == [[5, 5], [5], [20], [1]]
    assert [len(g) for g in window_groups([W(n) for n in sizes], 1)] == [1] * 5
    parts = split_rows(np.arange(12), [3, 0, 9])
    assert [p.tolist() for p in parts] == [[0, 1, 2], [], list(range(3, 12))]


def test_gcn_hmm_scores_batched_as_per_window(enterprise_events):
    from siem_gad.detectors.gcn_hmm import GcnHmmDetector
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder

    windows = windows_of(BipartiteGraphBuilder(), enterprise_events)
    model = GcnHmmDetector(epochs=5, hidden=8, embedding=4, seed=0).fit(windows[:12])
    alone, together = per_window_and_batched(model, windows)
    assert_same(alone, together)
    assert np.isfinite(np.concatenate(together)).sum() >= 10


def test_graph_ae_scores_nodes_and_edges_batched_as_per_window(enterprise_events):
    from siem_gad.detectors.graph_ae import GraphAeDetector
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder

    windows = windows_of(BipartiteGraphBuilder(), enterprise_events)
    # dense_limit below the window size: the sampled structure error must repeat exactly too
    model = GraphAeDetector(epochs=3, hidden=8, layers=2, dense_limit=10, seed=0).fit(windows[:12])
    assert_same(*per_window_and_batched(model, windows))
    assert_same(*per_window_and_batched(model, windows, "score_edges"))


def test_hetero_gnn_scores_batched_as_per_window(enterprise_events):
    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
    from siem_gad.graphs.host_flow import HostFlowGraphBuilder

    windows = windows_of(HostFlowGraphBuilder(label_field=LABEL_FIELD, flows_per_graph=200), enterprise_events)
    model = HeteroGnnDetector(epochs=3, hidden=8, min_class_rows=1, seed=0).fit(windows)
    alone, together = per_window_and_batched(model, windows)
    assert_same(alone, together)
    assert_same(*per_window_and_batched(model, windows, "target_scores"))


def test_cat_gnn_scores_batched_as_per_window(enterprise_events):
    from siem_gad.detectors.cat_gnn import CatGnnDetector
    from siem_gad.graphs.temporal import TemporalGraphBuilder

    windows = windows_of(TemporalGraphBuilder(label_field=LABEL_FIELD), enterprise_events)
    model = CatGnnDetector(epochs=3, hidden=8, heads=2, min_class_rows=1, seed=0).fit(windows)
    assert_same(*per_window_and_batched(model, windows))
