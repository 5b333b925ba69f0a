"""Line files that siem-gad appends to and reads back: alerts, status documents, incidents and
the sources' quarantines.

A crash can cut the last line short, and a disk or a hand can damage any line. Either costs
only itself:

- `repair_tail` runs before the first append: a last line left without its newline is moved to
  `<path>.torn` (fsynced before the file is cut), so the next record does not glue onto it;
- `json_lines` decodes each line apart: a line that is not a JSON object (undecodable bytes,
  not JSON, a torn line) is logged with its file and line number and skipped, never fatal;
- `append_durably` flushes and fsyncs before it returns, so a checkpoint committed afterwards
  never points past records that a power cut took with it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def aside_path(path: Path) -> Path:
    """Where bytes set aside from `path` go."""
    return path.with_name(f"{path.name}.torn")


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


def set_aside(path: Path, keep: int, what: str = "a torn last line left by an interrupted write") -> int:
    """Move the bytes of `path` after offset `keep` to `<path>.torn` (appended, fsynced) and cut
    the file there; return how many bytes moved."""
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if keep >= size:
            return 0
        handle.seek(keep)
        tail = handle.read()
        append_durably(aside_path(path), tail if tail.endswith(b"\n") else tail + b"\n")
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    log.warning("%s: set aside %s (%d bytes) in %s", path, what, size - keep, aside_path(path))
    return size - keep


def repair_tail(path: Path) -> int:
    """Set aside a last line without its newline; return how many bytes moved (0: none)."""
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        keep = last_line_end(handle, size)
    return set_aside(path, keep)


def json_lines(path: Path, what: str = "document", containing: bytes | None = None,
               skipped: list[bytes] | None = None) -> Iterator[tuple[int, bytes, dict]]:
    """(line number, raw line, object) for every complete line of `path` that is a JSON object
    (and, with `containing`, holds those bytes: the other lines are not decoded).

    A last line without its newline is still being written (or torn): it is not read. Every
    other line that is not a JSON object is logged with its place and skipped (and its raw
    bytes appended to `skipped`, for a caller that rewrites the file and must keep them).
    """
    if not path.exists():
        return
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                return
            if not raw.strip() or (containing is not None and containing not in raw):
                continue
            try:
                document = json.loads(raw.decode("utf-8"))
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError alike
                log.warning("%s:%d: not a %s (%s); skipped", path, number, what, _reason(exc))
                document = None
            else:
                if not isinstance(document, dict):
                    log.warning("%s:%d: not a %s (a JSON %s, not an object); skipped", path, number, what,
                                type(document).__name__)
                    document = None
            if document is None:
                if skipped is not None:
                    skipped.append(raw)
                continue
            yield number, raw, document


def _reason(exc: ValueError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"undecodable bytes: {exc.reason}"
    return str(exc).split(":")[0]


def append_durably(path: Path, data: str | bytes) -> None:
    """Append `data` (text is written as UTF-8) to `path` and fsync it before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
