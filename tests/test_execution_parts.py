"""The pieces the Ray engine is made of, without Ray: events through Arrow and back, runs of
events cut by window, the hash ring of the shard actors, a keyed baseline scored from its
shards, and cursors of split reads."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from conftest import require_module

pa = require_module("pyarrow", extra="ray")

from siem_gad.execution.arrow import runs_of_events, to_frame, to_table  # noqa: E402
from siem_gad.execution.shards import BaselineShard, BatchLookup, HashRing  # noqa: E402

BASE = pd.Timestamp("2026-01-05T00:00:00Z").value
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def event_frames(draw) -> pd.DataFrame:
    """Frames with the dtypes sources produce: UTC nanosecond times (sorted), `str` ids,
    categories, integers, floats with NaN, and object columns of strings and None."""
    n = draw(st.integers(0, 40))
    stamps = sorted(draw(st.lists(st.integers(0, 10 * 3600 * 10**9), min_size=n, max_size=n)))
    frame = pd.DataFrame({
        "@timestamp": pd.to_datetime(np.array(stamps, dtype=np.int64) + BASE, utc=True),
        "event.id": pd.array([draw(texts) for _ in range(n)], dtype="str"),
        "source.ip": pd.Categorical([draw(st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", "ü"])) for _ in range(n)]),
        "destination.port": np.array(draw(st.lists(st.integers(0, 65535), min_size=n, max_size=n)), dtype=np.int64),
        "network.bytes": np.array(draw(st.lists(st.floats(allow_infinity=False) | st.just(float("nan")),
                                                min_size=n, max_size=n)), dtype=np.float64),
        "labels.note": pd.Series([draw(st.none() | texts) for _ in range(n)], dtype=object),
    })
    frame["@timestamp"] = frame["@timestamp"].dt.as_unit("ns")
    return frame


@given(event_frames())
def test_events_go_through_arrow_and_come_back_alike(frame: pd.DataFrame):
    back = to_frame(to_table(frame), frame.dtypes)
    pd.testing.assert_frame_equal(back, frame)


@given(event_frames(), st.lists(st.integers(0, 10), min_size=1, max_size=6))
def test_runs_of_events_hold_every_event_once_in_order(frame: pd.DataFrame, hours: list[int]):
    edges = np.cumsum([0] + hours) * 3600 * 10**9 + BASE
    bounds = list(zip(edges[:-1].tolist(), edges[1:].tolist()))
    runs = runs_of_events(frame, bounds)
    assert len(runs) == len(bounds)
    for run, (start, end) in zip(runs, bounds):
        stamps = run["@timestamp"].array.asi8
        assert ((stamps >= start) & (stamps < end)).all()
    inside = frame[(frame["@timestamp"].array.asi8 >= edges[0]) & (frame["@timestamp"].array.asi8 < edges[-1])]
    pd.testing.assert_frame_equal(pd.concat(runs, ignore_index=True), inside.reset_index(drop=True))


def test_the_hash_ring_is_the_same_in_every_process_and_uses_every_shard():
    entities = [f"ip:10.0.{i // 250}.{i % 250}" for i in range(2000)]
    ring = HashRing(4)
    here = [ring.shard_of(e) for e in entities]
    code = ("import sys; from siem_gad.execution.shards import HashRing; r = HashRing(4); "
            "print(','.join(str(r.shard_of(l.strip())) for l in sys.stdin))")
    there = subprocess.run([sys.executable, "-c", code], input="\n".join(entities), capture_output=True, text=True,
                           check=True).stdout.strip().split(",")
    assert here == [int(s) for s in there]  # Python's own hash() is salted per process; this one is not
    counts = np.bincount(here, minlength=4)
    assert counts.min() > 2000 / 4 * 0.6  # no shard starved
    assert (ring.shards_of(np.array(entities)) == np.array(here)).all()


def test_growing_the_ring_moves_few_entities_where_modulo_moves_most():
    entities = [f"user:{i}" for i in range(4000)]
    before, after = HashRing(4), HashRing(5)
    moved = np.mean([before.shard_of(e) != after.shard_of(e) for e in entities])
    modulo = np.mean([hash_mod(e, 4) != hash_mod(e, 5) for e in entities])
    assert moved < 0.35 and modulo > 0.7  # ideal: 1/5 of the entities move to the new shard
    assert all(after.shard_of(e) in (before.shard_of(e), 4) for e in entities)  # moves go to the new shard only


def hash_mod(entity: str, shards: int) -> int:
    from siem_gad.execution.shards import stable_hash

    return stable_hash(entity) % shards


@pytest.mark.parametrize("shards, entity_score", [(1, "traffic"), (2, "traffic"), (5, "traffic"), (2, "links")])
def test_rare_links_scored_from_its_shards_equals_its_own_scores(shards: int, entity_score: str):
    from test_execution import fitted_rare_links

    detector, windows = fitted_rare_links(with_windows=True, entity_score=entity_score)
    ring = HashRing(shards)
    holders = [BaselineShard(detector, s, shards) for s in range(shards)]
    assert sum(h.size() for h in holders) == len(detector.baseline_table()[0])  # every link in one shard
    lookup, keys = BatchLookup.plan(detector, windows, ring)
    got = lookup.scores(detector, windows, [holder.lookup(part) for holder, part in zip(holders, keys)])
    for mine, theirs in zip(got, detector.score(windows)):
        np.testing.assert_array_equal(mine, theirs)
    # a source's links all live on one shard
    entity = detector.baseline_entity(detector.baseline_table()[0])
    owners = ring.shards_of(entity)
    for source in np.unique(entity)[:20]:
        assert len(set(owners[entity == source])) == 1


def test_the_cursor_of_a_split_elasticsearch_read_is_that_of_one_read():
    from siem_gad.sources.elasticsearch import ElasticsearchSource

    source = ElasticsearchSource(hosts=["http://127.0.0.1:9"], index="logs-*")
    runs = [{"sort": [1, 5], "until": "a"}, {"sort": None, "until": "b"}, {"sort": None, "until": "c"}]
    assert source.join_cursors(runs) == {"sort": [1, 5], "until": "c"}
    assert source.join_cursors([{"sort": [1], "until": "a"}, {"sort": [9], "until": "b"}]) == {"sort": [9], "until": "b"}
    # the late-event check goes on from the earliest run's start, and knows what each run saw
    runs = [{"sort": [1], "until": "a", "read_at": "2026-01-01T00:00:02Z", "seen": ["x"]},
            {"sort": [9], "until": "b", "read_at": "2026-01-01T00:00:01Z", "seen": ["y", "z"]}]
    assert source.join_cursors(runs) == {"sort": [9], "until": "b", "read_at": "2026-01-01T00:00:01Z",
                                         "seen": ["x", "y", "z"]}


def test_a_detached_component_keeps_its_parameters_and_name_but_not_its_state(tmp_path):
    from siem_gad.sources.simulate import SimulateSource
    from siem_gad.state import StateStore

    source = SimulateSource(seed=3, hosts=12, hours=4).bind("sim", StateStore(tmp_path))
    copy = source.detached()
    assert copy.params == source.params and copy.name == "sim" and copy.state is None
    start = source.enterprise.start
    pd.testing.assert_frame_equal(copy.read(start, start + timedelta(hours=2), None).events,
                                  source.read(start, start + timedelta(hours=2), None).events)
