"""The `jsonl` sink: one alert per line in a local file, flushed and fsynced per batch.

On open it reads the ids already in the file (and sets aside a torn last line left by a crash
in the middle of a write, whatever its length, into `<path>.torn`), so a repeated pass
appends nothing twice and no complete line is ever lost.

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
            if self.path.exists():
                self._repair()
                with self.path.open(encoding="utf-8") as handle:
                    for number, line in enumerate(handle, 1):
                        try:
                            self._ids.add(self.id_of(json.loads(line)))
                        except (ValueError, KeyError, TypeError):
                            log.warning("%s:%d: not a document line; left as is", self.path, number)
        return self._ids

    def _repair(self) -> None:
        """Set aside a last line without its newline (a write cut short by a crash).

        The file is searched backwards, a block at a time, for the last newline, so a torn line
        of any length costs only itself; its bytes are moved to `<path>.torn` rather than lost.
        """
        with self.path.open("rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            keep = last_line_end(handle, size)
            handle.seek(keep)
            torn = handle.read()
            with open(f"{self.path}.torn", "ab") as aside:
                aside.write(torn + b"\n")
                aside.flush()
                os.fsync(aside.fileno())
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
            log.warning("%s: set aside a torn last line (%d bytes) left by an interrupted write in %s.torn",
                        self.path, size - keep, self.path)

    def find(self, identifier: str) -> dict | None:
        if not self.path.exists():
            return None
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if identifier in line:
                    try:
                        document = json.loads(line)
                    except ValueError:
                        continue
                    if self.id_of(document) == identifier:
                        return document
        return None

    def append(self, documents: list[dict]) -> int:
        """Append the documents not in the file yet; return how many."""
        known = self.known_ids()
        new = [d for d in documents if self.id_of(d) not in known]
        if not new:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for document in new:
                handle.write(json.dumps(document, sort_keys=True, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        known.update(self.id_of(d) for d in new)
        return len(new)


def rewrite_by_id(path: Path, documents: list[dict]) -> None:
    """Merge documents into a JSON Lines file keyed by `event.id` (newest wins) and replace the
    file atomically."""
    current: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                document = json.loads(line)
                current[document_id(document)] = document
            except (ValueError, KeyError, TypeError):
                log.warning("%s: dropped a line that is not an incident", path)
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


def last_line_end(handle, size: int, block: int = 1 << 20) -> int:
    """Offset just after the last newline before `size` in a binary file (0 when there is none)."""
    end = size
    while end > 0:
        begin = max(0, end - block)
        handle.seek(begin)
        cut = handle.read(end - begin).rfind(b"\n")
        if cut >= 0:
            return begin + cut + 1
        end = begin
    return 0
