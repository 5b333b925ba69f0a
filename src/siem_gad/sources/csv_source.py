"""The `csv` source: a CSV file (export, Zeek log converted to CSV, growing log) read in chunks.

The cursor is a byte offset: the first row not yet consumed. A pass reads only from there, so
a file that grows is read incrementally, and a restart resumes where the last checkpoint was.
Rows are expected roughly in time order (as logs are); a row older than the window being read
(a late row, or one already processed) is counted as `skipped`.

Rows that cannot be used are never fatal: wrong field count, undecodable bytes, NUL bytes,
over-long lines and unparseable timestamps are counted and written to a quarantine CSV with
the file name, line number and reason.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from pydantic import Field, field_validator

from ..components import Params
from ..events import EVENT_ID, TIMESTAMP, finalize_events
from ..hookspecs import hookimpl
from . import Cursor, ReadResult, Source
from .timestamps import check_format, parse_timestamps

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
TAIL_BLOCK = 64 * 1024


@dataclass
class _Record:
    line: int
    offset: int
    fields: list[str]


@dataclass
class _Scan:
    """What one pass over a byte range found."""

    records: list[_Record] = field(default_factory=list)
    bad: list[tuple[int, int, str, str]] = field(default_factory=list)  # (line, offset, reason, raw)
    end_offset: int = 0
    end_line: int = 0


class CsvSource(Source):
    """Events from a CSV file with a header row (or `columns`)."""

    class Params(Params):
        path: Path
        field_map: dict[str, str] = Field(default_factory=dict, description="file column -> ECS field name")
        timestamp_field: str = Field("@timestamp", description="file column holding the event time")
        timestamp_format: str = Field("auto", description="auto, iso, epoch_s, epoch_ms, epoch_us, epoch_ns or strftime")
        timezone: str = Field("UTC", description="zone of timestamps that carry no offset")
        id_field: str | None = Field(None, description="file column with a unique event id")
        delimiter: str = Field(",", min_length=1, max_length=1)
        columns: list[str] | None = Field(None, description="column names when the file has no header row")
        chunk_rows: int = Field(50_000, ge=100)
        follow: bool = Field(False, description="the file is still growing: the last window stays open")
        max_line_bytes: int = Field(1 << 20, ge=64)
        quarantine: Path | None = Field(None, description="default: <state_dir>/quarantine/<source>.csv")
        encoding: str = "utf-8"

        _check_format = field_validator("timestamp_format")(lambda cls, v: check_format(v))

    # ------------------------------------------------------------------ helpers
    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._seen_bad: set[tuple[str, int]] | None = None

    @property
    def path(self) -> Path:
        return self.params.path

    def _identity(self) -> dict[str, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return {"dev": stat.st_dev, "ino": stat.st_ino, "size": stat.st_size}

    def _header(self, handle) -> tuple[list[str] | None, int, int]:
        """(column names, byte offset after the header, lines used by it)."""
        if self.params.columns:
            return list(self.params.columns), 0, 0
        handle.seek(0)
        first = handle.readline()
        if not first.strip():
            return None, len(first), 1
        text = first.decode(self.params.encoding, errors="replace").lstrip("\ufeff")
        names = next(csv.reader([text], delimiter=self.params.delimiter))
        return [n.strip() for n in names], len(first), 1

    def _start(self, cursor: Cursor, header_end: int, header_lines: int) -> tuple[int, int]:
        """(offset, line number) to read from, checking the file is still the same one."""
        identity = self._identity()
        if not cursor or identity is None:
            return header_end, header_lines
        same_file = cursor.get("ino") == identity["ino"] and cursor.get("dev") == identity["dev"]
        if not same_file or identity["size"] < cursor.get("offset", 0):
            log.warning("%s: file was replaced or truncated since the checkpoint; reading it from the start", self.path)
            return header_end, header_lines
        return cursor["offset"], cursor.get("line", 0)

    def _lines(self, handle, offset: int, line: int, scan: _Scan, limit: int | None) -> Iterator[str]:
        """Decoded lines from `offset`; unusable ones go to `scan.bad` and are not yielded."""
        handle.seek(offset)
        scan.end_offset, scan.end_line = offset, line
        max_bytes = self.params.max_line_bytes
        while limit is None or scan.end_offset < limit:
            raw = handle.readline(max_bytes + 1)
            if not raw:
                return
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                start = scan.end_offset
                scan.end_offset += len(raw)
                while raw and not raw.endswith(b"\n"):  # skip the rest of the over-long line
                    raw = handle.readline(max_bytes + 1)
                    scan.end_offset += len(raw)
                scan.end_line += 1
                scan.bad.append((scan.end_line, start, f"line longer than {max_bytes} bytes", ""))
                continue
            if not raw.endswith(b"\n") and self.params.follow:
                return  # a line still being written: leave it for the next pass
            start = scan.end_offset
            scan.end_offset += len(raw)
            scan.end_line += 1
            try:
                text = raw.decode(self.params.encoding)
            except UnicodeDecodeError as exc:
                scan.bad.append((scan.end_line, start, f"undecodable bytes ({exc.reason})", raw[:200].rstrip(b"\r\n").decode("latin-1")))
                continue
            if "\x00" in text:
                scan.bad.append((scan.end_line, start, "NUL byte in line", text[:200].replace("\x00", "\\0")))
                continue
            if not text.strip():
                continue
            yield text

    def _scan(self, handle, offset: int, line: int, width: int, rows: int, limit: int | None = None) -> _Scan:
        """Up to `rows` records from `offset` (multi-line quoted fields supported)."""
        scan = _Scan()
        lines = self._lines(handle, offset, line, scan, limit)
        reader = csv.reader(lines, delimiter=self.params.delimiter)
        record_offset, record_line = offset, line
        while len(scan.records) < rows:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                scan.bad.append((scan.end_line, record_offset, f"CSV syntax: {exc}", ""))
                record_offset, record_line = scan.end_offset, scan.end_line
                continue
            if len(fields) != width:
                scan.bad.append((scan.end_line, record_offset, f"expected {width} fields, got {len(fields)}",
                                 self.params.delimiter.join(fields)[:200]))
            else:
                scan.records.append(_Record(record_line + 1, record_offset, fields))
            record_offset, record_line = scan.end_offset, scan.end_line
        return scan

    def _frame(self, header: list[str], scan: _Scan) -> "pd.DataFrame":
        """Records -> DataFrame with ECS names, parsed times, `_line` and `_offset`; bad times quarantined."""
        import pandas as pd

        frame = pd.DataFrame([r.fields for r in scan.records], columns=header, dtype=object)
        frame = frame.mask(frame == "")  # an empty cell is a missing value
        frame["_line"] = [r.line for r in scan.records]
        frame["_offset"] = [r.offset for r in scan.records]
        p = self.params
        if p.timestamp_field not in frame.columns:
            raise ValueError(f"{self.path}: no column {p.timestamp_field!r} for timestamps (columns: {', '.join(header)})")
        stamps = parse_timestamps(frame[p.timestamp_field], p.timestamp_format, p.timezone)
        bad = stamps.isna()
        for line, offset, raw in zip(frame.loc[bad, "_line"], frame.loc[bad, "_offset"], frame.loc[bad, p.timestamp_field]):
            scan.bad.append((int(line), int(offset), f"bad timestamp {raw!r} in column {p.timestamp_field!r}", ""))
        frame = frame.loc[~bad].copy()
        frame[p.timestamp_field] = stamps[~bad]
        frame = frame.rename(columns={**p.field_map, p.timestamp_field: TIMESTAMP})
        if p.id_field:
            frame = frame.rename(columns={p.field_map.get(p.id_field, p.id_field): EVENT_ID})
        return frame

    def _quarantine_path(self) -> Path:
        return self.params.quarantine or (Path(self.state_dir or ".") / "quarantine" / f"{self.name}.csv")

    def _quarantined(self) -> set[tuple[str, int]]:
        """(file, line) already in the quarantine file: a range read twice (training, a repeated
        pass, a restart) quarantines each row once."""
        if self._seen_bad is None:
            self._seen_bad = set()
            target = self._quarantine_path()
            if target.exists():
                with target.open(newline="", encoding="utf-8") as handle:
                    self._seen_bad = {(row["file"], int(row["line"])) for row in csv.DictReader(handle)}
        return self._seen_bad

    def _quarantine(self, bad: list[tuple[int, int, str, str]]) -> int:
        seen = self._quarantined()
        fresh = sorted(b for b in bad if (str(self.path), b[0]) not in seen)
        if not fresh:
            return 0
        target = self._quarantine_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        new = not target.exists()
        with target.open("a", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            if new:
                writer.writerow(["file", "line", "reason", "raw"])
            for line, _, reason, raw in fresh:
                writer.writerow([str(self.path), line, reason, raw])
                seen.add((str(self.path), line))
        log.warning("%s: %d malformed rows quarantined to %s", self.path, len(fresh), target)
        return len(fresh)

    # ------------------------------------------------------------------ contract
    def bounds(self, cursor: Cursor) -> tuple[datetime | None, datetime | None]:
        if self._identity() is None:
            raise FileNotFoundError(f"CSV source {self.name!r}: file not found: {self.path}")
        with self.path.open("rb") as handle:
            header, header_end, header_lines = self._header(handle)
            if header is None:
                return None, None
            offset, line = self._start(cursor, header_end, header_lines)
            first = self._first_time(handle, header, offset, line)
            if first is None:
                return None, None
            last = self._last_time(handle, header, offset)
        if self.params.follow:
            return first, last
        # The file is complete: every event up to and including the last row has arrived.
        return first, last + timedelta(microseconds=1)

    def _first_time(self, handle, header: list[str], offset: int, line: int) -> datetime | None:
        while True:
            scan = self._scan(handle, offset, line, len(header), rows=256)
            if not scan.records:
                return None
            frame = self._frame(header, scan)
            if len(frame):
                return frame[TIMESTAMP].min().to_pydatetime(warn=False)
            offset, line = scan.end_offset, scan.end_line

    def _last_time(self, handle, header: list[str], offset: int) -> datetime | None:
        size = os.fstat(handle.fileno()).st_size
        block = TAIL_BLOCK
        while True:
            begin = max(offset, size - block)
            handle.seek(begin)
            if begin > offset:
                handle.readline()  # skip the partial line we landed in
            scan = self._scan(handle, handle.tell(), 0, len(header), rows=10**9)
            frame = self._frame(header, scan)
            if len(frame):
                return frame[TIMESTAMP].max().to_pydatetime(warn=False)
            if begin <= offset:
                return None
            block *= 4

    def is_finite(self) -> bool:
        return not self.params.follow

    def counters(self) -> dict[str, int]:
        return {"quarantined": len(self._quarantined())}

    def read(self, start: datetime, end: datetime, cursor: Cursor) -> ReadResult:
        import pandas as pd

        identity = self._identity()
        if identity is None:
            raise FileNotFoundError(f"CSV source {self.name!r}: file not found: {self.path}")
        stats = {"read": 0, "quarantined": 0, "skipped": 0}
        kept: list[pd.DataFrame] = []
        with self.path.open("rb") as handle:
            header, header_end, header_lines = self._header(handle)
            if header is None:
                log.info("%s: empty file, nothing to read", self.path)
                return ReadResult(_empty(), dict(cursor or {}), stats)
            offset, line = self._start(cursor, header_end, header_lines)
            next_offset, next_line = None, None
            while True:
                scan = self._scan(handle, offset, line, len(header), self.params.chunk_rows)
                frame = self._frame(header, scan)
                stats["quarantined"] += self._quarantine(scan.bad)
                stamps = frame[TIMESTAMP]
                future = frame.loc[stamps >= end]
                if next_offset is None and len(future):
                    first = future["_offset"].idxmin()
                    next_offset, next_line = int(future.at[first, "_offset"]), int(future.at[first, "_line"]) - 1
                stats["skipped"] += int((stamps < start).sum())
                kept.append(frame.loc[(stamps >= start) & (stamps < end)])
                progressed = scan.end_offset > offset
                offset, line = scan.end_offset, scan.end_line
                if not progressed or len(scan.records) < self.params.chunk_rows:
                    break  # end of the file (or of its complete lines)
                if len(frame) and bool((stamps >= end).all()):
                    break  # rows come in time order: the rest belongs to later windows
        if next_offset is None:
            next_offset, next_line = offset, line
        events = pd.concat(kept, ignore_index=True) if kept else _empty()
        events = events.drop(columns=["_offset"], errors="ignore")
        events = finalize_events(events.drop(columns=["_line"]), self.name) if len(events) else _empty()
        stats["read"] = len(events)
        new_cursor = {"offset": next_offset, "line": next_line, "ino": identity["ino"], "dev": identity["dev"]}
        return ReadResult(events, new_cursor, stats)


def _empty() -> "pd.DataFrame":
    from ..events import empty_events

    return empty_events()


@hookimpl
def register_sources(register):
    register("csv", CsvSource)
