"""Property-based tests (Hypothesis) of every parser and file format that takes outside input.

The properties are the guarantees the docs state: a malformed record costs only itself, a valid
line after any garbage is still received, every byte is accounted for, and no input makes a
parser fail in any way but its own documented error. The `ci` profile keeps the whole file
under a minute; `HYPOTHESIS_PROFILE=bench` runs 20 times as many examples (see
docs/benchmarks.md).
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from siem_gad.sources.csv_records import RecordScanner, ends_in_open_quote
from siem_gad.syslog.framing import Framer
from siem_gad.syslog.intake import Oversize
from siem_gad.syslog.headers import HeaderError, event_time, parse_line
from siem_gad.syslog.parsers import BUILTIN_PARSERS, ParserSet
from siem_gad.syslog.relp import RelpError, RelpParser
from siem_gad.yamlfile import ConfigError

UTC = timezone.utc
REFERENCE = datetime(2026, 6, 1, tzinfo=UTC)
FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)

# ---------------------------------------------------------------------------- CSV
WIDTH = 4
garbage_line = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=60),
    st.lists(st.sampled_from(['"', ",", "a", '""', " ", "\t", "\\"]), max_size=12).map("".join),
)
garbage_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" "))


def valid_row(n: int) -> str:
    return f"2026-01-05T00:{n % 60:02d}:00Z,10.0.0.{n % 250},id-{n},{n}\n"


@FIXTURE
@given(pieces=st.lists(st.one_of(garbage_line.map(lambda t: ("g", t.encode())), garbage_bytes.map(lambda b: ("g", b)),
                                 st.just(("v", b""))), max_size=40),
       chunk=st.integers(1, 50))
def test_csv_every_valid_row_survives_any_garbage_and_every_line_is_accounted_for(pieces, chunk):
    lines, valid_ids = [], []
    for kind, raw in pieces:
        if kind == "v":
            valid_ids.append(f"id-{len(lines)}")
            lines.append(valid_row(len(lines)).encode())
        else:
            lines.append(raw + b"\n")
    data = b"".join(lines)
    scanner = RecordScanner(io.BytesIO(data), max_record_bytes=4096, max_record_lines=8)
    offset, line, records, bad = 0, 0, [], []
    while True:  # read in small chunks, as a job does, resuming from where each scan ended
        scan = scanner.scan(offset, line, WIDTH, chunk)
        records += scan.records
        bad += scan.bad
        if scan.end_offset == offset:
            break
        offset, line = scan.end_offset, scan.end_line
    assert offset == len(data)
    received = {r.fields[2] for r in records}
    # A valid row is received as itself, or sits inside a quoted field that garbage opened and
    # later garbage closed (what CSV means by a quote): it never simply vanishes.
    enclosed = "".join(r.text for r in records if "\n" in r.text)
    assert all(i in received or f",{i}," in enclosed for i in valid_ids), "a valid row was lost to garbage"
    covered = {n for r in records for n in range(r.line, r.line + r.text.count("\n") + 1)}
    covered |= {b.line for b in bad}
    assert len(covered) == len(covered & set(range(1, len(lines) + 1)))
    rest = [lines[n - 1] for n in range(1, len(lines) + 1) if n not in covered]
    assert all(not raw.decode("utf-8", "replace").strip() for raw in rest), "a line is neither received, quarantined nor blank"


cell = st.one_of(st.sampled_from(["", "-", "nan", "NaN", "inf", "-inf", "Infinity", "1e999", "0", "-5", "65536",
                                  "(empty)", " "]),
                 st.integers(-10**17, 10**17).map(str), st.text(alphabet="0123456789.eE+-xab_ ,", max_size=8))
NUMBER = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")


def malformed(text: str, field: str) -> bool:
    """The CSV source's rule, written apart: neither a missing marker nor a number in range."""
    from siem_gad.events import MISSING_MARKERS, NUMERIC_RANGES

    if text.strip() in MISSING_MARKERS:
        return False
    low, high = NUMERIC_RANGES[field]
    return not NUMBER.fullmatch(text) or not low <= float(text) <= high


