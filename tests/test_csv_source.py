"""The CSV source on malformed and growing files: counts, quarantine with file and line, no crash."""

from __future__ import annotations

import csv
import json
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
        14: "line longer than 1000 bytes (first 1000 bytes kept)",
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


def test_rows_with_empty_cells_and_no_id_column_get_stable_distinct_ids(tmp_path: Path):
    """Without `id_field`, an event's id is a hash of its values. Under pandas 3 a missing value
    stayed missing through astype(str) and the hash raised, so one empty cell failed every read
    of the file. An empty cell is a missing value, and its row is read like any other."""
    path = tmp_path / "flows.csv"
    path.write_text(HEADER + "2026-01-05T00:00:00Z,10.0.0.1,10.0.1.1,443,100,success\n"
                    "2026-01-05T00:10:00Z,10.0.0.1,10.0.1.1,443,,success\n"
                    "2026-01-05T00:20:00Z,10.0.0.1,,,,\n")
    first = source(path, tmp_path / "state").read(T0, T0 + timedelta(hours=1), None).events
    again = source(path, tmp_path / "state2").read(T0, T0 + timedelta(hours=1), None).events
    assert len(first) == 3 and first["event.id"].is_unique
    assert first["event.id"].tolist() == again["event.id"].tolist()
    assert first["network.bytes"].isna().tolist() == [False, True, True]
    assert first["destination.ip"].isna().tolist() == [False, False, True]


def test_a_bad_number_quarantines_its_row_naming_column_and_range(tmp_path: Path):
    """A negative count, a port past 65535, text or `inf` where a number belongs: the row is
    quarantined whole with the reason; `-` and an empty cell are missing values, not errors."""
    path = tmp_path / "flows.csv"
    lines = ["443,100", "-,", "70000,5", "443,-5", "443,inf", "80,12kB", "22,7"]
    path.write_text(HEADER + "".join(f"2026-01-05T00:{i:02d}:00Z,10.0.0.1,10.0.1.1,{line},success\n"
                                     for i, line in enumerate(lines)))
    src = source(path, tmp_path / "state")
    result = src.read(T0, T0 + timedelta(hours=1), None)
    assert result.stats["quarantined"] == 4
    assert result.events["network.bytes"].tolist()[::2] == [100.0, 7.0] and result.events["network.bytes"].isna()[1]
    with (tmp_path / "state" / "quarantine" / "fw.csv").open() as handle:
        reasons = {int(r["line"]): r["reason"] for r in csv.DictReader(handle)}
    assert reasons == {4: "bad number '70000' in column 'port' (destination.port takes 0..65,535)",
                       5: "bad number '-5' in column 'bytes' (network.bytes takes 0..9,007,199,254,740,992)",
                       6: "bad number 'inf' in column 'bytes' (network.bytes takes 0..9,007,199,254,740,992)",
                       7: "bad number '12kB' in column 'bytes' (network.bytes takes 0..9,007,199,254,740,992)"}


def test_a_header_that_names_a_field_twice_is_refused_naming_the_columns(tmp_path: Path):
    """Two columns that become one field (the same name twice, or a column `field_map` maps onto
    another's name) had failed every read with a pandas AttributeError."""
    path = tmp_path / "flows.csv"
    path.write_text("time,src,dst,port,bytes,network.bytes\n2026-01-05T00:00:00Z,10.0.0.1,10.0.1.1,443,5,6\n")
    with pytest.raises(ValueError, match=r"flows.csv:1: the header names a field more than once \(after field_map\): "
                                         r"'network.bytes' from columns 'bytes', 'network.bytes'"):
        source(path, tmp_path / "state").read(T0, T0 + timedelta(hours=1), None)


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
    siem_gad("simulate", "--out", str(data), "--hours", "36", "--hosts", "12")  # 24 to train on, 12 to alert on
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


