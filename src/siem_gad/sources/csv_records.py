"""Splitting a CSV byte stream into records, so that a malformed record costs only itself.

Python's `csv` reader, handed a file, follows an unbalanced quote to the end of the file (or
to its field-size limit) and swallows every row in between. This scanner reads physical
lines itself and hands the reader one record at a time:

- a line without an open quoted field is one record;
- a line that ends inside a quoted field is joined with the lines after it until the quote
  closes, for at most `max_record_lines` lines and `max_record_bytes` bytes;
- when the quote never closes within those bounds, the joined record does not parse strictly
  (its closing quote is followed by more text: one stray quote met another), or it has the
  wrong number of fields, only the first line is quarantined and scanning resumes at the line
  after it.

Every line is accounted for: it is part of a record, blank, or in `bad` with its 1-based line
number, byte offset, the reason and its raw text (up to `max_record_bytes`, marked when cut).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import BinaryIO

QUOTE = '"'
PLAIN_BLOCK = 1 << 20  # bytes read at a time by the fast path


@dataclass
class Record:
    line: int  # 1-based number of the record's first line
    offset: int  # byte offset of that line
    fields: list[str]
    text: str  # the record as read, for the quarantine when a later check rejects it


@dataclass
class BadRecord:
    line: int
    offset: int
    reason: str
    raw: str  # the line as text (undecodable bytes backslash-escaped), cut at the scanner's cap


@dataclass
class Scan:
    """What one pass over a byte range found; `end_*` is where the next scan starts."""

    records: list[Record] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    end_offset: int = 0
    end_line: int = 0


def ends_in_open_quote(text: str, delimiter: str) -> bool:
    """True when `text` ends inside a quoted field (the csv module's default dialect rules:
    a quote opens a field only at its start, `""` inside a quoted field is a literal quote)."""
    if text.count(QUOTE) % 2 == 0:
        return False  # every quote paired: the common case, decided without a scan
    inside, at_start, i, n = False, True, 0, len(text)
    while i < n:
        char = text[i]
        if inside:
            if char == QUOTE:
                if i + 1 < n and text[i + 1] == QUOTE:
                    i += 2
                    continue
                inside = False
        elif char == QUOTE and at_start:
            inside = True
        at_start = not inside and char in (delimiter, "\n", "\r")
        i += 1
    return inside


def printable(raw: bytes, encoding: str) -> str:
    """Raw bytes as text for the quarantine: undecodable bytes and NUL escaped, nothing lost."""
    return raw.decode(encoding, errors="backslashreplace").replace("\x00", "\\x00")


class RecordScanner:
    """Reads records from a binary file handle; see the module docstring."""

    def __init__(self, handle: BinaryIO, *, delimiter: str = ",", encoding: str = "utf-8",
                 max_record_bytes: int = 1 << 20, max_record_lines: int = 64, follow: bool = False):
        self.handle, self.delimiter, self.encoding = handle, delimiter, encoding
        self.max_record_bytes, self.max_record_lines, self.follow = max_record_bytes, max_record_lines, follow
        if csv.field_size_limit() < max_record_bytes:
            csv.field_size_limit(max_record_bytes)  # our own bound is the limit that matters

    # ------------------------------------------------------------------ physical lines
    def _physical(self, offset: int) -> tuple[bytes, int, bool] | None:
        """(raw line, offset after it, over-long) at `offset`; None at the end of the data
        (or, when following a growing file, at a line still being written)."""
        self.handle.seek(offset)
        raw = self.handle.readline(self.max_record_bytes + 1)
        if not raw:
            return None
        if len(raw) > self.max_record_bytes and not raw.endswith(b"\n"):
            end = offset + len(raw)
            while True:  # skip the rest of the over-long line
                more = self.handle.readline(1 << 20)
                end += len(more)
                if not more or more.endswith(b"\n"):
                    break
            if not more and self.follow:
                return None  # its end has not been written yet
            return raw[: self.max_record_bytes], end, True
        if not raw.endswith(b"\n") and self.follow:
            return None
        return raw, offset + len(raw), False

    def _text(self, raw: bytes) -> tuple[str | None, str]:
        """(decoded text, '') or (None, why the line is unusable)."""
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            return None, f"undecodable bytes ({exc.reason})"
        if "\x00" in text:
            return None, "NUL byte in line"
        return text, ""

    # ------------------------------------------------------------------ records
    def scan(self, offset: int, line: int, width: int, rows: int, limit: int | None = None) -> Scan:
        """Up to `rows` records from `offset` (whose line number is `line` + 1), stopping at
        byte `limit` when given."""
        scan = Scan(end_offset=offset, end_line=line)
        while len(scan.records) < rows and (limit is None or scan.end_offset < limit):
            if self._plain_lines(scan, width, rows, limit):
                continue
            first = self._physical(scan.end_offset)
            if first is None:
                break
            raw, after, overlong = first
            number, start = scan.end_line + 1, scan.end_offset
            if overlong:
                scan.bad.append(BadRecord(number, start, f"line longer than {self.max_record_bytes} bytes "
                                                         f"(first {self.max_record_bytes} bytes kept)",
                                          printable(raw, self.encoding)))
                scan.end_offset, scan.end_line = after, number
                continue
            text, why = self._text(raw)
            if text is None:
                scan.bad.append(BadRecord(number, start, why, printable(raw.rstrip(b"\r\n"), self.encoding)))
                scan.end_offset, scan.end_line = after, number
                continue
            if not text.strip():
                scan.end_offset, scan.end_line = after, number
                continue
            joined = self._join(text, after) if ends_in_open_quote(text, self.delimiter) else (text, after, 1)
            if joined is None:
                break  # following a growing file: the rest of the record may still come
            record_text, record_end, used = joined
            try:
                # A quoted field over several lines must close cleanly (strict): a stray quote
                # that merely meets another stray quote lines later is no record.
                fields = next(csv.reader([record_text], delimiter=self.delimiter, strict=used > 1), [])
            except csv.Error as exc:  # a bare CR in an unquoted field, text after a closing quote ...
                reason = (f"unbalanced quote: the quoted field from this line does not close cleanly ({exc})"
                          if used > 1 else f"CSV syntax: {exc}")
                scan.bad.append(BadRecord(number, start, reason, text.rstrip("\r\n")))
                scan.end_offset, scan.end_line = after, number
                continue
            if used and len(fields) == width:
                scan.records.append(Record(number, start, fields, record_text.rstrip("\r\n")))
                scan.end_offset, scan.end_line = record_end, number + used - 1
                continue
            if not used:
                reason = (f"unbalanced quote: no closing quote within {self.max_record_lines} lines "
                          f"or {self.max_record_bytes} bytes")
            elif used > 1:
                reason = f"expected {width} fields, got {len(fields)} in a quoted record over lines {number}-{number + used - 1}"
            else:
                reason = f"expected {width} fields, got {len(fields)}"
            # Only this line is lost: the next scan starts right after it.
            scan.bad.append(BadRecord(number, start, reason, text.rstrip("\r\n")))
            scan.end_offset, scan.end_line = after, number
        return scan

    def _plain_lines(self, scan: Scan, width: int, rows: int, limit: int | None) -> bool:
        """The fast path: a block of complete lines without quotes, NUL bytes or undecodable
        bytes goes through one `csv.reader` (one line, one record). It stops before the first
        line that needs the careful path above; True when it consumed anything."""
        offset = scan.end_offset
        self.handle.seek(offset)
        block = self.handle.read(min(self.max_record_bytes, PLAIN_BLOCK, limit - offset if limit is not None else PLAIN_BLOCK))
        part = block[:block.rfind(b"\n") + 1]
        for marker in (b'"', b"\x00"):
            at = part.find(marker)
            if at >= 0:
                part = part[:part.rfind(b"\n", 0, at) + 1]
        try:
            text = part.decode(self.encoding)
        except UnicodeDecodeError as exc:
            part = part[:part.rfind(b"\n", 0, exc.start) + 1]
            text = part.decode(self.encoding)
        if not part:
            return False
        raws, lines = part.split(b"\n"), text.split("\n")
        reader = csv.reader(lines[:-1], delimiter=self.delimiter)
        number, position = scan.end_line, offset
        for raw, line in zip(raws, lines[:-1]):
            if len(scan.records) >= rows:
                break
            try:
                fields = next(reader)
            except csv.Error:
                break  # the careful path reports this line
            number += 1
            if line.strip():
                if len(fields) == width:
                    scan.records.append(Record(number, position, fields, line.rstrip("\r")))
                else:
                    scan.bad.append(BadRecord(number, position, f"expected {width} fields, got {len(fields)}",
                                              line.rstrip("\r")))
            position += len(raw) + 1
        consumed = position > offset
        scan.end_offset, scan.end_line = position, number
        return consumed

    def _join(self, text: str, after: int) -> tuple[str, int, int] | None:
        """(record text, offset after it, lines used) for a record whose first line ends inside
        a quoted field; lines used is 0 when the quote never closes within the bounds, None
        when a growing file may still complete it."""
        parts, size, offset = [text], len(text), after
        while len(parts) < self.max_record_lines:
            nxt = self._physical(offset)
            if nxt is None:
                return None if self.follow else (text, after, 0)
            raw, end, overlong = nxt
            decoded, _ = self._text(raw) if not overlong else (None, "")
            size += len(raw)
            if decoded is None or size > self.max_record_bytes:
                return text, after, 0
            parts.append(decoded)
            offset = end
            joined = "".join(parts)
            if not ends_in_open_quote(joined, self.delimiter):
                return joined, offset, len(parts)
        return text, after, 0