@FIXTURE
@given(st.lists(st.tuples(cell, cell, cell, cell), min_size=1, max_size=25))
def test_csv_source_quarantines_exactly_the_rows_with_a_bad_number_and_every_builder_stays_finite(tmp_path: Path,
                                                                                                  cells):
    """Rows without an id column, any cell empty, text where a number belongs, a negative count,
    a port past 65535, a number past float range: a row with a malformed number is quarantined
    whole, every other row is read once with a stable id, and the graphs every built-in builder
    makes of them hold only finite features."""
    from datetime import timedelta

    import numpy as np

    from siem_gad.graphs import WindowGrid
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder
    from siem_gad.graphs.host_flow import HostFlowGraphBuilder
    from siem_gad.graphs.profile import ProfileGraphBuilder
    from siem_gad.graphs.temporal import TemporalGraphBuilder
    from siem_gad.sources.csv_source import CsvSource

    work = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example: quarantine files count each line once
    path = work / "cells.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "src", "dst", "bytes", "port", "duration", "packets"])
        for n, row in enumerate(cells):
            writer.writerow([f"2026-01-05T00:{n:02d}:00Z", "10.0.0.1", "10.0.0.2", *row])
    fields = {"src": "source.ip", "dst": "destination.ip", "bytes": "source.bytes", "port": "destination.port",
              "duration": "event.duration", "packets": "source.packets"}
    expected = [not any(malformed(text, fields[column]) for text, column in zip(row, ["bytes", "port", "duration",
                                                                                       "packets"])) for row in cells]
    reads = [CsvSource(path=path, timestamp_field="time", field_map=fields, quarantine=work / f"q{i}.csv")
             .read(REFERENCE.replace(month=1, day=5), REFERENCE, None) for i in (0, 1)]
    events = reads[0].events
    assert len(events) == sum(expected) and reads[0].stats["quarantined"] == len(cells) - sum(expected)
    assert events["event.id"].is_unique and events["event.id"].tolist() == reads[1].events["event.id"].tolist()
    grid = WindowGrid(datetime(2026, 1, 5, tzinfo=UTC), timedelta(hours=1), 1)
    for builder in (BipartiteGraphBuilder(bytes_field="source.bytes"), ProfileGraphBuilder(),
                    HostFlowGraphBuilder(port_field="destination.port"), TemporalGraphBuilder()):
        window = builder.checked_build(events, grid)[0]  # raises on a feature that is not finite
        assert np.isfinite(window.x).all() and np.isfinite(window.edge_attr).all()
        assert (window.num_nodes > 0) == (len(events) > 0)


json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["ip", "port", "bytes", "name", "x"]), inner, max_size=3)),
    max_leaves=10)
ecs_document = st.dictionaries(st.sampled_from(["source", "destination", "network", "user", "host", "event", "labels",
                                                "source.port", "network.bytes"]), json_value, max_size=5)


@FIXTURE
@given(st.lists(ecs_document, min_size=1, max_size=8))
def test_elasticsearch_hits_of_any_shape_become_one_event_each_with_valid_numbers_and_finite_graphs(documents):
    """Whatever a hit's `_source` holds (nested objects, arrays, booleans where a number belongs,
    numbers past any range, text), it becomes one event; a numeric field holds a number in its
    range or is missing, and the graph built from the events holds only finite features."""
    from datetime import timedelta

    import numpy as np

    from siem_gad.events import NUMERIC_RANGES, finalize_events
    from siem_gad.graphs import WindowGrid
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder
    from siem_gad.sources.elasticsearch import HitColumns

    start = datetime(2026, 1, 5, tzinfo=UTC)
    columns = HitColumns()
    for n, document in enumerate(documents):
        columns.add({"_id": f"hit-{n}", "_source": {**document, "@timestamp": (start + timedelta(minutes=n)).isoformat()}},
                    {})
    events = finalize_events(columns.frame("@timestamp"), "es")
    assert len(events) == len(documents) and events["event.id"].is_unique
    for name, (low, high) in NUMERIC_RANGES.items():
        if name in events.columns:
            values = events[name].to_numpy(dtype=float, na_value=np.nan)
            assert (np.isnan(values) | ((values >= low) & (values <= high))).all(), name
    window = BipartiteGraphBuilder().checked_build(events, WindowGrid(start, timedelta(hours=1), 1))[0]
    assert np.isfinite(window.x).all()


