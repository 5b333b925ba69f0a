"""The `elasticsearch` source: events from an Elasticsearch or OpenSearch index pattern.

A read of [start, end) opens a point in time (PIT) over the index pattern and pages through
it with `search_after`, sorted by the time field and a tie-breaker (`_shard_doc` under a PIT),
`page_size` hits at a time. Hits are folded into columns as they arrive, with repeated strings
shared, so memory grows with the batch of windows being read, not with the index.

Ingest lag: the horizon is `query_delay` behind now, so a window is read only once the events
that belong to it have had that long to be indexed. The checkpoint holds the window watermark
and the sort values of the last event read; the next read starts exactly at the watermark,
which no earlier read went past, so a restart neither skips nor repeats an event.

Servers without point in time (older OpenSearch, some proxies) are read with plain
`search_after` sorted by the time field and `tiebreaker` (default `_id`), when `pit: auto`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import Field

from ..config import Duration, TimeText
from ..elastic.client import ConnectionParams, ElasticError, UsesCluster
from ..events import TIMESTAMP, empty_events, finalize_events
from ..timeutil import isoformat, parse_time, utcnow
from . import Cursor, ReadResult, Source

log = logging.getLogger(__name__)


class ElasticsearchSource(UsesCluster, Source):
    """Events from an index pattern or data stream, through a PIT and search_after."""

    splittable = True  # a time range is one query; workers open their own client and PIT

    class Params(ConnectionParams):
        index: str = Field(..., description="index pattern, alias or data stream, e.g. logs-*")
        query: dict[str, Any] | None = Field(None, description="query DSL that selects the events (a filter)")
        time_field: str = "@timestamp"
        field_map: dict[str, str] = Field(default_factory=dict, description="source field -> ECS field name")
        fields: list[str] | None = Field(None, description="_source fields to fetch (default: all)")
        query_delay: Duration = Field(timedelta(minutes=2), description="how far behind now to read (ingest lag)")
        end: TimeText | None = Field(None, description="stop at this time (backfills of historic data)")
        page_size: int = Field(5000, ge=10, le=10_000)
        keep_alive: str = Field("2m", description="how long the PIT stays open between two pages")
        pit: Literal["auto", "always", "never"] = Field("auto", description="use a point in time")
        tiebreaker: str = Field("_id", description="second sort field when no PIT is used")

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._pit_supported: bool | None = {"always": True, "never": False}.get(self.params.pit)

    # ------------------------------------------------------------------ plumbing
    def _end(self) -> datetime | None:
        return parse_time(self.params.end) if self.params.end else None

    def _filters(self, start: datetime | None = None, end: datetime | None = None) -> list[dict]:
        filters = [self.params.query] if self.params.query else []
        bounds = {}
        if start is not None:
            bounds["gte"] = isoformat(start)
        if end is not None:
            bounds["lt"] = isoformat(end)
        if bounds:
            filters.append({"range": {self.params.time_field: {**bounds, "format": "strict_date_optional_time"}}})
        return filters

    # ------------------------------------------------------------------ the contract
    def bounds(self, cursor: Cursor) -> tuple[datetime | None, datetime | None]:
        horizon = utcnow() - self.params.query_delay
        if self._end() is not None:
            horizon = min(horizon, self._end())
        if cursor is not None:
            return None, horizon
        body = {"size": 0, "track_total_hits": False, "query": {"bool": {"filter": self._filters(end=horizon)}},
                "aggs": {"first": {"min": {"field": self.params.time_field}}}}
        result = self.client.search(body, index=self.params.index)
        first = (result.get("aggregations") or {}).get("first", {}).get("value")
        if first is None:
            return None, None
        return datetime.fromtimestamp(first / 1000, tz=timezone.utc), horizon

    def find_events(self, event_ids: list[str]) -> list[dict]:
        """One search for the events by id (the source field that `field_map` maps to `event.id`)."""
        if not event_ids:
            return []
        id_field = next((src for src, ecs in self.params.field_map.items() if ecs == "event.id"), "event.id")
        body = {"size": len(event_ids), "query": {"bool": {"filter": [*self._filters(), {"terms": {id_field: event_ids}}]}},
                "sort": [{self.params.time_field: "asc"}]}
        return [hit["_source"] for hit in self.client.search(body, index=self.params.index)["hits"]["hits"]]

    def is_finite(self) -> bool:
        end = self._end()
        return end is not None and end <= utcnow() - self.params.query_delay

    def read(self, start: datetime, end: datetime, cursor: Cursor) -> ReadResult:
        columns = HitColumns()
        last_sort = (cursor or {}).get("sort")
        pages = 0
        for hits in self._pages(start, end):
            pages += 1
            for hit in hits:
                columns.add(hit, self.params.field_map)
            last_sort = hits[-1]["sort"]
        events = columns.frame(self.params.time_field)
        events = finalize_events(events, self.name) if len(events) else empty_events()
        return ReadResult(events, {"sort": last_sort, "until": isoformat(end)}, {"read": len(events), "pages": pages})

    def join_cursors(self, cursors: list[Cursor]) -> Cursor:
        """The last run's cursor, with the sort values of the last run that read anything."""
        last_sort = next((c.get("sort") for c in reversed(cursors) if c and c.get("sort") is not None), None)
        return {**cursors[-1], "sort": last_sort}

    # ------------------------------------------------------------------ paging
    def _pages(self, start: datetime, end: datetime):
        body: dict[str, Any] = {"size": self.params.page_size, "track_total_hits": False,
                                "query": {"bool": {"filter": self._filters(start, end)}}}
        if self.params.fields is not None:
            body["_source"] = {"includes": sorted({*self.params.fields, self.params.time_field})}
        pit = self._open_pit()
        try:
            if pit:
                body["pit"] = {"id": pit, "keep_alive": self.params.keep_alive}
                body["sort"] = [{self.params.time_field: "asc"}, {"_shard_doc": "asc"}]
            else:
                body["sort"] = [{self.params.time_field: "asc"}, {self.params.tiebreaker: "asc"}]
            while True:
                result = self.client.search(body, index=None if pit else self.params.index)
                hits = result["hits"]["hits"]
                if not hits:
                    return
                yield hits
                if len(hits) < self.params.page_size:
                    return
                body["search_after"] = hits[-1]["sort"]
                if pit:
                    body["pit"]["id"] = result.get("pit_id", pit)
        finally:
            if pit:
                try:
                    self.client.close_pit(body["pit"]["id"])
                except ElasticError as exc:  # it expires by itself after keep_alive
                    log.debug("%s: closing the point in time failed: %s", self.name, exc)

    def _open_pit(self) -> str | None:
        if self._pit_supported is False:
            return None
        try:
            pit = self.client.open_pit(self.params.index, self.params.keep_alive)
        except ElasticError as exc:
            if self._pit_supported or exc.retryable:
                raise
            log.warning("%s: point in time is not available (%s); paging with search_after on %s and %s",
                        self.name, exc, self.params.time_field, self.params.tiebreaker)
            self._pit_supported = False
            return None
        self._pit_supported = True
        return pit


