"""The on-disk spool between the syslog listeners and the scheduled passes.

Every line a listener or a file tail receives is inserted here (SQLite, WAL) before anything
else happens to it, with the event time read from its header. A pass reads the lines of its
windows by event time; a line whose window was already processed (it came later than the
source's `query_delay`) is counted as late and quarantined, never silently lost. Lines are
deleted only once the checkpoint has moved past them: the cursor a pass stores holds
`until` (its end time) and `max_id` (the last row id it saw), and the next read, which
receives that committed cursor, deletes exactly the rows that cursor covers.

File tails store their offsets in the same transaction as the lines they read, so a restart
resumes each file exactly where the spool ends.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL, received REAL NOT NULL, origin TEXT NOT NULL,
    line BLOB NOT NULL, header_ok INTEGER NOT NULL, counted INTEGER NOT NULL DEFAULT 0);
-- header_ok: 1 the header parsed, 0 it did not, 2 an oversize message's first bytes (OVERSIZE below)
CREATE INDEX IF NOT EXISTS lines_t ON lines (t, id);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS delivered (origin TEXT NOT NULL, digest BLOB NOT NULL, id INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS delivered_origin ON delivered (origin, id);
"""
NO_HEADER, HEADER_OK, OVERSIZE = 0, 1, 2  # the `header_ok` column (OVERSIZE: intake.Oversize)
RECENT_PER_ORIGIN = 4096  # more than a RELP client keeps unanswered (rsyslog's window: 128)
COUNTER_FLUSH_SECONDS = 1.0


@dataclass
class SpooledLine:
    id: int
    t: float  # event time, epoch seconds (the receive time when the header did not parse)
    received: float
    origin: str
    line: bytes
    header_ok: bool
    counted: bool = False  # already in the parse counters (an earlier read of the same line)
    oversize: bool = False  # `line` is the first max_message_bytes of a longer message


def spooled_line(row: tuple) -> SpooledLine:
    """A `lines` row (id, t, received, origin, line, header_ok, counted) as a SpooledLine."""
    return SpooledLine(row[0], row[1], row[2], row[3], bytes(row[4]), row[5] == HEADER_OK, bool(row[6]),
                       row[5] == OVERSIZE)