@given(st.integers(1, 5).flatmap(lambda width: st.lists(st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters="\r\x00"), max_size=8), min_size=width, max_size=width),
    max_size=10)))
def test_csv_records_written_by_the_csv_module_read_back_identically(rows):
    """NUL and CR are left out: a NUL line is quarantined by design, CR is a line ending."""
    assume(not any(len(row) == 1 and not row[0].strip() for row in rows))  # reads as a blank line, skipped
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    data = out.getvalue().encode()
    if rows:
        scan = RecordScanner(io.BytesIO(data), max_record_lines=1000).scan(0, 0, len(rows[0]), 10_000)
        assert [r.fields for r in scan.records] == rows and not scan.bad


@given(st.text(alphabet='ab,"\n', max_size=30))
def test_open_quote_detection_agrees_with_the_csv_module(text):
    strict_ok = True
    try:
        list(csv.reader([text], strict=True))
    except csv.Error as exc:
        strict_ok = "end of data" not in str(exc)
    if ends_in_open_quote(text, ","):
        assert not strict_ok or text.count('"') % 2 == 1


# ---------------------------------------------------------------------------- syslog TCP framing
message = st.builds(lambda n, body: b"<13>Jan  1 00:00:00 host app: " + body.encode() + b" #%d" % n,
                    st.integers(0, 10_000), st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=40))


def frame(msg: bytes, octet: bool) -> bytes:
    return b"%d %s" % (len(msg), msg) if octet else msg + b"\n"


def feed_in_pieces(framer: Framer, data: bytes, cuts: list[int]) -> list[bytes]:
    out, at = [], 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        out += framer.feed(data[at:cut])
        at = cut
    return out + framer.close()


@given(st.lists(st.tuples(message, st.booleans()), max_size=30), st.lists(st.integers(0, 10**6), max_size=20))
def test_framer_reads_valid_streams_identically_however_they_are_split(frames, cuts):
    data = b"".join(frame(m, octet) for m, octet in frames)
    counts: dict[str, int] = {}
    out = feed_in_pieces(Framer(8192, lambda k, n: counts.__setitem__(k, counts.get(k, 0) + n)), data, cuts)
    assert out == [m for m, _ in frames] and not counts


@given(st.lists(st.tuples(message, st.booleans(), st.integers(0, 400)), max_size=20),
       st.lists(st.integers(0, 10**6), max_size=20))
def test_framer_keeps_the_head_of_each_oversize_message_and_every_message_after_it(frames, cuts):
    """Property: in a valid stream whose messages may be oversize (padded past `max_bytes`,
    newline-framed or octet-counted), however it is split, each normal message comes out whole
    and in order, and each oversize one as one `Oversize` of its first `max_bytes`; an
    oversize octet frame used to swallow the frames after it up to the next newline."""
    max_bytes = 100
    padded = [(m + b" pad" + b"p" * pad if pad > max_bytes else m, octet) for m, octet, pad in frames]
    data = b"".join(frame(m, octet) for m, octet in padded)
    counts: dict[str, int] = {}
    out = feed_in_pieces(Framer(max_bytes, lambda k, n: counts.__setitem__(k, counts.get(k, 0) + n)), data, cuts)
    assert out == [m[:max_bytes] for m, _ in padded]
    assert [isinstance(line, Oversize) for line in out] == [len(m) > max_bytes for m, _ in padded]
    assert counts == ({"oversize": sum(len(m) > max_bytes for m, _ in padded)} if any(len(m) > max_bytes for m, _ in padded) else {})


