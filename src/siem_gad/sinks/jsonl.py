"""The `jsonl` sink: one alert per line in a local file, flushed and fsynced per batch.

On open it reads the ids already in the file (and sets aside a torn last line left by a crash
in the middle of a write, whatever its length, into `<path>.torn`), so a repeated pass
appends nothing twice and no complete line is ever lost. A damaged line costs only itself:
it is logged with its number and skipped (`linefiles`).

Status documents are appended the same way to `status_path`. Incidents change, so
`incidents_path` holds the newest version of each incident, one per line, and is rewritten
whole (a temporary file, fsynced, renamed over the old one) when incidents change: a reader
never sees a half-written file, and an incident is never there twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, ClassVar

from pydantic import Field

from ..components import Params
from ..linefiles import append_durably, aside_path, json_lines, repair_tail
from . import Alert, Rejected, Sink, alert_id_of, document_id

log = logging.getLogger(__name__)


class JsonLines:
    """An append-only JSON Lines file of documents with unique ids."""

    def __init__(self, path: Path, id_of: Callable[[dict], str]):
        self.path = path
        self.id_of = id_of
        self._ids: set[str] | None = None

    def known_ids(self) -> set[str]:
        if self._ids is None:
            self._ids = set()
            repair_tail(self.path)
            for number, _, document in json_lines(self.path):
                try:
                    self._ids.add(self.id_of(document))
                except (KeyError, TypeError):
                    log.warning("%s:%d: a JSON object without an id; left as is", self.path, number)
        return self._ids

    def find(self, identifier: str) -> dict | None:
        for _, _, document in json_lines(self.path, containing=identifier.encode()):
            try:
                if self.id_of(document) == identifier:
                    return document
            except (KeyError, TypeError):
                continue
        return None

    def append(self, documents: list[dict]) -> int:
        """Append the documents not in the file yet (the first of a batch's repeats); return how many."""
        known = self.known_ids()
        first: dict[str, dict] = {}
        for document in documents:
            first.setdefault(self.id_of(document), document)
        new = [d for ident, d in first.items() if ident not in known]
        if not new:
            return 0
        append_durably(self.path, "".join(json.dumps(d, sort_keys=True, default=str) + "\n" for d in new))
        known.update(self.id_of(d) for d in new)
        return len(new)


def rewrite_by_id(path: Path, documents: list[dict]) -> None:
    """Merge documents into a JSON Lines file keyed by `event.id` (newest wins) and replace the
    file atomically. A line of the old file that is no such document is set aside in
    `<path>.torn` first, not dropped."""
    current: dict[str, dict] = {}
    if path.exists():
        repair_tail(path)
        damaged: list[bytes] = []
        for number, raw, document in json_lines(path, "incident", skipped=damaged):
            try:
                current[document_id(document)] = document
            except (KeyError, TypeError):
                log.warning("%s:%d: an incident without an id; skipped", path, number)
                damaged.append(raw)
        if damaged:
            append_durably(aside_path(path), b"".join(damaged))
            log.warning("%s: %d line(s) that are no incident set aside in %s", path, len(damaged), aside_path(path))
    current.update({document_id(d): d for d in documents})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for identifier in sorted(current):
            handle.write(json.dumps(current[identifier], sort_keys=True, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class JsonlSink(Sink):
    kinds: ClassVar[frozenset[str]] = frozenset({"incident", "status"})

    class Params(Params):
        path: Path
        incidents_path: Path | None = Field(None, description="incident file; default: <path stem>.incidents.jsonl")
        status_path: Path | None = Field(None, description="heartbeat file; default: <path stem>.status.jsonl")

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.alerts = JsonLines(self.path, alert_id_of)
        self.status = JsonLines(self.params.status_path or self.beside("status"), document_id)

    @property
    def path(self) -> Path:
        return self.params.path

    @property
    def incidents_path(self) -> Path:
        return self.params.incidents_path or self.beside("incidents")

    def beside(self, kind: str) -> Path:
        return self.path.with_name(f"{self.path.stem}.{kind}.jsonl")

    def find(self, alert_id: str) -> Alert | None:
        return self.alerts.find(alert_id)

    def write(self, alerts: list[Alert]) -> int:
        return self.alerts.append(alerts)

    def put(self, kind: str, documents: list[dict[str, Any]]) -> Rejected:
        if kind == "incident":
            rewrite_by_id(self.incidents_path, documents)
        else:
            self.status.append(documents)
        return []
