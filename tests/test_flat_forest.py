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
from siem_gad.detectors.supervised import NoveltyHalf


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
    half = NoveltyHalf.from_state({"sample": torch.from_numpy(sample), "threshold": 0.5}, seed=9)
    assert np.array_equal(half.novelty(rows), FlatForest.fit(sample, **NoveltyHalf.FOREST, seed=9).isolation(rows))
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
