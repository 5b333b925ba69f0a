"""Benchmark: events/s through the `elasticsearch` source and alerts/s through the sink.

Against the local OpenSearch-compatible server (`osmem-server`), in the same run:

- read: the source reads the whole index window batch by window batch, as a job does
  (point in time + search_after, `page_size` hits a page, hits folded into a DataFrame), next
  to a baseline that sends the same batched queries with opensearch-py and keeps nothing.
  The read runs in a child process so that its peak RSS is its own: run it with --events
  100000 and 1000000 to see that memory follows the batch, not the index. The source runs
  twice: as configured by default (each read also counts late events: `ingest_field`), and
  with that check off (`ingest_field: null`), to show what the check costs. Every event
  carries `event.ingested`, as Elastic Agent's events do.
- write: the sink writes alerts (bulk `create` by id, `bulk_size` per request) next to a
  baseline of opensearch-py's `helpers.bulk` indexing the same documents with the same chunk.

Usage: python bench/elastic_io.py [--events 1000000] [--alerts 20000] [--batch-hours 24]
       python bench/elastic_io.py --late-check [--events 200000] [--batch-hours 1] [--repeat 3]
Prints a Markdown table for docs/benchmarks.md. `--late-check` measures only the reads with the
late-event check off and on, alternating, `--repeat` times each, idle and with 2 CPU-bound
processes beside them (medians).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

EVENTS_PER_HOUR = 20_000
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
INDEX = "bench-events"
MAPPING = {"properties": {
    "@timestamp": {"type": "date"},
    "event": {"properties": {"id": {"type": "keyword"}, "outcome": {"type": "keyword"}, "ingested": {"type": "date"}}},
    "source": {"properties": {"ip": {"type": "ip"}}},
    "destination": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
    "network": {"properties": {"bytes": {"type": "long"}, "transport": {"type": "keyword"}}}}}


def index_events(client, count: int) -> float:
    """Bulk-index `count` flow events, EVENTS_PER_HOUR per hour from START; return seconds."""
    client.indices.create(index=INDEX, body={"settings": {"number_of_shards": 1}, "mappings": MAPPING})
    began = time.perf_counter()
    step_ms = 3_600_000 / EVENTS_PER_HOUR
    base = int(START.timestamp() * 1000)
    ingested = int(time.time() * 1000)
    chunk = 10_000
    for first in range(0, count, chunk):
        lines = []
        for n in range(first, min(count, first + chunk)):
            lines.append('{"index":{"_index":"%s","_id":"e%d"}}' % (INDEX, n))
            lines.append(json.dumps({
                "@timestamp": base + int(n * step_ms), "event": {"id": f"e{n}", "outcome": "success" if n % 7 else "failure",
                                                         "ingested": ingested},
                "source": {"ip": f"10.{n % 7}.{(n // 7) % 50}.{n % 200}"},
                "destination": {"ip": f"172.16.{n % 3}.{(n * 31) % 120}", "port": (443, 80, 53, 22, 3389)[n % 5]},
                "network": {"bytes": (n * 7919) % 60_000, "transport": "udp" if n % 5 == 2 else "tcp"}}))
        response = client.bulk(body="\n".join(lines) + "\n", request_timeout=300)
        assert not response["errors"], response["items"][:2]
    client.indices.refresh(index=INDEX)
    return time.perf_counter() - began


def read_child(url: str, count: int, batch_hours: int, page_size: int, mode: str) -> None:
    """In a child process: read everything, print JSON {events, seconds, peak_rss_mib}."""
    from siem_gad.sources.elasticsearch import ElasticsearchSource

    hours = -(-count // EVENTS_PER_HOUR)
    end = START + timedelta(hours=hours)
    began, total = time.perf_counter(), 0
    if mode in ("source", "source-unchecked"):
        checks = {} if mode == "source" else {"ingest_field": None}
        source = ElasticsearchSource(hosts=[url], flavor="opensearch", index=INDEX, page_size=page_size,
                                     request_timeout=300, **checks)
        cursor, start = None, START
        while start < end:
            stop = min(end, start + timedelta(hours=batch_hours))
            result = source.read(start, stop, cursor)
            total += len(result.events)
            cursor, start = result.cursor, stop
            del result
    else:  # the same batched, time-filtered PIT queries, hits counted and dropped
        from opensearchpy import OpenSearch

        client = OpenSearch(hosts=[url], timeout=300)
        start = START
        while start < end:
            stop = min(end, start + timedelta(hours=batch_hours))
            pit = client.create_pit(index=INDEX, params={"keep_alive": "2m"})["pit_id"]
            body = {"size": page_size, "pit": {"id": pit, "keep_alive": "2m"}, "track_total_hits": False,
                    "sort": [{"@timestamp": "asc"}, {"_shard_doc": "asc"}],
                    "query": {"bool": {"filter": [{"range": {"@timestamp": {
                        "gte": start.isoformat(), "lt": stop.isoformat()}}}]}}}
            while True:
                hits = client.search(body=body)["hits"]["hits"]
                total += len(hits)
                if len(hits) < page_size:
                    break
                body["search_after"] = hits[-1]["sort"]
            client.delete_pit(body={"pit_id": [pit]})
            start = stop
    seconds = time.perf_counter() - began
    print(json.dumps({"events": total, "seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def read(url: str, count: int, batch_hours: int, page_size: int, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--url", url, "--events", str(count),
                          "--batch-hours", str(batch_hours), "--page-size", str(page_size)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def alert_documents(count: int) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from elastic_support import sample_alerts  # the same alert documents the sink tests write

    return sample_alerts(count)


def write(url: str, alerts: list[dict], bulk_size: int, state_dir: Path) -> dict:
    from opensearchpy import OpenSearch, helpers

    from siem_gad.sinks.elasticsearch import ElasticsearchSink
    from siem_gad.state import StateStore

    sink = ElasticsearchSink(hosts=[url], flavor="opensearch", index="bench-alerts", bulk_size=bulk_size,
                             request_timeout=300).bind("bench", StateStore(state_dir))
    sink.setup()
    began = time.perf_counter()
    written = sink.write(alerts)
    sink_seconds = time.perf_counter() - began
    began = time.perf_counter()
    again = sink.write(alerts)  # all 409: the exactly-once path
    repeat_seconds = time.perf_counter() - began
    client = OpenSearch(hosts=[url], timeout=300)
    began = time.perf_counter()
    ok, _ = helpers.bulk(client, ({"_index": "bench-raw", "_id": a["siem_gad"]["alert_id"], "_source": a} for a in alerts),
                         chunk_size=bulk_size)
    raw_seconds = time.perf_counter() - began
    assert written == len(alerts) and again == 0 and ok == len(alerts)
    return {"sink": len(alerts) / sink_seconds, "repeat": len(alerts) / repeat_seconds, "raw": len(alerts) / raw_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--batch-hours", type=int, default=24, help="windows (1 h) per read, as batch_windows")
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument("--bulk-size", type=int, default=500)
    parser.add_argument("--child", choices=["source", "source-unchecked", "raw"])
    parser.add_argument("--late-check", action="store_true", help="only the reads, late check off and on")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.child:
        read_child(args.url, args.events, args.batch_hours, args.page_size, args.child)
        return

    import tempfile

    from opensearchpy import OpenSearch
    from osmem_server import OsmemServer

    if args.late_check:
        late_check(args)
        return
    with OsmemServer.start(japanese=False) as server, tempfile.TemporaryDirectory() as state:
        client = OpenSearch(hosts=[server.url], timeout=300)
        index_seconds = index_events(client, args.events)
        server_rss = psutil.Process(server.pid).memory_info().rss / 2**20
        raw = read(server.url, args.events, args.batch_hours, args.page_size, "raw")
        unchecked = read(server.url, args.events, args.batch_hours, args.page_size, "source-unchecked")
        source = read(server.url, args.events, args.batch_hours, args.page_size, "source")
        assert source["events"] == unchecked["events"] == raw["events"] == args.events, (source, unchecked, raw)
        written = write(server.url, alert_documents(args.alerts), args.bulk_size, Path(state))

    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cores, Python {platform.python_version()}; "
          f"server osmem-server (indexing {args.events:,} events took {index_seconds:.0f} s, server RSS {server_rss:.0f} MiB)")
    print(f"\n| read {args.events:,} events (page {args.page_size}, {args.batch_hours} h = "
          f"{args.batch_hours * EVENTS_PER_HOUR:,} events per batch) | events/s | peak RSS of the reader |")
    print("|---|---|---|")
    print(f"| opensearch-py, same queries, hits dropped (baseline) | {raw['events'] / raw['seconds']:,.0f} | {raw['peak_rss_mib']:.0f} MiB |")
    print(f"| `elasticsearch` source -> DataFrame, late check off (`ingest_field: null`) | "
          f"{unchecked['events'] / unchecked['seconds']:,.0f} ({unchecked['seconds'] / raw['seconds']:.2f}x the "
          f"baseline's time) | {unchecked['peak_rss_mib']:.0f} MiB |")
    print(f"| `elasticsearch` source -> DataFrame, late check on (default) | {source['events'] / source['seconds']:,.0f} "
          f"({source['seconds'] / raw['seconds']:.2f}x the baseline's time) | {source['peak_rss_mib']:.0f} MiB |")
    print(f"\n| write {args.alerts:,} alerts (bulk {args.bulk_size}) | alerts/s |")
    print("|---|---|")
    print(f"| opensearch-py helpers.bulk index (baseline) | {written['raw']:,.0f} |")
    print(f"| `elasticsearch` sink, bulk create by id | {written['sink']:,.0f} ({written['sink'] / written['raw']:.2f}x) |")
    print(f"| the same alerts again (all 409, nothing written) | {written['repeat']:,.0f} |")


def late_check(args: argparse.Namespace) -> None:
    """The reads with the late-event check off and on, alternating, idle and loaded."""
    import statistics

    from opensearchpy import OpenSearch
    from osmem_server import OsmemServer

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cpu_load import cpu_load

    with OsmemServer.start(japanese=False) as server:
        index_events(OpenSearch(hosts=[server.url], timeout=300), args.events)
        rows = []
        for machine, processes in (("idle", 0), ("loaded (2 CPU-bound processes)", 2)):
            seconds: dict[str, list[float]] = {"source-unchecked": [], "source": []}
            with cpu_load(processes, seconds=3600):
                for _ in range(args.repeat):
                    for mode in seconds:
                        result = read(server.url, args.events, args.batch_hours, args.page_size, mode)
                        assert result["events"] == args.events, result
                        seconds[mode].append(result["seconds"])
            off, on = statistics.median(seconds["source-unchecked"]), statistics.median(seconds["source"])
            rows.append(f"| {machine} | {off:.2f} | {on:.2f} | {on / off:.2f} |")
    reads = -(-args.events // (EVENTS_PER_HOUR * args.batch_hours))
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cores; {args.events:,} events in {reads} reads of "
          f"{args.batch_hours} h; medians of {args.repeat}")
    print("\n| machine | read, late check off (s) | read, late check on (s) | ratio |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
