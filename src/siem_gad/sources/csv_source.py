"""The `csv` source: a CSV file (export, Zeek log converted to CSV, growing log) read in chunks.

The cursor is a byte offset: the first row not yet consumed. A pass reads only from there, so
a file that grows is read incrementally, and a restart resumes where the last checkpoint was.
The cursor also names the file (device, inode, a fingerprint of its first bytes, since a new
file may reuse a deleted one's inode). A file rotated by rename is found beside the new one by
its inode, and its rows after the checkpoint are read before the new file's.
Rows are expected roughly in time order (as logs are); a row older than the window being read
(a late row, or one already processed) is counted as `skipped`.

Rows that cannot be used are never fatal and cost only themselves: wrong field count, a stray
quote, undecodable bytes, NUL bytes, over-long lines, unparseable or far-future timestamps are
counted and written whole to a quarantine CSV with the file name, line number, byte offset,
reason and raw text (`csv_records` resynchronises at the next line). A file whose header row
is not text (a binary file) is refused with an error naming it.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from ..components import Params
from ..config import Duration
from ..events import EVENT_ID, NUMERIC_RANGES, TIMESTAMP, finalize_events, malformed_numbers
from ..timeutil import utcnow
from . import Cursor, ReadResult, Source
from .csv_quarantine import CsvQuarantine
from .csv_records import BadRecord, RecordScanner, Scan
from .timestamps import check_format, parse_timestamps

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
TAIL_BLOCK = 64 * 1024
HEAD_BYTES = 1024  # the checkpoint's fingerprint of its file: the header and the first rows


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
        max_line_bytes: int = Field(1 << 20, ge=64, description="longest line (and quoted record) accepted, in bytes")
        max_record_lines: int = Field(64, ge=1, le=100_000,
                                      description="most lines one quoted record may span before its quote counts as stray")
        max_future: Duration = Field(timedelta(days=1),
                                     description="rows stamped further than this past the wall clock are quarantined")
        quarantine: Path | None = Field(None, description="default: <state_dir>/quarantine/<source>.csv")
        encoding: str = "utf-8"

        _check_format = field_validator("timestamp_format")(lambda cls, v: check_format(v))

    # ------------------------------------------------------------------ helpers
    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._quarantine_file: CsvQuarantine | None = None

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
        first = handle.readline(self.params.max_line_bytes + 1)
        if not first.strip():
            return None, len(first), 1
        where = f"{self.path}:1: header row"
        if len(first) > self.params.max_line_bytes:
            raise ValueError(f"{where} is longer than {self.params.max_line_bytes} bytes: not a CSV file?")
        try:
            text = first.decode(self.params.encoding).lstrip("\ufeff")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where} is not {self.params.encoding} text ({exc.reason} at byte {exc.start}): "
                             f"not a CSV file, or set `encoding`") from None
        if not text.rstrip("\r\n").replace("\t", " ").isprintable():
            raise ValueError(f"{where} holds control characters: not a CSV file?")
        names = next(csv.reader([text], delimiter=self.params.delimiter))
        return [n.strip() for n in names], len(first), 1

    def _resume(self, cursor: Cursor) -> tuple[int, int] | None:
        """(offset, line number) of the checkpoint, while the file at `path` is still the one it
        was taken in (same device, inode and first bytes, and not shorter); else None."""
        identity = self._identity()
        if (not cursor or identity is None or not _same_file(cursor, identity, self.path)
                or identity["size"] < cursor.get("offset", 0)):
            return None
        return cursor["offset"], cursor.get("line", 0)

    def _rotated(self, cursor: dict) -> Path | None:
        """The file the checkpoint was taken in, when it has been renamed away (log rotation) and
        holds rows after the checkpoint; found by its device, inode and first bytes beside `path`.
        A file replaced or truncated otherwise is read from its start, with a warning."""
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            entries = []
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (entry.is_file(follow_symlinks=False) and Path(entry.path) != self.path
                    and _same_file(cursor, {"ino": stat.st_ino, "dev": stat.st_dev}, Path(entry.path))):
                if stat.st_size > cursor.get("offset", 0):
                    log.info("%s: rotated to %s; reading its last rows first", self.path, entry.path)
                    return Path(entry.path)
                return None  # rotated, and read to its end already
        log.warning("%s: file was replaced or truncated since the checkpoint, and the file the checkpoint was in "
                    "is not beside it; rows written to it after the checkpoint are not read; reading the file from "
                    "the start", self.path)
        return None

    def _scan(self, handle, offset: int, line: int, width: int, rows: int, limit: int | None = None) -> Scan:
        """Up to `rows` records from `offset`; a malformed record costs only itself (see csv_records)."""
        p = self.params
        scanner = RecordScanner(handle, delimiter=p.delimiter, encoding=p.encoding, max_record_bytes=p.max_line_bytes,
                                max_record_lines=p.max_record_lines, follow=p.follow)
        return scanner.scan(offset, line, width, rows, limit)

    def _frame(self, header: list[str], scan: Scan) -> "pd.DataFrame":
        """Records -> DataFrame with ECS names, parsed times and numbers, `_line` and `_offset`; rows
        with a bad time or a bad number in a numeric field (`events.NUMERIC_RANGES`) quarantined."""
        import numpy as np
        import pandas as pd

        p = self.params
        names = [p.field_map.get(h, h) for h in header]
        twice = sorted(name for name, count in Counter(names).items() if count > 1)
        if twice:
            columns = "; ".join(f"{name!r} from columns {', '.join(repr(h) for h, n in zip(header, names) if n == name)}"
                                for name in twice)
            raise ValueError(f"{self.path}:1: the header names a field more than once (after field_map): {columns}")
        frame = pd.DataFrame([r.fields for r in scan.records], columns=header, dtype=object)
        frame = frame.mask(frame == "")  # an empty cell is a missing value
        frame["_line"] = [r.line for r in scan.records]
        frame["_offset"] = [r.offset for r in scan.records]
        if p.timestamp_field not in frame.columns:
            shown = ", ".join(repr(h[:40]) for h in header[:20]) + (" ..." if len(header) > 20 else "")
            raise ValueError(f"{self.path}:1: no column {p.timestamp_field!r} for timestamps (columns: {shown})")
        stamps = parse_timestamps(frame[p.timestamp_field], p.timestamp_format, p.timezone)
        unparsed = stamps.isna()
        horizon = pd.Timestamp(utcnow() + p.max_future)
        future = ~unparsed & (stamps > horizon)
        why: dict[int, str] = {}  # row position -> the first reason it is malformed
        for position in (unparsed | future).to_numpy().nonzero()[0]:
            value = frame[p.timestamp_field].iat[position]
            why[position] = (f"bad timestamp {value!r} in column {p.timestamp_field!r}" if unparsed.iat[position] else
                             f"timestamp {value!r} in column {p.timestamp_field!r} is more than {p.max_future} in "
                             "the future")
        for column in header:
            field = p.field_map.get(column, column)
            if field in NUMERIC_RANGES and column != p.timestamp_field:
                numbers, malformed = malformed_numbers(frame[column], field)
                low, high = NUMERIC_RANGES[field]
                for position in malformed.nonzero()[0]:
                    why.setdefault(int(position), f"bad number {frame[column].iat[position]!r} in column {column!r} "
                                                  f"({field} takes {low:,.0f}..{high:,.0f})")
                frame[column] = numbers  # parsed once: `finalize_events` finds them numeric
        for position in sorted(why):
            record = scan.records[position]
            scan.bad.append(BadRecord(record.line, record.offset, why[position], record.text))
        bad = np.zeros(len(frame), dtype=bool)
        bad[list(why)] = True
        bad = pd.Series(bad, index=frame.index)
        frame = frame.loc[~bad].copy()
        frame[p.timestamp_field] = stamps[~bad]
        frame = frame.rename(columns={**p.field_map, p.timestamp_field: TIMESTAMP})
        if p.id_field:
            frame = frame.rename(columns={p.field_map.get(p.id_field, p.id_field): EVENT_ID})
        return frame

    @property
    def quarantine(self) -> CsvQuarantine:
        """The quarantine file: a range read twice (training, a repeated pass, a restart)
        quarantines each row once."""
        if self._quarantine_file is None:
            p = self.params
            path = p.quarantine or (Path(self.state_dir or ".") / "quarantine" / f"{self.name}.csv")
            self._quarantine_file = CsvQuarantine(path, p.max_line_bytes, p.max_record_lines)
        return self._quarantine_file

    def _quarantine(self, bad: list[BadRecord]) -> int:
        fresh = self.quarantine.add(str(self.path), bad)
        if fresh:
            log.warning("%s: %d malformed rows quarantined to %s (first: line %d, %s)", self.path, len(fresh),
                        self.quarantine.path, fresh[0].line, fresh[0].reason)
        return len(fresh)

    # ------------------------------------------------------------------ contract
    def bounds(self, cursor: Cursor) -> tuple[datetime | None, datetime | None]:
        if self._identity() is None:
            raise FileNotFoundError(f"CSV source {self.name!r}: file not found: {self.path}")
        with self.path.open("rb") as handle:
            header, header_end, header_lines = self._header(handle)
            if header is None:
                return None, None
            offset, line = self._resume(cursor) or (header_end, header_lines)
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
        return {"quarantined": len(self.quarantine.seen())}

    def read(self, start: datetime, end: datetime, cursor: Cursor) -> ReadResult:
        import pandas as pd

        if self._identity() is None:
            raise FileNotFoundError(f"CSV source {self.name!r}: file not found: {self.path}")
        stats = {"read": 0, "quarantined": 0, "skipped": 0}
        kept: list[pd.DataFrame] = []
        resume = self._resume(cursor)
        rotated = self._rotated(cursor) if cursor and resume is None else None
        if rotated is not None:
            assert cursor is not None
            position = (cursor["offset"], cursor.get("line", 0))
            next_position, more, _ = self._read_file(rotated, start, end, position, kept, stats)
            if more or next_position is None:  # rows of later windows remain there: the checkpoint stays in it
                return self._result(kept, {**dict(cursor), **_position(next_position or position)}, stats)
            cursor = None  # the rotated file is read to its end: the new file from its first row
        next_position, _, read_file = self._read_file(self.path, start, end, resume, kept, stats)
        if next_position is None:
            log.info("%s: empty file, nothing to read", self.path)
            return self._result(kept, dict(cursor or {}), stats)
        return self._result(kept, {**_position(next_position), **read_file}, stats)

    def _read_file(self, path: Path, start: datetime, end: datetime, resume: tuple[int, int] | None,
                   kept: list, stats: dict[str, int]) -> tuple[tuple[int, int] | None, bool, dict]:
        """Append the rows of `path` in [start, end) to `kept`, from `resume` (offset, line; None:
        its first row); return where the next read starts (None: the file has no header yet),
        whether rows of later windows were met, and the file read (device, inode, fingerprint:
        of the open file, which a rotation after this moment does not change)."""
        with path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            read_file = {"ino": stat.st_ino, "dev": stat.st_dev, **_fingerprint(handle)}
            header, header_end, header_lines = self._header(handle)
            if header is None:
                return None, False, read_file
            offset, line = resume or (header_end, header_lines)
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
            return (offset, line), False, read_file
        return (next_offset, next_line), True, read_file

    def _result(self, kept: list, cursor: dict, stats: dict[str, int]) -> ReadResult:
        import pandas as pd

        events = pd.concat(kept, ignore_index=True) if kept else _empty()
        events = events.drop(columns=["_offset"], errors="ignore")
        events = finalize_events(events.drop(columns=["_line"], errors="ignore"), self.name) if len(events) else _empty()
        stats["read"] = len(events)
        return ReadResult(events, cursor, stats)


def _same_file(cursor: dict, identity: dict[str, int], path: Path) -> bool:
    """Whether the file at `path` (with `identity`) is the one the checkpoint was taken in: the
    same device and inode, and, since a new file may reuse a deleted one's inode, the same first
    bytes as then (a growing file keeps them)."""
    if cursor.get("ino") != identity["ino"] or cursor.get("dev") != identity["dev"]:
        return False
    return "head" not in cursor or _head(path, cursor.get("head_len", 0)).get("head") == cursor["head"]


def _head(path: Path, length: int = HEAD_BYTES) -> dict:
    """The fingerprint of the file at `path` ({} when it cannot be read)."""
    try:
        with path.open("rb") as handle:
            return _fingerprint(handle, length)
    except OSError:
        return {}


def _fingerprint(handle, length: int = HEAD_BYTES) -> dict:
    """A fingerprint of an open file's first `length` bytes (fewer while it is shorter)."""
    import hashlib

    data = os.pread(handle.fileno(), length, 0)
    return {"head": hashlib.sha1(data).hexdigest(), "head_len": len(data)}


def _position(position: tuple[int, int]) -> dict[str, int]:
    return {"offset": position[0], "line": position[1]}

def _empty() -> "pd.DataFrame":
    from ..events import empty_events

    return empty_events()
