"""The flattened isolation forest scores as scikit-learn does, and loads without refitting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import IsolationForest

from siem_gad.detectors.flat_forest import FlatForest
from siem_gad.detectors.iforest import IsolationForestDetector


def sklearn_isolation(sample: np.ndarray, rows: np.ndarray, **params) -> np.ndarray:
    forest = IsolationForest(n_estimators=params["n_estimators"], max_samples=min(params["max_samples"], len(sample)),
                             random_state=params["seed"]).fit(sample)
    return -forest.score_samples(rows)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 400), columns=st.integers(1, 6), seed=st.integers(0, 2**16), trees=st.integers(1, 30),
       ties=st.booleans(), missing=st.booleans())
def test_flat_forest_scores_equal_scikit_learns_to_the_last_bit(rows, columns, seed, trees, ties, missing):
    rng = np.random.default_rng(seed)
    sample = rng.normal(size=(rows, columns)).astype(np.float32)
    if ties:  # repeated values and a constant column: splits on ties, leaves holding many rows
        sample = np.round(sample)
        sample[:, 0] = 1.0
    scored = np.concatenate([sample[: 50], rng.normal(0, 3, size=(50, columns)).astype(np.float32)])
    if missing:
        scored[rng.random(scored.shape) < 0.1] = np.nan
    params = {"n_estimators": trees, "max_samples": 64, "seed": seed}
    flat = FlatForest.fit(sample, **params).isolation(scored)
    assert np.array_equal(flat, sklearn_isolation(sample, scored, **params))


def test_a_loaded_forest_scores_alike_without_refitting_or_scikit_learn(tmp_path: Path):
    rng = np.random.default_rng(3)
    history = rng.normal(size=(2000, 5)).astype(np.float32)
    detector = IsolationForestDetector(seed=4, n_estimators=40).fit_matrix(history)
    probe = rng.normal(0, 2, size=(300, 5)).astype(np.float32)
    np.save(tmp_path / "probe.npy", probe)
    detector.save(tmp_path / "model.pt")
    script = f"""
import json, sys, numpy as np
from siem_gad.detectors.iforest import IsolationForestDetector
model = IsolationForestDetector.load({str(tmp_path / 'model.pt')!r})
scores = model.score_matrix(np.load({str(tmp_path / 'probe.npy')!r}))
print(json.dumps({{"sklearn": "sklearn" in sys.modules, "scores": scores.tolist()}}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                    cwd=tmp_path).stdout)
    assert not out["sklearn"]
    assert np.array_equal(np.array(out["scores"]), detector.score_matrix(probe))


def test_model_files_that_hold_the_training_sample_still_load_to_the_same_forest():
    rng = np.random.default_rng(5)
    sample = rng.normal(size=(500, 4)).astype(np.float32)
    rows = rng.normal(0, 2, size=(200, 4)).astype(np.float32)
    params = {"n_estimators": 30, "max_samples": 128, "seed": 9}
    fitted = FlatForest.fit(sample, **params)
    legacy = FlatForest.from_state({"sample": torch.from_numpy(sample)}, **params)
    assert np.array_equal(legacy.isolation(rows), fitted.isolation(rows))
    again = FlatForest.from_state(fitted.get_state(), **params)
    assert np.array_equal(again.isolation(rows), fitted.isolation(rows))


@pytest.mark.parametrize("rows", [1, 2])
def test_a_forest_of_one_or_two_training_rows_scores_like_scikit_learn(rows):
    sample = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    probe = np.array([[0, 1, 2], [9, 9, 9]], dtype=np.float32)
    params = {"n_estimators": 5, "max_samples": 256, "seed": 1}
    assert np.array_equal(FlatForest.fit(sample, **params).isolation(probe), sklearn_isolation(sample, probe, **params))


