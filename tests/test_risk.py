"""One 0-100 score scale for every detector (risk.py), severity bands and confidence."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from siem_gad.graphs import WindowGrid
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.risk import RiskScale, confidence, reference_quantiles, severity_of
from siem_gad.simulator import Enterprise

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=0, max_size=60), finite, st.lists(finite, min_size=2, max_size=40))
def test_the_scale_is_monotone_bounded_and_50_at_the_threshold(reference, threshold, raws):
    scale = RiskScale(threshold, tuple(reference_quantiles(reference)))
    raws = sorted(raws)
    risks = [scale.score(r) for r in raws]
    assert all(0.0 <= r <= 100.0 for r in risks)
    assert all(a <= b + 1e-9 for a, b in zip(risks, risks[1:]))  # never lower for a higher raw score
    assert scale.score(threshold) == 50.0
    assert all((r >= 50.0) == (raw >= threshold) or r == 50.0 for raw, r in zip(raws, risks))


def test_typical_scores_sit_low_and_alerts_spread_above_50():
    reference = reference_quantiles(np.random.default_rng(0).normal(10, 1, 5000))
    threshold = float(np.quantile(reference, 0.99))
    scale = RiskScale(threshold, tuple(reference))
    assert 20 < scale.score(10.0) < 30  # the median: half of 50 / F(threshold)
    spread = threshold - 10.0
    assert scale.score(threshold + spread) == pytest.approx(50 + 50 * (1 - np.exp(-1)), abs=0.5)
    assert scale.score(threshold + 10 * spread) < 100 and scale.score(threshold + 1e9) <= 100
    assert [severity_of(r) for r in (10, 50, 80, 95)] == ["low", "medium", "high", "critical"]


def test_confidence_is_low_while_the_model_warms_up_or_the_window_is_thin():
    assert confidence(2, 1000)["level"] == "low"
    assert confidence(48, 5)["level"] == "low"
    assert confidence(24, 50) == {"level": "high", "value": 1.0, "training_windows": 24, "window_events": 50}


@pytest.mark.parametrize("name", ["iforest", "rare_links", "graph_ae", "gcn_hmm"])
def test_every_fitted_detector_keeps_its_reference_and_reloads_the_same_scale(name, tmp_path):
    from siem_gad.plugins import load_host

    enterprise = Enterprise(seed=3, hosts=15, hours=30)
    events = enterprise.events(enterprise.start, enterprise.end)
    windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), 30))
    cls = load_host().component("detectors", name)
    fast = {"graph_ae": {"epochs": 2, "hidden": 8}, "gcn_hmm": {"epochs": 2, "hidden": 8, "embedding": 4}}
    model = cls(**fast.get(name, {})).fit(windows[:24])
    assert len(model.score_reference_) == 101
    raw = np.concatenate([np.asarray(s, dtype=float) for s in model.score(windows[24:])])
    raw = np.sort(raw[np.isfinite(raw)])
    risks = [model.risk_scale().score(r) for r in raw]
    assert all(a <= b for a, b in zip(risks, risks[1:])) and 0 <= risks[0] and risks[-1] <= 100
    model.save(tmp_path / "m.pt")
    assert cls.load(tmp_path / "m.pt").risk_scale() == model.risk_scale()
