"""The `elasticsearch` source: events from an Elasticsearch or OpenSearch index pattern.

A read of [start, end) opens a point in time (PIT) over the index pattern and pages through
it with `search_after`, sorted by the time field and a tie-breaker (`_shard_doc` under a PIT),
`page_size` hits at a time. Hits are folded into columns as they arrive, with repeated strings
shared, so memory grows with the batch of windows being read, not with the index.

Ingest lag: the horizon is `query_delay` behind now, so a window is read only once the events
that belong to it have had that long to be indexed. The checkpoint holds the window watermark
and the sort values of the last event read; the next read starts exactly at the watermark,
which no earlier read went past, so a restart neither skips nor repeats an event.

Events that reach the cluster after their window was read (a shipper's backlog after an
outage, a lag longer than `query_delay`) are not read again. They are counted, not lost
without a word: each read asks how many events of the windows read before carry an
`ingest_field` (ECS `event.ingested`) between the previous read and this one, less those the
previous read saw; the pass reports them as `late` and the log names a few, with the advice
to raise `query_delay`.

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
LATE_MARGIN = timedelta(seconds=2)  # an index's refresh interval (1 s by default), and some clock skew
MAX_SEEN = 10_000  # ids of a read's events indexed within LATE_MARGIN of it, kept to not count them late


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
        ingest_field: str | None = Field("event.ingested", description="when each event reached the cluster; "
                                         "events it shows came after their window was read are counted as late")
        late_lookback: Duration = Field(timedelta(days=7), description="how far before a read's start to look "
                                        "for late events")

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
        # An event indexed from `read_at` on may miss this read (the margin covers the refresh
        # interval: one indexed just before may not be visible yet); the next read counts it as
        # late unless this read saw it (`seen`: the ids of the read's events indexed since then).
        read_at = utcnow() - LATE_MARGIN
        late = self._late(start, cursor, read_at) if cursor else 0
        columns = HitColumns()
        last_sort = (cursor or {}).get("sort")
        pages = 0
        seen: list[str] = []
        for hits in self._pages(start, end, (read_at, seen) if self.params.ingest_field else None):
            pages += 1
            for hit in hits:
                columns.add(hit, self.params.field_map)
            last_sort = hits[-1]["sort"]
        events = columns.frame(self.params.time_field)
        events = finalize_events(events, self.name) if len(events) else empty_events()
        stats = {"read": len(events), "pages": pages, **({"late": late} if late else {})}
        return ReadResult(events, {"sort": last_sort, "until": isoformat(end), "read_at": isoformat(read_at),
                                   "seen": seen}, stats)

    def join_cursors(self, cursors: list[Cursor]) -> Cursor:
        """The last run's cursor, with the sort values of the last run that read anything and
        the earliest start of the runs (an event indexed after it may have missed its run)."""
        last_sort = next((c.get("sort") for c in reversed(cursors) if c and c.get("sort") is not None), None)
        read_at = min((c["read_at"] for c in cursors if c and c.get("read_at")), default=None, key=parse_time)
        seen = [i for c in cursors if c for i in c.get("seen", [])]
        return {**cursors[-1], "sort": last_sort, **({"read_at": read_at, "seen": seen} if read_at else {})}

    def _late(self, start: datetime, cursor: dict, read_at: datetime) -> int:
        """How many events before `start` were indexed between the previous read (`cursor`'s
        `read_at`, less the events it saw) and this one (`read_at`): they came after their window
        was read. Consecutive reads ask about consecutive spans, so each is counted once. A few
        are named in a warning."""
        if not self.params.ingest_field or not cursor.get("read_at"):
            return 0
        span = {"gte": cursor["read_at"], "lt": isoformat(read_at), "format": "strict_date_optional_time"}
        filters = [*self._filters(start - self.params.late_lookback, start), {"range": {self.params.ingest_field: span}}]
        query = {"bool": {"filter": filters, **({"must_not": [{"ids": {"values": cursor["seen"]}}]}
                                                 if cursor.get("seen") else {})}}
        body = {"size": 5, "track_total_hits": True, "query": query,
                "sort": [{self.params.time_field: "asc"}], "_source": [self.params.time_field, self.params.ingest_field]}
        hits = self.client.search(body, index=self.params.index)["hits"]
        total = hits["total"]["value"] if isinstance(hits.get("total"), dict) else int(hits.get("total") or 0)
        if total:
            named = ", ".join(f"{h['_index']}/{h['_id']}" for h in hits["hits"])
            log.warning("%s: %d event(s) were indexed after their window had been read, and are not in any pass "
                        "(late; raise query_delay above the ingest lag): %s%s", self.name, total, named,
                        " ..." if total > len(hits["hits"]) else "")
        return total

    # ------------------------------------------------------------------ paging
    def _pages(self, start: datetime, end: datetime, recent: tuple[datetime, list[str]] | None = None):
        """The hits of [start, end), a page at a time, through one point in time. With `recent`
        (a time, a list): the ids of the hits indexed since that time (`ingest_field`), asked
        of the same point in time once the pages are read, are put in the list."""
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
                if hits:
                    yield hits
                if len(hits) < self.params.page_size:
                    break
                body["search_after"] = hits[-1]["sort"]
                if pit:
                    body["pit"]["id"] = result.get("pit_id", pit)
            if recent is not None:
                since, ids = recent
                filters = [*self._filters(start, end), {"range": {self.params.ingest_field: {
                    "gte": isoformat(since), "format": "strict_date_optional_time"}}}]
                asked = {**{k: v for k, v in body.items() if k in ("pit", "sort")}, "size": MAX_SEEN,
                         "_source": False, "track_total_hits": False, "query": {"bool": {"filter": filters}}}
                result = self.client.search(asked, index=None if pit else self.params.index)
                ids += [hit["_id"] for hit in result["hits"]["hits"]]
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
