"""The state store: one SQLite file in `state_dir`, model files beside it.

What must survive a crash lives here: per-job checkpoints (watermark + source cursor), the
model registry, suppression state, the streaming state of sequence detectors, and a status
row per pass. A pass's checkpoint, suppression updates and detector stream state are written
in one transaction, after every sink acknowledged its alerts, so a crash before that point
simply repeats the pass (and the deterministic alert ids make the repeat write nothing twice).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from .redact import redact
from .timeutil import isoformat, parse_time, utcnow

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    job TEXT PRIMARY KEY, watermark TEXT NOT NULL, cursor TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY, job TEXT NOT NULL, detector TEXT NOT NULL, version INTEGER NOT NULL,
    config_hash TEXT NOT NULL, path TEXT NOT NULL, train_start TEXT, train_end TEXT,
    metrics TEXT, created_at TEXT NOT NULL, UNIQUE (job, detector, version));
CREATE TABLE IF NOT EXISTS passes (
    id INTEGER PRIMARY KEY, job TEXT NOT NULL, started_at TEXT NOT NULL, window_start TEXT,
    window_end TEXT, events INTEGER DEFAULT 0, alerts INTEGER DEFAULT 0, quarantined INTEGER DEFAULT 0,
    duration_s REAL, status TEXT NOT NULL, message TEXT);
CREATE INDEX IF NOT EXISTS passes_job ON passes (job, id);
CREATE TABLE IF NOT EXISTS suppression (
    rule_id TEXT NOT NULL, entity_key TEXT NOT NULL, until TEXT NOT NULL, PRIMARY KEY (rule_id, entity_key));
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, sink TEXT NOT NULL, alert_id TEXT NOT NULL, document TEXT NOT NULL,
    status INTEGER, error TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, replayed_at TEXT, UNIQUE (sink, alert_id));
CREATE TABLE IF NOT EXISTS detector_streams (
    job TEXT NOT NULL, detector TEXT NOT NULL, model_version INTEGER NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (job, detector));
CREATE TABLE IF NOT EXISTS incident_alerts (
    alert_id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, t INTEGER NOT NULL, risk REAL NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS incident_alerts_incident ON incident_alerts (incident_id);
CREATE TABLE IF NOT EXISTS incident_links (
    key TEXT NOT NULL, alert_id TEXT NOT NULL, t INTEGER NOT NULL, role TEXT NOT NULL, rule_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS incident_links_key ON incident_links (key, t);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, risk REAL NOT NULL, first_seen TEXT, last_seen TEXT,
    document TEXT NOT NULL, revision INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY, target TEXT NOT NULL, verdict TEXT NOT NULL, scope TEXT NOT NULL,
    rules TEXT NOT NULL, entities TEXT NOT NULL, alerts TEXT NOT NULL, until TEXT, note TEXT, by TEXT NOT NULL,
    at TEXT NOT NULL, origin TEXT NOT NULL, UNIQUE (target));
CREATE TABLE IF NOT EXISTS entity_scores (
    job TEXT NOT NULL, detector TEXT NOT NULL, entity TEXT NOT NULL, window_start TEXT NOT NULL,
    score REAL NOT NULL, threshold REAL NOT NULL, alerted INTEGER NOT NULL,
    PRIMARY KEY (job, detector, entity, window_start));
CREATE INDEX IF NOT EXISTS entity_scores_entity ON entity_scores (entity, window_start);
"""
# Columns added after a state file may have been created; added on open when missing.
MIGRATIONS = (("dead_letters", "kind", "TEXT NOT NULL DEFAULT 'alert'"),)


@dataclass
class Checkpoint:
    job: str
    watermark: datetime
    cursor: dict[str, Any] | None
    updated_at: datetime


@dataclass
class DeadLetter:
    """A document a sink could not store (rejected by the server, or for heartbeats and
    incidents also a server out of reach), kept until it is replayed. `kind`: alert, incident
    or status; `alert_id` is the document's id whatever its kind."""

    id: int
    sink: str
    alert_id: str
    document: dict[str, Any]
    status: int | None
    error: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None
    kind: str = "alert"


