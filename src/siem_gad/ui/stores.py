"""Where the web view reads alerts and incidents: the config's JSON Lines file or its
Elasticsearch/OpenSearch indices, behind one small interface (`AlertStore`).

The JSON Lines store reads the alert file once, keeps a compact row per alert (the fields the
list shows and filters on) and the byte offset of its line, and on each request reads only
what was appended since; an alert page reads its one line back. 100k alerts cost about 50 MB
and a filtered, sorted page a few tens of milliseconds (`bench/ui_list.py`). The incident
file is small and rewritten whole by the sink; it is read again when it changes.

Verdicts come from the state store for both stores (an analyst's verdict is recorded there
whichever way it was given), passed in as {alert id: verdict}.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..linefiles import json_lines

PAGE_SIZE = 50
SORTS = ("newest", "riskiest")
VERDICTS = ("none", "false_positive", "true_positive")
FACETS = ("rule", "detector", "job", "severity")


@dataclass(frozen=True)
class AlertQuery:
    """What the alert list shows: filters (all optional), order and page (from 1)."""

    since: str | None = None  # ISO times, compared with @timestamp
    until: str | None = None
    rule: str | None = None
    detector: str | None = None
    job: str | None = None
    severity: str | None = None
    entity: str | None = None  # part of an entity value, any case
    verdict: str | None = None  # one of VERDICTS
    sort: str = "newest"
    page: int = 1
    per_page: int = PAGE_SIZE

    def at_page(self, page: int) -> "AlertQuery":
        return replace(self, page=page)


@dataclass(frozen=True)
class AlertRow:
    """An alert as the list shows it."""

    alert_id: str
    timestamp: str
    risk: float
    severity: str
    rule: str
    detector: str
    job: str
    entity: str  # "field value"
    entity_field: str
    entity_value: str
    message: str


@dataclass
class AlertPage:
    rows: list[AlertRow]
    total: int
    query: AlertQuery
    facets: dict[str, list[str]] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


class AlertStore(Protocol):
    def alerts(self, query: AlertQuery, verdicts: dict[str, str]) -> AlertPage: ...
    def alert(self, alert_id: str) -> dict[str, Any] | None: ...
    def incidents(self, limit: int = 100) -> list[dict[str, Any]]: ...
    def incident(self, incident_id: str) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


def alert_row(doc: dict[str, Any]) -> AlertRow:
    info = doc.get("siem_gad", {})
    entity = info.get("entity", {})
    return AlertRow(
        alert_id=str(info.get("alert_id", "")), timestamp=str(doc.get("@timestamp", "")),
        risk=float(doc.get("event", {}).get("risk_score") or 0.0), severity=str(info.get("severity", "")),
        rule=str(doc.get("rule", {}).get("id", "")), detector=str(info.get("detector", "")),
        job=str(info.get("job", "")), entity=f"{entity.get('field', '')} {entity.get('value', '')}".strip(),
        entity_field=str(entity.get("field", "")), entity_value=str(entity.get("value", "")), message=str(doc.get("message", ""))[:300])


def matches(row: AlertRow, query: AlertQuery, verdicts: dict[str, str]) -> bool:
    if query.since and row.timestamp < query.since:
        return False
    if query.until and row.timestamp >= query.until:
        return False
    for facet in FACETS:
        wanted = getattr(query, facet)
        if wanted and getattr(row, facet) != wanted:
            return False
    if query.entity and query.entity.lower() not in row.entity_value.lower():
        return False
    if query.verdict:
        verdict = verdicts.get(row.alert_id, "none")
        if verdict != query.verdict:
            return False
    return True


class JsonlStore:
    """Alerts and incidents from a `jsonl` sink's files (see the module docstring)."""

    def __init__(self, alerts_path: Path, incidents_path: Path | None):
        self.alerts_path = Path(alerts_path)
        self.incidents_path = Path(incidents_path) if incidents_path else None
        self._lock = threading.Lock()
        self._rows: list[AlertRow] = []
        self._offsets: list[int] = []
        self._by_id: dict[str, int] = {}
        self._read_to = 0
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file read
        self._orders: dict[str, list[int]] = {}
        self._facets: dict[str, list[str]] = {}
        self._incidents: list[dict[str, Any]] = []
        self._incidents_stamp: tuple[int, int] | None = None

    # ------------------------------------------------------------------ reading the files
    def _refresh(self) -> None:
        try:
            info = os.stat(self.alerts_path)
        except FileNotFoundError:
            self._reset()
            return
        if self._identity != (info.st_dev, info.st_ino) or info.st_size < self._read_to:
            self._reset()  # replaced or truncated: read again from the start
            self._identity = (info.st_dev, info.st_ino)
        if info.st_size == self._read_to:
            return
        with self.alerts_path.open("rb") as handle:
            handle.seek(self._read_to)
            chunk = handle.read(info.st_size - self._read_to)
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next request
        offset = self._read_to
        for line in chunk[:end].split(b"\n")[:-1]:  # JSON Lines end with \n, and only there
            try:
                row = alert_row(json.loads(line))
            except (ValueError, TypeError, AttributeError):
                row = None
            if row is not None and row.alert_id and row.alert_id not in self._by_id:
                self._by_id[row.alert_id] = len(self._rows)
                self._rows.append(row)
                self._offsets.append(offset)
            offset += len(line) + 1
        self._read_to += end
        self._index()

    def _reset(self) -> None:
        self._rows, self._offsets, self._by_id, self._read_to, self._identity = [], [], {}, 0, None
        self._index()

    def _index(self) -> None:
        rows = self._rows
        newest = sorted(range(len(rows)), key=lambda i: rows[i].timestamp, reverse=True)
        riskiest = sorted(newest, key=lambda i: -rows[i].risk)  # stable: newest first among equals
        self._orders = {"newest": newest, "riskiest": riskiest}
        self._facets = {facet: sorted({getattr(r, facet) for r in rows} - {""}) for facet in FACETS}

    # ------------------------------------------------------------------ AlertStore
    def alerts(self, query: AlertQuery, verdicts: dict[str, str]) -> AlertPage:
        with self._lock:
            self._refresh()
            rows, order = self._rows, self._orders.get(query.sort, self._orders["newest"])
            first = (query.page - 1) * query.per_page
            picked, total = [], 0
            for index in order:
                row = rows[index]
                if matches(row, query, verdicts):
                    if first <= total < first + query.per_page:
                        picked.append(row)
                    total += 1
            return AlertPage(picked, total, query, dict(self._facets))

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._refresh()
            index = self._by_id.get(alert_id)
            if index is None:
                return None
            with self.alerts_path.open("rb") as handle:
                handle.seek(self._offsets[index])
                return json.loads(handle.readline())

    def _load_incidents(self) -> None:
        path = self.incidents_path
        try:
            info = os.stat(path) if path else None
        except FileNotFoundError:
            info = None
        stamp = (info.st_mtime_ns, info.st_size) if info else None
        if stamp == self._incidents_stamp:
            return
        documents = [document for _, _, document in json_lines(path, "incident")
                     if isinstance(document.get("siem_gad"), dict) and isinstance(document["siem_gad"].get("incident"), dict)
                     ] if info else []
        self._incidents, self._incidents_stamp = documents, stamp

    def incidents(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            self._load_incidents()
            open_ones = [d for d in self._incidents if d["siem_gad"]["incident"].get("status") != "merged"]
            open_ones.sort(key=lambda d: (-float(d["siem_gad"]["incident"].get("risk_score") or 0),
                                          str(d["siem_gad"]["incident"].get("id", ""))))
            return open_ones[:limit]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._load_incidents()
            return next((d for d in self._incidents if d.get("event", {}).get("id") == incident_id), None)

    def close(self) -> None:
        pass


class ElasticStore:
    """Alerts and incidents from an `elasticsearch` sink's indices, queried per request."""

    def __init__(self, sink: Any):
        self.sink = sink
        self.client = sink.client
        self.index = sink.params.index
        self.incident_index = sink.params.incident_index

    def _exists(self, index: str) -> bool:
        return self.client.index_exists(index)

    def alerts(self, query: AlertQuery, verdicts: dict[str, str]) -> AlertPage:
        if not self._exists(self.index):
            return AlertPage([], 0, query, {facet: [] for facet in FACETS})
        filters: list[dict] = []
        if query.since or query.until:
            bounds = {**({"gte": query.since} if query.since else {}), **({"lt": query.until} if query.until else {})}
            filters.append({"range": {"@timestamp": bounds}})
        for facet, field_name in ES_FIELDS.items():
            if getattr(query, facet):
                filters.append({"term": {field_name: getattr(query, facet)}})
        if query.entity:
            filters.append({"wildcard": {"siem_gad.entity.value": {"value": f"*{escape_wildcard(query.entity)}*",
                                                                   "case_insensitive": True}}})
        must_not: list[dict] = []
        if query.verdict == "none" and verdicts:
            must_not.append({"terms": {"siem_gad.alert_id": sorted(verdicts)}})
        elif query.verdict and query.verdict != "none":
            ids = sorted(i for i, v in verdicts.items() if v == query.verdict)
            if not ids:
                return AlertPage([], 0, query, self.alerts(replace(query, verdict=None, per_page=1), verdicts).facets)
            filters.append({"terms": {"siem_gad.alert_id": ids}})
        sort = [{"@timestamp": "desc"}, {"siem_gad.alert_id": "asc"}] if query.sort != "riskiest" else \
            [{"event.risk_score": "desc"}, {"@timestamp": "desc"}, {"siem_gad.alert_id": "asc"}]
        body = {"query": {"bool": {"filter": filters, "must_not": must_not}}, "sort": sort,
                "from": (query.page - 1) * query.per_page, "size": query.per_page, "track_total_hits": True,
                "aggs": {facet: {"terms": {"field": field_name, "size": 200}} for facet, field_name in ES_FIELDS.items()}}
        answer = self.client.search(body, index=self.index)
        total = answer["hits"]["total"]
        total = total["value"] if isinstance(total, dict) else int(total)
        facets = {facet: sorted(str(b["key"]) for b in answer.get("aggregations", {}).get(facet, {}).get("buckets", []))
                  for facet in ES_FIELDS}
        return AlertPage([alert_row(hit["_source"]) for hit in answer["hits"]["hits"]], total, query, facets)

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        return self.sink.find(alert_id) if self._exists(self.index) else None

    def incidents(self, limit: int = 100) -> list[dict[str, Any]]:
        if not self._exists(self.incident_index):
            return []
        body = {"size": limit, "query": {"bool": {"must_not": [{"term": {"siem_gad.incident.status": "merged"}}]}},
                "sort": [{"siem_gad.incident.risk_score": "desc"}, {"siem_gad.incident.id": "asc"}]}
        return [hit["_source"] for hit in self.client.search(body, index=self.incident_index)["hits"]["hits"]]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        if not self._exists(self.incident_index):
            return None
        return self.client.get_document(self.incident_index, incident_id)

    def close(self) -> None:
        pass  # the sink is the app's, closed with it


ES_FIELDS = {"rule": "rule.id", "detector": "siem_gad.detector", "job": "siem_gad.job", "severity": "siem_gad.severity"}


def escape_wildcard(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?\\" else c for c in text)


def open_store(app: Any, sink_name: str | None = None) -> tuple[str, AlertStore]:
    """(sink name, store) for the sink the view reads: `sink_name`, else the config's first
    sink that can be read back (jsonl or elasticsearch). Raises KeyError naming the choices."""
    from ..sinks.elasticsearch import ElasticsearchSink
    from ..sinks.jsonl import JsonlSink

    readable = {}
    for name in app.config.sinks:
        sink = app.sink(name)
        if isinstance(sink, (JsonlSink, ElasticsearchSink)):
            readable[name] = sink
    if sink_name is not None and sink_name not in readable:
        raise KeyError(f"sink {sink_name!r} is not a jsonl or elasticsearch sink of this config; "
                       f"choose one of: {', '.join(readable) or '(none)'}")
    if not readable:
        raise KeyError("the config has no jsonl or elasticsearch sink to read alerts from")
    name = sink_name or next(iter(readable))
    sink = readable[name]
    if isinstance(sink, JsonlSink):
        return name, JsonlStore(sink.path, sink.incidents_path)
    return name, ElasticStore(sink)