def _quarantine_rows(state: Path) -> list[dict]:
    csv.field_size_limit(1 << 24)
    return list(csv.DictReader((state / "quarantine" / "fw.csv").open(newline="")))


def _all_lines(src: CsvSource) -> tuple[pd.DataFrame, dict]:
    """Read the whole file the way a job does, one chunk after another."""
    first, horizon = src.bounds(None)
    result = src.read(first, horizon, None)
    return result.events, result.stats


def test_a_stray_quote_costs_only_its_own_line(tmp_path: Path):
    """Defect 17.1: 1,000 rows with an unbalanced quote at line 502 lost 500 rows and reported line 1002."""
    lines = rows(250).splitlines(keepends=True)  # 1,000 rows: lines 2..1001
    lines[500] = lines[500].replace(",443,", ',"443,', 1)  # file line 502
    path = tmp_path / "fw.csv"
    path.write_text(HEADER + "".join(lines))
    events, stats = _all_lines(source(path, tmp_path / "state"))
    assert len(events) == 999 and stats["quarantined"] == 1
    [bad] = _quarantine_rows(tmp_path / "state")
    assert bad["line"] == "502" and bad["raw"] == lines[500].rstrip("\n") and "unbalanced quote" in bad["reason"]


def test_many_stray_quotes_and_a_long_quoted_field_lose_nothing_else(tmp_path: Path):
    """Defect 17.1: the csv module's field-size limit swallowed 1,022 good rows of a corpus."""
    lines = rows(100).splitlines(keepends=True)  # 400 rows
    for index in (10, 11, 200, 399):
        lines[index] = lines[index].replace("success", 'succ"ess"', 1).replace(",10.0.1", ',"10.0.1', 1)
    # a legitimate quoted field spanning lines, and one larger than the csv module's default limit
    lines[50] = lines[50].replace("success", '"multi\nline ""quoted"" outcome"')
    lines[60] = lines[60].replace("success", '"' + "x" * 200_000 + '"')
    path = tmp_path / "fw.csv"
    path.write_text(HEADER + "".join(lines))
    events, stats = _all_lines(source(path, tmp_path / "state"))
    assert len(events) == 396 and stats["quarantined"] == 4
    assert 'multi\nline "quoted" outcome' in set(events["event.outcome"])
    numbers = [int(r["line"]) for r in _quarantine_rows(tmp_path / "state")]
    assert numbers == [12, 13, 203, 402]  # header is line 1; the quoted record at index 50 spans two lines


def test_every_quarantined_row_keeps_its_raw_text_and_right_line(tmp_path: Path):
    """Defect 17.1: wrong line numbers, empty raw text for bad timestamps and over-long rows,
    a year-9999 timestamp dropped uncounted."""
    good = rows(2).splitlines(keepends=True)
    bad_time = "yesterday,10.0.0.9,10.0.1.1,22,1,success\n"
    far_future = "9999-01-01T00:00:00Z,10.0.0.9,10.0.1.1,22,1,success\n"
    long_row = "2026-01-05T00:30:00Z," + "y" * 3000 + ",10.0.1.1,22,1,success\n"
    quoted = '2026-01-05T00:20:00Z,10.0.0.1,"10.0.1.2\n10.0.1.3",443,1,success\n'  # lines 5-6
    text = HEADER + "".join(good[:3]) + quoted + bad_time + "".join(good[3:]) + far_future + long_row
    path = tmp_path / "fw.csv"
    path.write_text(text)
    events, stats = _all_lines(source(path, tmp_path / "state", max_line_bytes=1000))
    assert len(events) == 9 and stats["quarantined"] == 3
    got = {int(r["line"]): (r["reason"], r["raw"]) for r in _quarantine_rows(tmp_path / "state")}
    assert got[7] == ("bad timestamp 'yesterday' in column 'time'", bad_time.rstrip("\n"))
    assert got[13][0].startswith("timestamp '9999-01-01T00:00:00Z' in column 'time' is more than 1 day")
    assert got[13][1] == far_future.rstrip("\n")
    assert got[14][0].startswith("line longer than 1000 bytes") and got[14][1] == long_row[:1000]
    assert src_status(tmp_path, path) == 3