@dataclass
class ModelRecord:
    job: str
    detector: str
    version: int
    config_hash: str
    path: Path
    train_start: datetime | None
    train_end: datetime | None
    metrics: dict[str, Any]
    created_at: datetime


@dataclass
class PassRecord:
    job: str
    started_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    events: int
    alerts: int  # the alerts the batch produced (each sink stores only those new to it)
    quarantined: int
    duration_s: float
    status: str  # ok | quarantined (ok, but malformed records were set aside) | waiting | error | interrupted
    message: str = ""


class StateStore:
    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.models_dir = self.dir / "models"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.dir / "state.sqlite", timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        for table, column, spec in MIGRATIONS:
            if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {spec}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, job: str) -> Checkpoint | None:
        rows = self._query("SELECT watermark, cursor, updated_at FROM checkpoints WHERE job = ?", (job,))
        if not rows:
            return None
        watermark, cursor, updated = rows[0]
        return Checkpoint(job, parse_time(watermark), json.loads(cursor) if cursor else None, parse_time(updated))

    def commit_pass(self, record: PassRecord, *, watermark: datetime, cursor: dict | None,
                    suppressions: dict[tuple[str, str], datetime], streams: dict[str, tuple[int, dict]],
                    apply: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Advance the checkpoint with everything the pass decided, atomically; `apply` writes
        what else belongs to the pass (its incidents) in the same transaction."""
        with self.transaction() as db:
            if apply is not None:
                apply(db)
            db.execute(
                "INSERT INTO checkpoints (job, watermark, cursor, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (job) DO UPDATE SET watermark = excluded.watermark, cursor = excluded.cursor, "
                "updated_at = excluded.updated_at",
                (record.job, isoformat(watermark), json.dumps(cursor) if cursor is not None else None, isoformat(utcnow())))
            for (rule_id, key), until in suppressions.items():
                db.execute("INSERT INTO suppression (rule_id, entity_key, until) VALUES (?, ?, ?) "
                           "ON CONFLICT (rule_id, entity_key) DO UPDATE SET until = excluded.until",
                           (rule_id, key, isoformat(until)))
            for detector, (version, state) in streams.items():
                db.execute("INSERT INTO detector_streams (job, detector, model_version, state) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (job, detector) DO UPDATE SET model_version = excluded.model_version, "
                           "state = excluded.state", (record.job, detector, version, json.dumps(state)))
            self._insert_pass(db, record)

    def record_pass(self, record: PassRecord) -> None:
        """A status row for a pass that did not advance the checkpoint (waiting, error)."""
        with self.transaction() as db:
            self._insert_pass(db, record)

    @staticmethod
    def _insert_pass(db: sqlite3.Connection, r: PassRecord) -> None:
        db.execute(
            "INSERT INTO passes (job, started_at, window_start, window_end, events, alerts, quarantined, duration_s, "
            "status, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.job, isoformat(r.started_at), r.window_start and isoformat(r.window_start),
             r.window_end and isoformat(r.window_end), r.events, r.alerts, r.quarantined, round(r.duration_s, 3),
             r.status, redact(r.message)))

    def passes(self, job: str, limit: int = 5) -> list[PassRecord]:
        rows = self._query(
            "SELECT job, started_at, window_start, window_end, events, alerts, quarantined, duration_s, status, message "
            "FROM passes WHERE job = ? ORDER BY id DESC LIMIT ?", (job, limit))
        return [PassRecord(r[0], parse_time(r[1]), r[2] and parse_time(r[2]), r[3] and parse_time(r[3]), *r[4:8],
                           r[8], r[9] or "") for r in rows]

    # ------------------------------------------------------------------ suppression
    def suppressed_until(self, rule_id: str) -> dict[str, datetime]:
        rows = self._query("SELECT entity_key, until FROM suppression WHERE rule_id = ?", (rule_id,))
        return {key: parse_time(until) for key, until in rows}

    # ------------------------------------------------------------------ detector streams
    def stream_state(self, job: str, detector: str, model_version: int) -> dict | None:
        rows = self._query("SELECT model_version, state FROM detector_streams WHERE job = ? AND detector = ?",
                           (job, detector))
        if not rows or rows[0][0] != model_version:
            return None  # a new model starts its stream afresh
        return json.loads(rows[0][1])

    # ------------------------------------------------------------------ dead-letter queue
    def add_dead_letters(self, sink: str, rejected: list[tuple[dict[str, Any], int | None, str]],
                         kind: str = "alert") -> None:
        """Keep rejected documents (document, HTTP status, error); a repeat of the same
        document id updates its entry (the newest version of an incident wins) instead of
        adding another."""
        now = isoformat(utcnow())
        with self.transaction() as db:
            for document, status, error in rejected:
                db.execute(
                    "INSERT INTO dead_letters (sink, alert_id, kind, document, status, error, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sink, alert_id) DO UPDATE SET "
                    "document = excluded.document, status = excluded.status, error = excluded.error, "
                    "attempts = attempts + 1, updated_at = excluded.updated_at, replayed_at = NULL",
                    (sink, document["event"]["id"], kind, json.dumps(document, default=str), status, redact(error),
                     now, now))

    def supersede_dead_letters(self, sink: str, ids: list[str]) -> None:
        """A newer version of these documents is stored: their dead-lettered versions must not
        be replayed over it."""
        if ids:
            now = isoformat(utcnow())
            with self.transaction() as db:
                db.executemany("UPDATE dead_letters SET replayed_at = ? WHERE sink = ? AND alert_id = ? "
                               "AND replayed_at IS NULL", [(now, sink, i) for i in ids])

    def dead_letters(self, sink: str | None = None, *, pending: bool = True) -> list[DeadLetter]:
        sql = ("SELECT id, sink, alert_id, document, status, error, attempts, created_at, replayed_at, kind "
               "FROM dead_letters WHERE 1 = 1")
        args: tuple = ()
        if sink:
            sql += " AND sink = ?"
            args += (sink,)
        if pending:
            sql += " AND replayed_at IS NULL"
        rows = self._query(sql + " ORDER BY id", args)
        return [DeadLetter(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], parse_time(r[7]),
                           r[8] and parse_time(r[8]), r[9]) for r in rows]

    def dead_letter_count(self) -> int:
        """How many documents wait in the dead-letter queue (without reading them)."""
        return self._query("SELECT COUNT(*) FROM dead_letters WHERE replayed_at IS NULL")[0][0]

    def mark_replayed(self, ids: list[int]) -> None:
        now = isoformat(utcnow())
        with self.transaction() as db:
            db.executemany("UPDATE dead_letters SET replayed_at = ? WHERE id = ?", [(now, i) for i in ids])

    # ------------------------------------------------------------------ models
    def model_path(self, job: str, detector: str, version: int) -> Path:
        return self.models_dir / job / detector / f"v{version}.pt"

    def next_model_version(self, job: str, detector: str) -> int:
        rows = self._query("SELECT MAX(version) FROM models WHERE job = ? AND detector = ?", (job, detector))
        return (rows[0][0] or 0) + 1

    def add_model(self, record: ModelRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO models (job, detector, version, config_hash, path, train_start, train_end, metrics, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.job, record.detector, record.version, record.config_hash, str(record.path),
                 record.train_start and isoformat(record.train_start), record.train_end and isoformat(record.train_end),
                 json.dumps(record.metrics), isoformat(record.created_at)))

    def models(self, job: str, detector: str | None = None) -> list[ModelRecord]:
        sql = ("SELECT job, detector, version, config_hash, path, train_start, train_end, metrics, created_at "
               "FROM models WHERE job = ?")
        args: tuple = (job,)
        if detector:
            sql += " AND detector = ?"
            args += (detector,)
        rows = self._query(sql + " ORDER BY detector, version DESC", args)
        return [ModelRecord(r[0], r[1], r[2], r[3], Path(r[4]), r[5] and parse_time(r[5]), r[6] and parse_time(r[6]),
                            json.loads(r[7] or "{}"), parse_time(r[8])) for r in rows]

    def latest_model(self, job: str, detector: str) -> ModelRecord | None:
        records = self.models(job, detector)
        return records[0] if records else None
