"""Event sources: where events come from.

A source answers two questions for the pipeline:

- `bounds(cursor)`: the time of the earliest event it holds, and its horizon, the time before
  which all events have arrived (a live source lags behind now; a file ends at its last row).
  Windows that end at or before the horizon are complete and can be processed.
- `read(start, end, cursor)`: the events with `start <= @timestamp < end`, and the cursor to
  store in the checkpoint once that range has been processed. A cursor is a JSON-able dict
  (file offsets, search_after values ...) or None before the first read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ..components import Component

if TYPE_CHECKING:
    import pandas as pd

Cursor = dict[str, Any] | None


@dataclass
class ReadResult:
    events: "pd.DataFrame"
    cursor: Cursor
    stats: dict[str, int] = field(default_factory=dict)


class Source(Component, ABC):
    """Base class for event sources; see the module docstring for the contract."""

    splittable: ClassVar[bool] = False
    """True when reads of consecutive ranges, each in a fresh copy of the source
    (`detached()`), give together exactly the events of one read of their union, with no side
    effect in this process (no quarantine file, no offsets): the Ray engine then reads runs of
    windows on the workers, in parallel. Files and listeners read in order and stay False."""

    def join_cursors(self, cursors: list[Cursor]) -> Cursor:
        """The cursor of one read of consecutive ranges, from the cursors of their split reads
        in order (only the first was given the checkpoint's cursor). Default: the last one."""
        return cursors[-1]

    @abstractmethod
    def bounds(self, cursor: Cursor) -> tuple[datetime | None, datetime | None]:
        """(earliest event time, horizon), or (None, None) while the source holds no data."""

    def counters(self) -> dict[str, int]:
        """Running totals shown by `siem-gad status` (quarantined rows, dropped messages ...)."""
        return {}

    def is_finite(self) -> bool:
        """True when no more events will arrive (a finished file): the last, partial window
        may then be processed. Live sources keep the default, False."""
        return False

    def find_events(self, event_ids: list[str]) -> "list[dict] | None":
        """The events with these `event.id` values, as documents (what the web view shows as an
        alert's evidence), or None when this source cannot look events up by id: the view then
        shows the ids. Sources with an index (Elasticsearch) override it."""
        return None

    @abstractmethod
    def read(self, start: datetime, end: datetime, cursor: Cursor) -> ReadResult:
        """Events in [start, end) with the cursor that marks them as consumed."""