@given(st.binary(max_size=300), st.lists(message, min_size=1, max_size=10), st.lists(st.integers(0, 10**6), max_size=8))
def test_framer_a_valid_line_after_any_garbage_is_still_received(garbage, valid, cuts):
    data = garbage + b"\n" + b"".join(m + b"\n" for m in valid)
    out = feed_in_pieces(Framer(200, lambda k, n: None), data, cuts)
    assert out[len(out) - len(valid):] == valid


# ---------------------------------------------------------------------------- RELP
RELP_MESSAGE = st.one_of(st.binary(max_size=100), st.integers(4100, 6000).map(lambda n: b"x" * n)).map(lambda b: b"<13>" + b)


@given(st.lists(RELP_MESSAGE, max_size=20), st.lists(st.integers(0, 10**5), max_size=10))
def test_relp_parser_frames_are_the_same_however_the_stream_is_split(messages, cuts):
    """Property: however the stream is split, every frame comes out once, in order; one past the
    parser's limit (64 bytes and the offer's 4,096 of room) as an `Oversize` of its first 64."""
    data = b"".join(b"%d syslog %d %s\n" % (i + 2, len(m), m) for i, m in enumerate(messages))
    parser, out, at = RelpParser(64), [], 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        out += parser.feed(data[at:cut])
        at = cut
    assert out == [(i + 2, "syslog", m if len(m) <= 64 + 4096 else m[:64]) for i, m in enumerate(messages)]
    assert [isinstance(d, Oversize) for *_, d in out] == [len(m) > 64 + 4096 for m in messages]


@given(st.binary(max_size=200))
def test_relp_parser_fails_only_with_its_protocol_error(data):
    try:
        RelpParser(64).feed(data)
    except RelpError:
        pass


# ---------------------------------------------------------------------------- headers and messages
@given(st.text(max_size=200))
def test_header_parsers_fail_only_with_header_error(text):
    for parse in (lambda: parse_line(text, REFERENCE, UTC), lambda: event_time(text, REFERENCE, UTC)):
        try:
            parse()
        except HeaderError:
            pass


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)),
       st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True),
       st.integers(1, 99999), st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=80))
def test_rfc5424_lines_round_trip(moment, host, app, pid, body):
    stamp = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    record = parse_line(f"<38>1 {stamp} {host} {app} {pid} - - {body}", REFERENCE, UTC)
    assert (record.host, record.program, record.pid, record.severity) == (host, app, pid, 6)
    assert record.timestamp == moment and record.message == body.removeprefix("\ufeff")  # RFC 5424's BOM


@given(st.text(max_size=300), st.sampled_from(["sshd", "sudo", "su", "CRON", "systemd-logind", "kernel", "passwd",
                                               "useradd", None]))
def test_message_parsers_never_raise(text, program):
    from siem_gad.syslog.headers import SyslogRecord

    parsers = ParserSet(BUILTIN_PARSERS)
    fields = parsers.parse(SyslogRecord(REFERENCE, "h", program, 1, text))
    assert fields is None or isinstance(fields, dict)


# ---------------------------------------------------------------------------- config files
yaml_text = st.one_of(st.text(max_size=300), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20).map(lambda v: __import__("yaml").safe_dump(v)))


@FIXTURE
@given(yaml_text)
def test_config_loader_fails_only_with_config_error(tmp_path: Path, text):
    from conftest import make_config
    from siem_gad.config import load_config
    from siem_gad.rules import load_rules

    path = tmp_path / "fuzzed.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)
    config = make_config(tmp_path / "deploy", rules={})
    rule = tmp_path / "deploy" / "rules" / "fuzzed.yml"
    rule.write_text(text, encoding="utf-8")
    try:
        load_rules(load_config(config))
    except ConfigError as exc:
        assert str(rule) in str(exc)


