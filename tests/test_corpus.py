"""The malformed corpus found by adversarial testing (tests/corpus/), kept as permanent fixtures.

Each file goes through the component that reads it in production; the expected counts follow
from how each file was built (see the comments), so a change in accounting fails here.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from siem_gad.sinks.jsonl import JsonlSink
from siem_gad.sources.csv_source import CsvSource
from siem_gad.state import StateStore
from siem_gad.syslog.framing import Framer
from siem_gad.syslog.intake import Oversize
from siem_gad.syslog.relp import RelpError, RelpParser
from siem_gad.yamlfile import ConfigError, load_yaml

CORPUS = Path(__file__).resolve().parent / "corpus"
FIELDS = {"src": "source.ip", "dst": "destination.ip", "port": "destination.port", "bytes": "network.bytes",
          "outcome": "event.outcome"}


def read_csv(name: str, state: Path, **params) -> tuple[int, list[dict]]:
    src = CsvSource(path=CORPUS / name, field_map=FIELDS, timestamp_field="time", **params).bind("fw", StateStore(state))
    first, horizon = src.bounds(None)
    events = src.read(first, horizon, None).events
    csv.field_size_limit(1 << 24)
    return len(events), list(csv.DictReader((state / "quarantine" / "fw.csv").open(newline="")))


def test_csv_stray_quote(tmp_path: Path):
    # 1,000 rows; row 500 (file line 502) has a stray quote before its port
    events, bad = read_csv("csv-stray-quote.csv", tmp_path)
    assert events == 999 and [int(b["line"]) for b in bad] == [502]


def test_csv_mixed_garbage(tmp_path: Path):
    # 1,001 rows. Stray quotes open the last field of rows 10, 11, 300, 301, 302, 999 (lines 12,
    # 13, 303-305, 1002: row 60 holds a quoted field over two lines, which shifts the rest by one);
    # row 50 holds a legitimate 200,000-byte quoted field; row 70 a bare CR (line 73); then a
    # NUL line, undecodable bytes, a year-9999 stamp, a 300 KB line, a short row, two blank lines
    # and one last good row.
    events, bad = read_csv("csv-mixed-garbage.csv", tmp_path, max_line_bytes=262_144)
    assert events == 994
    assert [int(b["line"]) for b in bad] == [12, 13, 73, 303, 304, 305, 1002, 1003, 1004, 1005, 1006, 1007]
    reasons = {int(b["line"]): b["reason"] for b in bad}
    assert reasons[1003] == "NUL byte in line" and reasons[1004].startswith("undecodable bytes")
    assert "in the future" in reasons[1005] and reasons[1006].startswith("line longer than 262144 bytes")
    assert all(b["raw"] for b in bad), "every quarantined row keeps its raw text"


def test_csv_binary(tmp_path: Path):
    with pytest.raises(ValueError, match=r"csv-binary\.csv:1: header row") as caught:
        read_csv("csv-binary.csv", tmp_path)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("name, good", [("syslog-lying-count.bin", 15), ("syslog-garbage.bin", 5),
                                        ("syslog-oversize.bin", 5)])
def test_syslog_streams_deliver_every_good_line(name: str, good: int):
    counts: dict[str, int] = {}
    data = (CORPUS / name).read_bytes()
    framer = Framer(8192, lambda k, n: counts.__setitem__(k, counts.get(k, 0) + n))
    lines = [line for at in range(0, len(data), 97) for line in framer.feed(data[at:at + 97])] + framer.close()
    whole = [line for line in lines if not isinstance(line, Oversize)]
    assert sum(line.startswith(b"<38>Nov 23 06:00:") and b"Failed password" in line for line in whole) == good
    # each oversize message comes out once, as at most its first 8192 bytes, to be quarantined
    heads = [len(line) for line in lines if isinstance(line, Oversize)]
    assert len(heads) == counts.get("oversize", 0) and all(0 < n <= 8192 for n in heads)
    if name == "syslog-oversize.bin":
        # `99999 <38>z...` lies (a line break and a header come 5,005 bytes in): that message is
        # not oversize; the 20,000-byte line after it is
        assert counts["oversize"] == 1 and counts["frame_mismatch"] == 1


def test_relp_garbage_ends_the_session():
    with pytest.raises(RelpError):
        RelpParser(8192).feed((CORPUS / "relp-garbage.bin").read_bytes())


@pytest.mark.parametrize("name, message", [("yaml-alias-bomb.yaml", "alias bomb"), ("yaml-recursive.yaml", "recursive"),
                                           ("yaml-not-utf8.yaml", "not UTF-8"), ("yaml-binary.yaml", "not UTF-8")])
def test_yaml_files_are_refused_naming_the_file(name: str, message: str):
    with pytest.raises(ConfigError, match=message) as caught:
        load_yaml(CORPUS / name)
    assert str(caught.value).startswith(str(CORPUS / name))


def test_torn_alert_file_keeps_every_complete_alert(tmp_path: Path):
    path = tmp_path / "alerts.jsonl"
    shutil.copy(CORPUS / "alerts-torn-long.jsonl", path)
    assert JsonlSink(path=path).write([{"siem_gad": {"alert_id": "new"}}]) == 1
    ids = [json.loads(line)["siem_gad"]["alert_id"] for line in path.read_text().splitlines()]
    assert ids == [f"a-{i}" for i in range(144)] + ["new"]
