"""Hostile and careless input to the file formats siem-gad writes and reads back (issue 17).

Each test reproduces a defect found by adversarial testing and fails without its fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siem_gad.sinks.jsonl import JsonlSink


def alert(number: int, pad: int = 0) -> dict:
    return {"siem_gad": {"alert_id": f"a-{number}"}, "message": "x" * pad}


def test_a_torn_last_line_longer_than_a_megabyte_costs_only_itself(tmp_path: Path):
    """Defect 17.2: a torn last line over 1 MB truncated the whole alert file (144 alerts -> 0)."""
    path = tmp_path / "alerts.jsonl"
    JsonlSink(path=path).write([alert(i) for i in range(144)])
    with path.open("ab") as handle:
        handle.write(json.dumps(alert(999, pad=3 << 20)).encode()[:-10])  # cut short by a crash
    sink = JsonlSink(path=path)
    assert sink.write([alert(i) for i in range(150)]) == 6  # the 144 are known, 6 are new
    lines = path.read_text().splitlines()
    assert [json.loads(line)["siem_gad"]["alert_id"] for line in lines] == [f"a-{i}" for i in range(150)]
    assert (tmp_path / "alerts.jsonl.torn").stat().st_size > 3 << 20  # set aside, not lost


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(0, 30), pads=st.lists(st.integers(0, 5000), min_size=1, max_size=30),
       torn=st.binary(max_size=3000).filter(lambda b: b"\n" not in b), block=st.integers(1, 4096))
def test_repair_never_loses_a_complete_line(tmp_path: Path, count, pads, torn, block):
    """Property: whatever torn tail a crash leaves, every complete line stays and the tail goes aside."""
    from siem_gad.sinks.jsonl import last_line_end

    path = tmp_path / f"fuzz-{count}-{len(torn)}-{block}.jsonl"
    path.unlink(missing_ok=True)
    Path(f"{path}.torn").unlink(missing_ok=True)
    complete = b"".join(json.dumps(alert(i, pads[i % len(pads)])).encode() + b"\n" for i in range(count))
    path.write_bytes(complete + torn)
    with path.open("rb") as handle:
        assert last_line_end(handle, len(complete + torn), block) == len(complete)
    JsonlSink(path=path).write([])  # opening the file for a write repairs it
    assert path.read_bytes() == complete
    JsonlSink(path=path).write([alert(10_000)])  # and later writes append after the complete lines
    assert path.read_bytes() == complete + json.dumps(alert(10_000), sort_keys=True).encode() + b"\n"
    if torn:
        assert Path(f"{path}.torn").read_bytes() == torn + b"\n"


def test_the_default_replay_checks_that_each_alert_is_stored(tmp_path: Path):
    """Sink.replay's default used to report success without checking."""

    class Forgetful(JsonlSink):
        def write(self, alerts):
            return len(alerts)  # says it stored them, stores nothing

    assert Forgetful(path=tmp_path / "a.jsonl").replay([alert(1)]) == {"a-1": "not found in the sink after the write"}
    assert JsonlSink(path=tmp_path / "b.jsonl").replay([alert(2)]) == {}


VERSIONS = st.lists(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 99)), max_size=6), max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(VERSIONS)
def test_the_incident_file_holds_the_newest_version_of_each_incident_once(tmp_path: Path, batches):
    """Incidents are rewritten batch after batch (and a batch repeated after a crash): the file
    always holds exactly one line per id, the last version written, and nothing else."""
    from siem_gad.sinks.jsonl import rewrite_by_id

    path = tmp_path / "incidents.jsonl"
    path.unlink(missing_ok=True)
    newest: dict[str, int] = {}
    for batch in [*batches, *batches[-1:]]:  # the last batch again: a pass repeated after a crash
        rewrite_by_id(path, [{"event": {"id": ident}, "revision": rev} for ident, rev in batch])
        newest.update({ident: rev for ident, rev in batch})
    stored = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    assert {d["event"]["id"]: d["revision"] for d in stored} == newest
    assert len(stored) == len(newest)
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(VERSIONS)
def test_status_documents_are_appended_once_each(tmp_path: Path, batches):
    sink = JsonlSink(path=tmp_path / f"alerts-{len(list(tmp_path.iterdir()))}.jsonl")
    seen: list[str] = []
    for batch in [*batches, *batches]:
        sink.put("status", [{"event": {"id": ident}, "n": rev} for ident, rev in batch])
        seen += [ident for ident, _ in batch if ident not in seen]
    reread = JsonlSink(path=sink.path)  # a restart reads the ids back from the file
    reread.put("status", [{"event": {"id": ident}} for ident in "abcdef"])
    lines = [json.loads(line)["event"]["id"] for line in sink.beside("status").read_text().splitlines()] \
        if sink.beside("status").exists() else []
    assert lines == seen + [i for i in "abcdef" if i not in seen]


def test_events_from_any_source_read_a_number_outside_its_field_range_as_missing(caplog):
    """A source without lines to quarantine (Elasticsearch, a plugin) hands over `inf`, a negative
    byte count or a port of 70000: `finalize_events` reads them as missing, logs the field, and
    the graphs stay finite (they had become NaN, and every score with them)."""
    import logging
    from datetime import datetime, timedelta, timezone

    import numpy as np
    import pandas as pd

    from siem_gad.events import finalize_events
    from siem_gad.graphs import WindowGrid
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder

    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    frame = pd.DataFrame({"@timestamp": [start + timedelta(minutes=i) for i in range(4)],
                          "source.ip": "10.0.0.1", "destination.ip": ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"],
                          "network.bytes": [100.0, float("inf"), -5.0, 7.0], "destination.port": [443, 70000, 22, 80]})
    with caplog.at_level(logging.WARNING, logger="siem_gad.events"):
        events = finalize_events(frame, "es")
    assert events["network.bytes"].isna().tolist() == [False, True, True, False]
    assert events["destination.port"].isna().tolist() == [False, True, False, False]
    assert "2 values of network.bytes outside 0..9,007,199,254,740,992 read as missing (first: inf)" in caplog.text
    window = BipartiteGraphBuilder().checked_build(events, WindowGrid(start, timedelta(hours=1), 1))[0]
    assert np.isfinite(window.x).all() and window.num_nodes == 5