def src_status(tmp_path: Path, path: Path) -> int:
    return source(path, tmp_path / "state").counters()["quarantined"]


def test_a_binary_file_is_refused_with_a_short_error_naming_it(tmp_path: Path):
    """Defect 17.1: an all-binary file ended in a traceback dumping 2.5 KB of garbage header."""
    path = tmp_path / "fw.csv"
    path.write_bytes(bytes(range(256)) * 10 + b"\n" + bytes(range(256)) * 10)
    src = source(path, tmp_path / "state")
    with pytest.raises(ValueError) as caught:
        src.bounds(None)
    message = str(caught.value)
    assert message.startswith(f"{path}:1: header row") and len(message) < 300


def test_a_run_that_quarantined_rows_says_so(tmp_path: Path):
    """Defect 17.1: a run that quarantined records ended with status `ok` and said nothing."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    data = deploy / "events.csv"
    siem_gad("simulate", "--out", str(data), "--hours", "30", "--hosts", "12")
    lines = data.read_text().splitlines(keepends=True)
    lines[-5] = lines[-5].replace(",", ',"', 1)  # in the scored windows, after the training range
    data.write_text("".join(lines))
    config = make_config(
        deploy, sources={"file": {"type": "csv", "path": "events.csv"}}, rules={},
        jobs={"network": {"source": "file", "graph": {"type": "bipartite"},
                          "detectors": {"iforest": {"type": "iforest", "training": {"windows": 24}}}}})
    run = siem_gad("run", "-c", str(config), "--once")
    assert "1 malformed record(s) quarantined" in run.stderr
    job = json.loads(siem_gad("status", "-c", str(config), "--json").stdout)[0]
    assert job["source_counters"]["quarantined"] == 1


def test_a_pass_that_quarantined_rows_is_marked_in_its_status(tmp_path: Path):
    """The pass whose read set records aside is recorded as `quarantined`, not `ok`."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    data = deploy / "events.csv"
    siem_gad("simulate", "--out", str(data), "--hours", "30", "--hosts", "12")
    config = make_config(
        deploy, sources={"file": {"type": "csv", "path": "events.csv", "follow": True, "chunk_rows": 100}}, rules={},
        jobs={"network": {"source": "file", "graph": {"type": "bipartite"},
                          "detectors": {"iforest": {"type": "iforest", "training": {"windows": 24}}}}})
    siem_gad("run", "-c", str(config), "--once")
    with data.open("a") as handle:  # rows arrive after the first run, one of them broken
        handle.write('2026-01-06T07:10:00Z,x-1,connection,network,success,10.1.0.21,"10.0.0.30,443,tcp,1,,,benign\n')
        for minute in range(70):  # a stray quote in a growing file waits for up to max_record_lines lines
            handle.write(f"2026-01-06T07:{20 + minute // 2:02d}:00Z,x-{minute},connection,network,success,10.1.0.21,"
                         "10.0.0.30,443,tcp,1,,,benign\n")
        handle.write("2026-01-06T09:00:00Z,x-last,connection,network,success,10.1.0.21,10.0.0.30,443,tcp,1,,,benign\n")
    siem_gad("run", "-c", str(config), "--once")
    job = json.loads(siem_gad("status", "-c", str(config), "--json").stdout)[0]
    marked = [p for p in job["passes"] if p["status"] == "quarantined"]
    assert len(marked) == 1 and marked[0]["quarantined"] == 1
    assert "1 malformed record(s) quarantined" in marked[0]["message"]


