"""The simulated enterprise is a replayable log store: any range reads the same events again."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from siem_gad.events import CATEGORICAL_FIELDS, finalize_events
from siem_gad.simulator import LABEL_FIELD, Enterprise

ENTERPRISE = Enterprise(seed=5, hosts=25, hours=30)
WHOLE = ENTERPRISE.events(ENTERPRISE.start, ENTERPRISE.end)


@settings(max_examples=30, deadline=None)
@given(first=st.integers(-90, 30 * 60 + 30), length=st.integers(0, 12 * 60))
def test_any_range_reads_the_rows_of_the_whole_run_that_fall_in_it(first, length):
    start = ENTERPRISE.start + timedelta(minutes=first)
    end = start + timedelta(minutes=length)
    part = ENTERPRISE.events(start, end)
    stamps = WHOLE["@timestamp"]
    expected = WHOLE[(stamps >= start) & (stamps < end)].reset_index(drop=True)
    assert len(part) == len(expected)
    for name in part.columns:  # the same values, and the same ids: alerts point at the same evidence
        assert part[name].astype(object).tolist() == expected[name].astype(object).tolist(), name
    assert part["@timestamp"].is_monotonic_increasing


def test_the_events_come_as_a_source_delivers_them():
    """Entity and label columns as Categoricals holding exactly the values present, sorted (what
    `finalize_events` would make of the strings), and ids unique."""
    start = ENTERPRISE.start
    events = ENTERPRISE.events(start + timedelta(hours=20), start + timedelta(hours=22, minutes=7))
    for name in (*CATEGORICAL_FIELDS, LABEL_FIELD):
        column = events[name]
        assert isinstance(column.dtype, pd.CategoricalDtype), name
        present = sorted(set(column.dropna().astype(str)))
        assert list(column.cat.categories) == present, name
    assert events["event.id"].is_unique
    assert events["user.name"].isna().any() and events["user.name"].notna().any()  # network events have no user
    assert set(events[LABEL_FIELD]) >= {"benign"}
    again = finalize_events(events.copy(), "sim")
    pd.testing.assert_frame_equal(again, events)  # nothing left for the source to encode


def test_an_hour_is_the_same_whichever_hours_are_generated_with_it():
    h = 21  # an attack hour (lateral movement at 0.8 of 30 h = hour 24; the beacon runs 21..29)
    alone = ENTERPRISE.hour(h)
    assert (alone[LABEL_FIELD] != "benign").any()
    within = ENTERPRISE.hours_frame(range(15, 27))
    rows = within[within["event.id"].str.startswith(f"sim5-{h:06d}-")].reset_index(drop=True)
    for name in alone.columns:
        assert alone[name].astype(object).tolist() == rows[name].astype(object).tolist(), name
    assert np.array_equal(alone["network.bytes"].to_numpy(), rows["network.bytes"].to_numpy())
