"""The `jsonl` sink: one alert per line in a local file, flushed and fsynced per batch.

On open it reads the ids already in the file (and sets aside a torn last line left by a crash
in the middle of a write, whatever its length, into `<path>.torn`), so a repeated pass
appends nothing twice and no complete line is ever lost.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..components import Params
from ..hookspecs import hookimpl
from . import Alert, Sink, alert_id_of

log = logging.getLogger(__name__)


class JsonlSink(Sink):
    class Params(Params):
        path: Path

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._ids: set[str] | None = None

    @property
    def path(self) -> Path:
        return self.params.path

    def _known_ids(self) -> set[str]:
        if self._ids is None:
            self._ids = set()
            if self.path.exists():
                self._repair()
                with self.path.open(encoding="utf-8") as handle:
                    for number, line in enumerate(handle, 1):
                        try:
                            self._ids.add(alert_id_of(json.loads(line)))
                        except (ValueError, KeyError, TypeError):
                            log.warning("%s:%d: not an alert line; left as is", self.path, number)
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

    def find(self, alert_id: str) -> Alert | None:
        if not self.path.exists():
            return None
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if alert_id in line:
                    try:
                        alert = json.loads(line)
                    except ValueError:
                        continue
                    if alert_id_of(alert) == alert_id:
                        return alert
        return None

    def write(self, alerts: list[Alert]) -> int:
        known = self._known_ids()
        new = [a for a in alerts if alert_id_of(a) not in known]
        if not new:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for alert in new:
                handle.write(json.dumps(alert, sort_keys=True, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        known.update(alert_id_of(a) for a in new)
        return len(new)


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


@hookimpl
def register_sinks(register):
    register("jsonl", JsonlSink)