def test_local_times_in_the_hour_clocks_go_back_or_skip_are_read_not_quarantined(tmp_path: Path):
    """Every autumn the hour 02:00-03:00 occurs twice in Berlin, and every spring it is skipped:
    pandas refused such naive times, so a CSV in local time lost that hour to the quarantine."""
    path = tmp_path / "local.csv"
    path.write_text("time,src\n2026-03-29 02:30:00,a\n2026-10-25 01:30:00,b\n2026-10-25 02:30:00,c\n"
                    "2026-10-25 03:30:00,d\n")
    src = CsvSource(path=path, timestamp_field="time", timezone="Europe/Berlin",
                    field_map={"src": "source.ip"}).bind("local", StateStore(tmp_path / "state"))
    first, horizon = src.bounds(None)
    result = src.read(first, horizon, None)
    assert result.stats["quarantined"] == 0
    assert [t.isoformat() for t in result.events["@timestamp"]] == [
        "2026-03-29T01:30:00+00:00",  # as if the clock had not jumped yet (+01:00)
        "2026-10-24T23:30:00+00:00", "2026-10-25T00:30:00+00:00",  # 02:30 read as its first occurrence (+02:00)
        "2026-10-25T02:30:00+00:00"]


def row(moment: datetime, src: str, port: int = 443) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ},{src},10.0.1.1,{port},100,success\n"


def test_a_followed_file_rotated_by_rename_loses_no_row_written_before_the_rotation(tmp_path: Path):
    """logrotate renames a growing log and starts a new one. The rows written to the old file
    after the last read used to be lost (the new file was read from its start); they are read
    from the renamed file, found by its inode, before the new file. A bad row at the same line
    of the new file as one quarantined from the old is quarantined too."""
    path = tmp_path / "fw.csv"
    path.write_text(HEADER + row(T0, "a") + "garbage line\n" + row(T0 + timedelta(minutes=30), "b"))
    src = source(path, tmp_path / "state", follow=True)
    hour = [T0 + timedelta(hours=h) for h in range(4)]
    first = src.read(hour[0], hour[1], None)
    with path.open("a") as handle:  # written after the read, then the file is rotated
        handle.write(row(hour[1] + timedelta(minutes=10), "c") + row(hour[2] + timedelta(minutes=5), "d"))
    path.rename(tmp_path / "fw.csv.1")
    path.write_text(HEADER + row(hour[2] + timedelta(minutes=20), "e") + "other garbage\n"
                    + row(hour[3] + timedelta(minutes=1), "f"))
    second = src.read(hour[1], hour[2], first.cursor)  # the rotated file still holds a row of a later window
    third = src.read(hour[2], hour[3], second.cursor)  # its last row, then the new file
    assert list(first.events["source.ip"]) == ["a", "b"]
    assert list(second.events["source.ip"]) == ["c"]
    assert list(third.events["source.ip"]) == ["d", "e"]
    assert first.stats["quarantined"] == 1 and third.stats["quarantined"] == 1
    quarantined = list(csv.DictReader((tmp_path / "state" / "quarantine" / "fw.csv").open()))
    assert [(r["line"], r["raw"]) for r in quarantined] == [("3", "garbage line"), ("3", "other garbage")]
    fourth = src.read(hour[3], hour[3] + timedelta(hours=1), third.cursor)
    assert list(fourth.events["source.ip"]) == ["f"] and fourth.stats["quarantined"] == 0


def test_a_replaced_file_whose_predecessor_is_gone_is_read_from_the_start_with_a_warning(tmp_path: Path, caplog):
    import logging

    path = tmp_path / "fw.csv"
    path.write_text(HEADER + row(T0, "a"))
    src = source(path, tmp_path / "state", follow=True)
    cursor = src.read(T0, T0 + timedelta(hours=1), None).cursor
    path.unlink()
    path.write_text(HEADER + row(T0 + timedelta(minutes=70), "b"))
    with caplog.at_level(logging.WARNING):
        again = src.read(T0 + timedelta(hours=1), T0 + timedelta(hours=2), cursor)
    assert list(again.events["source.ip"]) == ["b"]
    assert "the file the checkpoint was in is not beside it" in caplog.text
