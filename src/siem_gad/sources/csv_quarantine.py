"""The `csv` source's quarantine file: one row per malformed record, `file,line,offset,reason,raw`.

Rows are appended durably (fsynced before the pass goes on, so a checkpoint never moves past
a record that a power cut took out of the quarantine) and read back, to quarantine a record
once however often its range is read, with the same record scanner the source reads its input
with. So a row cut short by a crash, or damaged since, costs only itself: a torn last row is
set aside in `<path>.torn` before the next append (else the next row would glue onto it), and
a damaged row elsewhere is logged with its line and skipped.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from ..linefiles import append_durably, set_aside
from .csv_records import BadRecord, RecordScanner

log = logging.getLogger(__name__)
HEADER = ["file", "line", "offset", "reason", "raw"]
SCAN_ROWS = 10_000


class CsvQuarantine:
    """The quarantine file at `path` for records of at most `max_line_bytes` bytes and
    `max_record_lines` lines (the source's own bounds)."""

    def __init__(self, path: Path, max_line_bytes: int, max_record_lines: int):
        self.path = path
        # A raw record doubles its quotes when written, and the other fields come with it.
        self.max_row_bytes = 2 * max_line_bytes + (64 << 10)
        self.max_row_lines = max_record_lines + 1
        self._seen: set[tuple[str, int, int]] | None = None

    def seen(self) -> set[tuple[str, int, int]]:
        """(file, line, hash of the raw text) of every record in the quarantine; a torn last row
        is set aside first. The raw text tells a row apart from the row at the same line of a
        file that replaced the first one (rotated, truncated) under the same name."""
        if self._seen is None:
            self._seen = set()
            if self.path.exists():
                self._read()
        return self._seen

    def add(self, source_file: str, bad: list[BadRecord]) -> list[BadRecord]:
        """Append the records of `source_file` not quarantined yet; return them, by line."""
        seen = self.seen()
        fresh = sorted((b for b in bad if (source_file, b.line, hash(b.raw)) not in seen), key=lambda b: b.line)
        if not fresh:
            return []
        text = io.StringIO()
        writer = csv.writer(text)
        if not self.path.exists() or self.path.stat().st_size == 0:
            writer.writerow(HEADER)
        for item in fresh:
            writer.writerow([source_file, item.line, item.offset, item.reason, item.raw])
        append_durably(self.path, text.getvalue())
        seen.update((source_file, item.line, hash(item.raw)) for item in fresh)
        return fresh

    def _read(self) -> None:
        with self.path.open("rb") as handle:
            size = handle.seek(0, io.SEEK_END)
            scanner = RecordScanner(handle, max_record_bytes=self.max_row_bytes,
                                    max_record_lines=self.max_row_lines, follow=True)
            offset = line = 0
            while True:
                scan = scanner.scan(offset, line, len(HEADER), SCAN_ROWS)
                for record in scan.records:
                    file, number, raw = record.fields[0], record.fields[1], record.fields[4]
                    if number.isascii() and number.isdigit():
                        self._seen.add((file, int(number), hash(raw)))
                    elif record.fields != HEADER:
                        log.warning("%s:%d: not a quarantine row (line %r); skipped", self.path, record.line, number)
                for item in scan.bad:
                    log.warning("%s:%d: not a quarantine row (%s); skipped", self.path, item.line, item.reason)
                if scan.end_offset == offset:
                    break
                offset, line = scan.end_offset, scan.end_line
        if offset < size:
            set_aside(self.path, offset, "a torn last row left by an interrupted write")
