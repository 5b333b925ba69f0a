"""Test helpers for the Elasticsearch/OpenSearch tests (importable by subprocesses via PYTHONPATH).

- `PlainJsonNode`: the official elasticsearch client sends
  `application/vnd.elasticsearch+json; compatible-with=9`, which the OpenSearch-compatible test
  server answers with 406; this node rewrites the two headers to plain JSON. Test-only.
- `FaultProxy`: an HTTP proxy in front of the real server that answers chosen requests with an
  error status (429 ...) before passing the rest through, to test retries.
- `iot23_documents` / `index_documents`: real IoT-23 Zeek flows indexed as ECS documents.
- `sample_alerts`: alert documents for sink tests and benchmarks.
"""

from __future__ import annotations

import csv
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from elastic_transport import Urllib3HttpNode

ROOT = Path(__file__).resolve().parents[1]
IOT23 = ROOT.parent / "shared" / "data" / "iot23"

EVENTS_MAPPING = {
    "properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {"id": {"type": "keyword"}, "dataset": {"type": "keyword"}}},
        "source": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
        "destination": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
        "network": {"properties": {"transport": {"type": "keyword"}, "bytes": {"type": "long"}}},
        "zeek": {"properties": {"conn_state": {"type": "keyword"}, "label": {"type": "keyword"},
                                "detailed_label": {"type": "keyword"}}},
    }
}


class PlainJsonNode(Urllib3HttpNode):
    def perform_request(self, method, target, body=None, headers=None, request_timeout=None):  # noqa: D102
        if headers:
            headers = headers.copy()
            for name in list(headers):
                if name.lower() in ("content-type", "accept"):
                    headers[name] = "application/x-ndjson" if "ndjson" in headers[name] else "application/json"
        return super().perform_request(method, target, body=body, headers=headers, request_timeout=request_timeout)


def iot23_documents(capture: str = "CTU-Malware-Capture-42-1", limit: int | None = None) -> list[dict]:
    """Zeek conn records of an IoT-23 capture as nested ECS documents."""
    from datetime import datetime, timezone

    docs = []
    with (IOT23 / f"{capture}-labeled.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            as_int = lambda v: int(float(v)) if v not in ("", "-") else 0  # noqa: E731
            moment = datetime.fromtimestamp(float(row["ts"]), tz=timezone.utc)
            docs.append({
                "@timestamp": moment.isoformat().replace("+00:00", "Z"),
                "event": {"id": row["uid"], "dataset": "zeek.connection"},
                "source": {"ip": row["id.orig_h"], "port": as_int(row["id.orig_p"])},
                "destination": {"ip": row["id.resp_h"], "port": as_int(row["id.resp_p"])},
                "network": {"transport": row["proto"], "bytes": as_int(row["orig_bytes"]) + as_int(row["resp_bytes"])},
                "zeek": {"conn_state": row["conn_state"], "label": row["label"], "detailed_label": row["detailed-label"]},
            })
            if limit and len(docs) >= limit:
                break
    return docs


def index_documents(client, index: str, docs: list[dict], mapping: dict = EVENTS_MAPPING, chunk: int = 2000) -> None:
    """Create `index` with `mapping` and bulk-index `docs` through opensearch-py."""
    client.indices.create(index=index, body={"mappings": mapping})
    for begin in range(0, len(docs), chunk):
        body = []
        for doc in docs[begin:begin + chunk]:
            body += [{"index": {"_index": index, "_id": doc["event"]["id"]}}, doc]
        response = client.bulk(body=body)
        assert not response["errors"], response["items"][:3]
    client.indices.refresh(index=index)


def sample_alerts(count: int) -> list[dict]:
    """`count` real alert documents (build_alert) with distinct ids and valid ECS fields."""
    from datetime import datetime, timedelta, timezone

    from siem_gad.alerts import build_alert
    from siem_gad.detectors import Explanation
    from siem_gad.rules import Rule

    rule = Rule(id="r1", name="test rule", job="flows", detector="iforest")
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    return [build_alert(rule=rule, job="flows", detector="iforest", detector_type="iforest", model_version=1,
                        score=0.5 + i / 100, threshold=0.5, window_start=start + timedelta(hours=i),
                        window_end=start + timedelta(hours=i + 1),
                        explanation=Explanation(entity={"source.ip": f"10.0.{i // 250}.{i % 250}"}, summary="events=3",
                                                contributors=[{"name": "events", "value": 3, "weight": 1.0}],
                                                evidence=["e1"], evidence_count=1),
                        level="node", normalised_score=50.0 + i / 100,
                        confidence={"level": "high", "value": 1.0, "training_windows": 24, "window_events": 3})
            for i in range(count)]


class FaultProxy:
    """A pass-through HTTP proxy; `fault(method, path)` returns a status to answer instead, or None.

    `after(method, path, status)` is called once a response has been passed back (to act on the
    server at a precise point of a run).
    """

    def __init__(self, upstream: str, fault: Callable[[str, str], int | None] = lambda m, p: None,
                 after: Callable[[str, str, int], None] | None = None):
        self.upstream = urlsplit(upstream)
        self.fault = fault
        self.after = after
        self.faults_sent = 0
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers with lower-case names)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                status = proxy.fault(self.command, self.path)
                if status is not None:
                    proxy.faults_sent += 1
                    payload = b'{"error":{"type":"es_rejected_execution_exception","reason":"injected"},"status":%d}' % status
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout) while the server was stopped
                    self.close_connection = True
                    return
                finally:
                    connection.close()
                if proxy.after is not None:
                    proxy.after(self.command, self.path, response.status)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