class Spool:
    def __init__(self, path: Path, max_lines: int = 5_000_000):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_lines = max_lines
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses nothing
        self._db.executescript(SCHEMA)
        self._count = self._db.execute("SELECT COUNT(*) FROM lines").fetchone()[0]
        self._pending_counts: dict[str, int] = {}
        self._flushed_at = time.monotonic()
        self._flush_timer: threading.Timer | None = None
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if self._flush_timer is not None:
                self._flush_timer.cancel()
            self._flush_counts()
            self._closed = True
            self._db.close()

    # ------------------------------------------------------------------ writing
    def full(self) -> bool:
        return self._count >= self.max_lines

    def wait_for_room(self, stop: threading.Event) -> None:
        """Block (back-pressure for TCP and files) while the spool is full."""
        while self.full() and not stop.is_set():
            time.sleep(0.05)

    def append(self, rows: Iterable[tuple[float, float, str, bytes, int]],
               file_offset: tuple[str, int, int, int] | None = None, digests: list[bytes] | None = None,
               counts: dict[str, int] | None = None) -> int:
        """Insert (t, received, origin, line, header_ok) rows, a file's new offset, the lines'
        digests (RELP) and counter increments, atomically."""
        rows = list(rows)
        with self._lock:
            for name, n in (counts or {}).items():
                self._pending_counts[name] = self._pending_counts.get(name, 0) + n
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO lines (t, received, origin, line, header_ok) VALUES (?, ?, ?, ?, ?)",
                                     rows)
                if digests:
                    self._remember(rows[0][2], digests)
                if file_offset is not None:
                    self._db.execute("INSERT INTO files (path, dev, ino, offset) VALUES (?, ?, ?, ?) ON CONFLICT (path) "
                                     "DO UPDATE SET dev = excluded.dev, ino = excluded.ino, offset = excluded.offset",
                                     file_offset)
                if rows:
                    first = min(r[0] for r in rows)
                    self._db.execute("INSERT INTO meta (key, value) VALUES ('first_t', ?) ON CONFLICT (key) "
                                     "DO UPDATE SET value = MIN(value, excluded.value)", (first,))
                    self._db.execute("INSERT INTO meta (key, value) VALUES ('last_t', ?) ON CONFLICT (key) "
                                     "DO UPDATE SET value = MAX(value, excluded.value)", (max(r[0] for r in rows),))
                self._flush_counts()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += len(rows)
        return len(rows)

    def _remember(self, origin: str, digests: list[bytes]) -> None:
        last = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'lines'").fetchone()[0]
        first = last - len(digests) + 1
        self._db.executemany("INSERT INTO delivered (origin, digest, id) VALUES (?, ?, ?)",
                             [(origin, d, first + i) for i, d in enumerate(digests)])
        self._db.execute("DELETE FROM delivered WHERE origin = ? AND id <= (SELECT id FROM delivered WHERE origin = ? "
                         "ORDER BY id DESC LIMIT 1 OFFSET ?)", (origin, origin, RECENT_PER_ORIGIN))

    def recent_digests(self, origin: str) -> set[bytes]:
        """Digests of the last messages committed from `origin` (RELP's duplicate check)."""
        with self._lock:
            rows = self._db.execute("SELECT digest FROM delivered WHERE origin = ?", (origin,)).fetchall()
        return {bytes(r[0]) for r in rows}

    def file_offsets(self) -> dict[str, tuple[int, int, int]]:
        with self._lock:
            rows = self._db.execute("SELECT path, dev, ino, offset FROM files").fetchall()
        return {path: (dev, ino, offset) for path, dev, ino, offset in rows}

    # ------------------------------------------------------------------ counters
    def count(self, name: str, n: int = 1) -> None:
        """Add to a counter; stored with the next append, or within a second when no append
        comes (drops while the spool is full must reach `siem-gad status` too)."""
        with self._lock:
            self._pending_counts[name] = self._pending_counts.get(name, 0) + n
            if self._closed:
                return
            if time.monotonic() - self._flushed_at >= COUNTER_FLUSH_SECONDS:
                self._flush_counts()
            elif self._flush_timer is None:
                self._flush_timer = threading.Timer(COUNTER_FLUSH_SECONDS, self._timed_flush)
                self._flush_timer.daemon = True
                self._flush_timer.start()

    def _timed_flush(self) -> None:
        with self._lock:
            self._flush_timer = None
            if not self._closed and self._pending_counts:
                self._flush_counts()

    def _flush_counts(self) -> None:
        counts, self._pending_counts = self._pending_counts, {}
        self._flushed_at = time.monotonic()
        for name, n in counts.items():
            self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) "
                             "DO UPDATE SET value = value + excluded.value", (name, n))

    def counters(self) -> dict[str, int]:
        with self._lock:
            self._flush_counts()
            return dict(self._db.execute("SELECT name, value FROM counters ORDER BY name").fetchall())

    # ------------------------------------------------------------------ reading
    def time_range(self) -> tuple[float | None, float | None]:
        with self._lock:
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return rows.get("first_t"), rows.get("last_t")

    def release(self, until: float, max_id: int) -> int:
        """Delete the lines a committed cursor covers; return how many."""
        with self._lock:
            deleted = self._db.execute("DELETE FROM lines WHERE t < ? AND id <= ?", (until, max_id)).rowcount
            self._count = max(0, self._count - deleted)
        return deleted

    def max_id(self) -> int:
        """The last id handed out (ids are never reused, even once their lines are deleted)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'lines'").fetchone()
        return row[0] if row else 0

    def __len__(self) -> int:
        return self._count

    def lines(self, start: float, end: float, max_id: int, chunk: int = 20_000) -> Iterator[SpooledLine]:
        """Lines with start <= t < end and id <= max_id, by time then arrival, a chunk at a time."""
        last_t, last_id = start, -1
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, t, received, origin, line, header_ok, counted FROM lines WHERE t < ? AND id <= ? AND "
                    "(t > ? OR (t = ? AND id > ?)) ORDER BY t, id LIMIT ?",
                    (end, max_id, last_t, last_t, last_id, chunk)).fetchall()
            for row in rows:
                yield spooled_line(row)
            if len(rows) < chunk:
                return
            last_t, last_id = rows[-1][1], rows[-1][0]

    def mark_counted(self, ids: list[int], counts: dict[str, int]) -> None:
        """Add read-time counts (parsed, unparsed ...) for lines read the first time, once."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("UPDATE lines SET counted = 1 WHERE id = ?", [(i,) for i in ids])
                for name, n in counts.items():
                    if n:
                        self._pending_counts[name] = self._pending_counts.get(name, 0) + n
                self._flush_counts()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def late(self, before: float, after_id: int, max_id: int) -> list[SpooledLine]:
        """Lines that arrived (id > after_id) for windows already processed (t < before)."""
        with self._lock:
            rows = self._db.execute("SELECT id, t, received, origin, line, header_ok, counted FROM lines WHERE t < ? "
                                    "AND id > ? AND id <= ? ORDER BY id", (before, after_id, max_id)).fetchall()
        return [spooled_line(r) for r in rows]
