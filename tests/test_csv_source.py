"""The CSV source on malformed and growing files: counts, quarantine with file and line, no crash."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from siem_gad.sources.csv_source import CsvSource
from siem_gad.state import StateStore
from siem_gad.sources.timestamps import parse_timestamps

from conftest import make_config, read_alerts, siem_gad

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
HEADER = "time,src,dst,port,bytes,outcome\n"


def rows(hours: int, per_hour: int = 4) -> str:
    lines = []
    for h in range(hours):
        for i in range(per_hour):
            moment = T0 + timedelta(hours=h, minutes=10 * i)
            lines.append(f"{moment:%Y-%m-%dT%H:%M:%SZ},10.0.0.{i},10.0.1.{h % 3},443,{100 * i},success\n")
    return "".join(lines)


def source(path: Path, state: Path, **params) -> CsvSource:
    params = {"field_map": {"src": "source.ip", "dst": "destination.ip", "port": "destination.port", "bytes": "network.bytes",
                            "outcome": "event.outcome"}, "timestamp_field": "time", **params}
    return CsvSource(path=path, **params).bind("fw", StateStore(state))


def test_malformed_rows_are_counted_and_quarantined_with_line_numbers(tmp_path: Path):
    path = tmp_path / "fw.csv"
    good = rows(2)
    path.write_bytes((HEADER + good).encode() + b"yesterday,10.0.0.9,10.0.1.1,22,1,success\n"
                     + b"2026-01-05T01:30:00Z,10.0.0.9\n" + b"\x00\x01\xff\xfebinary junk\n"
                     + b"2026-01-05T01:40:00Z,10.0.0.9,10.0.1.1,22,7,success\n" + b"x" * 5000 + b"\n")
    src = source(path, tmp_path / "state", max_line_bytes=1000)
    result = src.read(T0, T0 + timedelta(hours=2), None)
    assert len(result.events) == 9 and result.stats["quarantined"] == 4
    assert result.events["destination.port"].dtype.kind in "if"
    quarantine = list(csv.DictReader((tmp_path / "state" / "quarantine" / "fw.csv").open()))
    reasons = {int(r["line"]): r["reason"] for r in quarantine}
    assert reasons == {
        10: "bad timestamp 'yesterday' in column 'time'",
        11: "expected 6 fields, got 2",
        12: "undecodable bytes (invalid start byte)",
        14: "line longer than 1000 bytes",
    }
    assert all(r["file"] == str(path) for r in quarantine)
    # Reading the same range again (a repeated pass) quarantines nothing twice.
    src.read(T0, T0 + timedelta(hours=2), None)
    assert len(list(csv.DictReader((tmp_path / "state" / "quarantine" / "fw.csv").open()))) == 8 - 4


def test_empty_and_header_only_files_have_no_data(tmp_path: Path):
    for name, text in {"empty.csv": "", "header.csv": HEADER}.items():
        path = tmp_path / name
        path.write_text(text)
        src = source(path, tmp_path / "state")
        assert src.bounds(None) == (None, None)
        assert len(src.read(T0, T0 + timedelta(hours=1), None).events) == 0


def test_growing_file_is_read_incrementally_from_the_cursor(tmp_path: Path):
    path = tmp_path / "fw.csv"
    path.write_text(HEADER + rows(3))
    src = source(path, tmp_path / "state", follow=True)
    first = src.read(T0, T0 + timedelta(hours=2), None)
    assert len(first.events) == 8
    with path.open("a") as handle:  # more rows arrive, and a half-written line
        handle.write(rows(5)[len(rows(3)):] + "2026-01-05T05:00:00Z,10.0.0.1")
    second = src.read(T0 + timedelta(hours=2), T0 + timedelta(hours=6), first.cursor)
    assert len(second.events) == 12 and second.stats["skipped"] == 0
    assert set(first.events["event.id"]).isdisjoint(second.events["event.id"])
    earliest, horizon = src.bounds(second.cursor)
    assert earliest is None or earliest >= T0 + timedelta(hours=5)


def test_replaced_file_is_read_from_the_start(tmp_path: Path):
    path = tmp_path / "fw.csv"
    path.write_text(HEADER + rows(2))
    src = source(path, tmp_path / "state")
    cursor = src.read(T0, T0 + timedelta(hours=2), None).cursor
    path.unlink()
    path.write_text(HEADER + rows(1))
    assert len(src.read(T0, T0 + timedelta(hours=2), cursor).events) == 4


@pytest.mark.parametrize("values, fmt, tz, expected", [
    (["1767571200", "1767571260"], "auto", "UTC", ["2026-01-05T00:00:00", "2026-01-05T00:01:00"]),
    (["1767571200000"], "epoch_ms", "UTC", ["2026-01-05T00:00:00"]),
    (["1767571200000000"], "auto", "UTC", ["2026-01-05T00:00:00"]),
    (["05/01/2026 01:00:00"], "%d/%m/%Y %H:%M:%S", "Europe/Berlin", ["2026-01-05T00:00:00"]),
    (["2026-01-05T01:00:00", "2026-01-05T03:00:00+02:00"], "iso", "Europe/Berlin", ["2026-01-05T00:00:00", "2026-01-05T01:00:00"]),
    (["not a time"], "iso", "UTC", [None]),
])
def test_timestamp_formats(values, fmt, tz, expected):
    parsed = parse_timestamps(pd.Series(values, dtype=object), fmt, tz)
    got = [None if pd.isna(v) else v.strftime("%Y-%m-%dT%H:%M:%S") for v in parsed]
    assert got == expected
    assert str(parsed.dt.tz) == "UTC"


def test_malformed_csv_through_the_whole_job(tmp_path: Path):
    """A job over a CSV with bad rows runs, counts them in its status and writes alerts."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    data = deploy / "events.csv"
    siem_gad("simulate", "--out", str(data), "--hours", "30", "--hosts", "12")
    with data.open("ab") as handle:
        handle.write(b"garbage\n\x00\xff\n2026-01-06T05:00:00Z,only,three\nnot-a-time" + b",x" * 12 + b"\n")
    config = make_config(
        deploy, sources={"file": {"type": "csv", "path": "events.csv"}},
        jobs={"network": {"source": "file", "graph": {"type": "bipartite"},
                          "detectors": {"iforest": {"type": "iforest", "training": {"windows": 24}}}}},
        rules={"outlier": {"name": "Outlier", "job": "network", "detector": "iforest", "condition": {"top_k": 1}}})
    siem_gad("run", "-c", str(config), "--once")
    assert read_alerts(deploy / "state" / "alerts.jsonl")
    status = siem_gad("status", "-c", str(config)).stdout
    assert "source: quarantined=4" in status
    assert len(list(csv.DictReader((deploy / "state" / "quarantine" / "file.csv").open()))) == 4


def test_train_after_the_file_was_consumed(tmp_path: Path):
    """Retraining a CSV job whose checkpoint reached the end of the file still finds its history."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    siem_gad("simulate", "--out", str(deploy / "events.csv"), "--hours", "30", "--hosts", "12")
    config = make_config(
        deploy, sources={"file": {"type": "csv", "path": "events.csv"}}, rules={},
        jobs={"network": {"source": "file", "graph": {"type": "bipartite"},
                          "detectors": {"iforest": {"type": "iforest", "training": {"windows": 24}}}}})
    siem_gad("run", "-c", str(config), "--once")
    out = siem_gad("train", "-c", str(config)).stdout
    assert "network/iforest: model v2 trained on 2026-01-05T06:00:00Z .. 2026-01-06T06:00:00Z" in out