def test_iforest_scores_a_known_entity_against_its_own_median_and_a_new_one_against_all():
    from datetime import timedelta

    from siem_gad.graphs import WindowGrid
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder
    from siem_gad.simulator import Enterprise

    enterprise = Enterprise(seed=3, hosts=20, hours=30)
    windows = BipartiteGraphBuilder().build(enterprise.events(enterprise.start, enterprise.end),
                                            WindowGrid(enterprise.start, timedelta(hours=1), 30))
    detector = IsolationForestDetector(seed=1, n_estimators=30).fit(windows[:24])
    window = windows[26]
    raw = detector.forest_.isolation(window.x)
    keys = detector._keys(window)
    expected = [r - detector.entity_median_.get(k, detector.global_median_) for r, k in zip(raw, keys)]
    assert np.array_equal(detector.score([window])[0], np.array(expected))
    known = [k in detector.entity_median_ for k in keys]
    assert any(known) and not all(known)  # both kinds are in the window


def test_extrapolation_keeps_raising_the_score_where_a_plain_forest_stops_at_its_training_range():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(2000, 4)).astype(np.float32)
    forest = FlatForest.fit(sample, n_estimators=100, max_samples=256, seed=1, ranges=True)
    probe = np.zeros((4, 4), np.float32)
    probe[:, 0] = [8, 100, 1e4, -1e4]  # all beyond every training value of feature 0
    plain, extrapolated = forest.isolation(probe), forest.isolation(probe, extrapolate=True)
    assert plain[0] == plain[1] == plain[2]  # the plain forest cannot tell 8 from 10,000
    assert extrapolated[0] < extrapolated[1] < extrapolated[2] and extrapolated[3] > extrapolated[0]
    assert (extrapolated > plain).all()


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 300), columns=st.integers(1, 5), seed=st.integers(0, 2**16), trees=st.integers(1, 20),
       ties=st.booleans(), missing=st.booleans())
def test_extrapolation_changes_nothing_inside_the_ranges_and_only_raises_scores_outside(rows, columns, seed, trees,
                                                                                          ties, missing):
    rng = np.random.default_rng(seed)
    sample = rng.normal(size=(rows, columns)).astype(np.float32)
    if ties:
        sample = np.round(sample)
    # every tree sees the whole sample, so each sample row lies inside the range of every node on its path
    whole = FlatForest.fit(sample, n_estimators=trees, max_samples=rows, seed=seed, ranges=True)
    assert np.array_equal(whole.isolation(sample, extrapolate=True), whole.isolation(sample))
    scored = rng.normal(0, 4, size=(100, columns)).astype(np.float32)
    if missing:
        scored[rng.random(scored.shape) < 0.1] = np.nan
    forest = FlatForest.fit(sample, n_estimators=trees, max_samples=64, seed=seed, ranges=True)
    assert (forest.isolation(scored, extrapolate=True) >= forest.isolation(scored)).all()


def test_iforest_extrapolate_is_kept_in_the_model_file_and_old_forests_score_plainly(tmp_path: Path):
    rng = np.random.default_rng(2)
    history = rng.normal(size=(3000, 3)).astype(np.float32)
    probe = np.array([[50, 0, 0], [5, 0, 0], [0, 0, 0]], dtype=np.float32)
    detector = IsolationForestDetector(seed=1, n_estimators=50, extrapolate=True).fit_matrix(history)
    plain = IsolationForestDetector(seed=1, n_estimators=50).fit_matrix(history)
    assert detector.score_matrix(probe)[0] > detector.score_matrix(probe)[1] and \
        plain.score_matrix(probe)[0] == plain.score_matrix(probe)[1]
    detector.save(tmp_path / "model.pt")
    loaded = IsolationForestDetector.load(tmp_path / "model.pt")
    assert np.array_equal(loaded.score_matrix(probe), detector.score_matrix(probe))
    assert "low" not in plain.forest_.get_state()["nodes"]  # plain models keep their size
    without_ranges = FlatForest.from_state(plain.forest_.get_state(), n_estimators=50, max_samples=256, seed=1)
    assert np.array_equal(without_ranges.isolation(probe, extrapolate=True), plain.forest_.isolation(probe))