def test_timestamps_of_rows_never_overflow():
    """Timestamps far outside pandas' range come out as quarantined rows, never an exception."""
    import pandas as pd

    from siem_gad.sources.timestamps import parse_timestamps

    values = pd.Series(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1e30", "-1e30", "99999999999999999999"])
    parsed = parse_timestamps(values, "auto", "UTC")
    assert len(parsed) == 5 and parsed.iloc[2:].isna().all()


ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata")


def dst_transitions() -> list[tuple[str, datetime]]:
    """(zone, local midnight of a day whose UTC offset changes) for the zones, 2024-2027."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    found = []
    for name in ZONES:
        zone = ZoneInfo(name)
        day = datetime(2024, 1, 1)
        while day.year < 2028:
            if zone.utcoffset(day) != zone.utcoffset(day + timedelta(days=1)):
                found.append((name, day))
            day += timedelta(days=1)
    return found


NEAR_TRANSITIONS = st.builds(lambda pick, minutes: (pick[0], pick[1] + __import__("datetime").timedelta(minutes=minutes)),
                             st.sampled_from(dst_transitions()), st.integers(-6 * 60, 30 * 60))


@given(st.lists(st.one_of(NEAR_TRANSITIONS, st.tuples(st.sampled_from(ZONES),
                                                      st.datetimes(datetime(1990, 1, 1), datetime(2060, 1, 1)))),
                min_size=1, max_size=30))
def test_naive_local_times_read_as_python_reads_them_even_when_clocks_change(pairs):
    """Property: a naive local time in a zone reads as Python's `fold=0` reading (the first of an
    hour that occurs twice; a skipped time as if clocks had not moved): before, pandas refused
    both and the CSV source quarantined the hour's rows every year."""
    from zoneinfo import ZoneInfo

    import pandas as pd

    from siem_gad.sources.timestamps import parse_timestamps

    for zone in {name for name, _ in pairs}:
        local = [t for name, t in pairs if name == zone]
        parsed = parse_timestamps(pd.Series([t.isoformat(sep=" ") for t in local]), "auto", zone)
        expected = [t.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc) for t in local]
        assert [t.to_pydatetime() for t in parsed] == expected


# ---------------------------------------------------------------------------- credentials
@given(st.sampled_from(["http", "https", "relp"]), st.from_regex(r"[A-Za-z0-9._-]{0,12}", fullmatch=True),
       st.from_regex(r"[A-Za-z0-9!$%&*+,;=._~-]{6,24}", fullmatch=True), st.text(max_size=40), st.text(max_size=40))
def test_redact_removes_every_password_from_any_text_around_a_url(scheme, user, password, before, after):
    from siem_gad.redact import redact

    text = f"{before} {scheme}://{user}:{password}@host.example:9200/x {after}"
    cleaned = redact(text)
    assert f"{scheme}://{user}:***@host.example:9200/x" in cleaned
    assert redact(cleaned) == cleaned  # masking twice changes nothing
    assert f":{password}@" not in cleaned  # the credential is gone (the password may recur in the free text)


@FIXTURE
@given(yaml_text)
def test_libyaml_and_the_python_parser_read_a_config_file_alike(tmp_path: Path, text):
    """`load_yaml` parses with libyaml where PyYAML has it. Whatever PyYAML's own parser
    reads, libyaml reads to the same data and key lines; libyaml is never the stricter one (it
    also accepts tabs as trailing white space, '0\\t', which PyYAML's parser refuses)."""
    import yaml

    from siem_gad import yamlfile

    path = tmp_path / "fuzzed.yaml"
    path.write_text(text, encoding="utf-8")
    read = {}
    for name, loader in (("libyaml", yaml.CSafeLoader), ("python", yaml.SafeLoader)):
        original, yamlfile.SAFE_LOADER = yamlfile.SAFE_LOADER, loader
        try:
            document = yamlfile.load_yaml(path)
            read[name] = ("ok", document.data, document.lines)
        except ConfigError as exc:
            read[name] = ("error", [(p.path, p.line) for p in exc.problems])
        finally:
            yamlfile.SAFE_LOADER = original
    if read["python"][0] == "ok":
        assert read["libyaml"] == read["python"]
    if read["libyaml"][0] == "error":
        assert read["python"][0] == "error"