class HitColumns:
    """Hits folded into columns; equal strings are stored once (entity values repeat a lot).

    A hit's time is its first sort value, where the search sorted by the time field: the
    server's own reading of the field, as epoch milliseconds (nanoseconds for `date_nanos`).
    The `_source` value is whatever was indexed: epoch seconds under an `epoch_second` mapping,
    or a custom format such as `05.01.2026 08:00`, which read as a date of its own would put
    the event in another window, where no read looks for it."""

    def __init__(self) -> None:
        self.data: dict[str, list] = {}
        self._strings: dict[str, str] = {}
        self._sort_times: list[int | None] = []  # one per hit

    @property
    def rows(self) -> int:
        return len(self._sort_times)

    def add(self, hit: dict, field_map: dict[str, str]) -> None:
        flat: dict[str, Any] = {}
        _flatten(hit.get("_source") or {}, "", flat)
        if "event.id" not in flat:
            flat["event.id"] = hit["_id"]
        for name, value in flat.items():
            name = field_map.get(name, name)
            if isinstance(value, str):
                value = self._strings.setdefault(value, value)
            column = self.data.get(name)
            if column is None:
                column = self.data[name] = [None] * self.rows
            column.append(value)
        self._sort_times.append(sort_time_ns(hit.get("sort")))  # counts the hit: `rows` grows by one
        for column in self.data.values():
            if len(column) < self.rows:
                column.append(None)

    def frame(self, time_field: str) -> "Any":
        import pandas as pd

        if not self.rows:
            return pd.DataFrame()
        frame = pd.DataFrame(self.data)
        if time_field != TIMESTAMP and time_field in frame.columns:
            frame[TIMESTAMP] = frame.pop(time_field)
        if all(t is not None for t in self._sort_times):
            frame[TIMESTAMP] = pd.to_datetime(pd.Series(self._sort_times, dtype="int64"), unit="ns", utc=True)
        elif TIMESTAMP in frame.columns and pd.api.types.is_numeric_dtype(frame[TIMESTAMP].dtype):
            frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], unit="ms", utc=True)  # epoch_millis dates
        return frame


def sort_time_ns(sort: list | None) -> int | None:
    """A hit's first sort value as epoch nanoseconds, or None when it is not a number. Dates sort
    as epoch milliseconds and `date_nanos` as nanoseconds; the two cannot be confused for events
    after 1970-01-12 and before the year 33658 (1e15 either way)."""
    value = sort[0] if sort else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if abs(value) >= 1e15 else int(value) * 1_000_000


def _flatten(doc: dict, prefix: str, out: dict[str, Any]) -> None:
    """Nested `_source` -> dotted names; lists of scalars keep their first value (ECS arrays)."""
    for key, value in doc.items():
        name = prefix + key
        if isinstance(value, dict):
            _flatten(value, name + ".", out)
        elif isinstance(value, list):
            out[name] = value[0] if value and not isinstance(value[0], (dict, list)) else None
        else:
            out[name] = value
