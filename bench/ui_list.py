"""The web view's list page over 100k alerts in a JSON Lines file, idle and with the machine loaded.

    .venv/bin/python bench/ui_list.py --alerts 100000 --repeat 15 --load 1

Runs the default config once (state/ of a scratch copy), multiplies its alerts to `--alerts`
(new ids and times, the same documents otherwise), serves `siem-gad ui` over them in its own
process and times requests from here (median of `--repeat` after a warm-up): the first page,
sorted and filtered pages, a deep page and one alert. The baseline, in the same run, is what a
view without the store's index would do per request: read and parse the whole file, filter and
sort it. Prints a Markdown table and writes bench/results/ui_list.json. Goal (issue 23): the
list page under 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cpu_load import cpu_load

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    "alerts, newest first (page 1)": "/alerts",
    "alerts, riskiest first": "/alerts?sort=riskiest",
    "filtered: detector + severity": "/alerts?detector=iforest&severity=medium",
    "filtered: entity substring": "/alerts?entity=10.1.0.2&sort=riskiest",
    "page 1000": "/alerts?page=1000",
    "one alert (evidence graph)": None,  # filled in with a real id
}


def make_alerts(work: Path, count: int) -> tuple[Path, str]:
    shutil.copy(ROOT / "config.example.yaml", work / "config.yaml")
    shutil.copytree(ROOT / "rules", work / "rules")
    subprocess.run([sys.executable, "-m", "siem_gad", "run", "-c", "config.yaml", "--once"], cwd=work, check=True,
                   capture_output=True)
    path = work / "state" / "alerts.jsonl"
    seeds = [json.loads(line) for line in path.read_text().splitlines()]
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with path.open("w") as handle:
        for number in range(count):
            doc = dict(seeds[number % len(seeds)])
            ident = f"{number:032x}"
            doc["siem_gad"] = {**doc["siem_gad"], "alert_id": ident}
            doc["event"] = {**doc["event"], "id": ident}
            doc["@timestamp"] = (start + timedelta(minutes=number)).isoformat().replace("+00:00", "Z")
            handle.write(json.dumps(doc) + "\n")
    return path, f"{count // 2:032x}"


def naive_list(path: Path) -> int:
    """The baseline: what one request costs without an index (parse all, filter, sort, slice)."""
    docs = [json.loads(line) for line in path.open()]
    docs = [d for d in docs if d["siem_gad"]["detector"] == "iforest"]
    docs.sort(key=lambda d: d["@timestamp"], reverse=True)
    return len(docs[:50])


def timed(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--load", type=int, default=1)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="siem-gad-ui-bench-"))
    path, alert_id = make_alerts(work, args.alerts)
    PAGES["one alert (evidence graph)"] = f"/alerts/{alert_id}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    server = subprocess.Popen([sys.executable, "-m", "siem_gad", "ui", "-c", "config.yaml", "--port", str(args.port)],
                              cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{args.port}"
    results: dict[str, dict[str, float]] = {}
    try:
        for _ in range(100):
            try:
                get(base + "/healthz")
                break
            except OSError:
                time.sleep(0.2)
        began = time.perf_counter()
        get(base + "/alerts")  # the first request reads the file
        first = time.perf_counter() - began
        for loaded in (False, True):
            with cpu_load(args.load * loaded, 600):
                column = "loaded" if loaded else "idle"
                results.setdefault("baseline: parse the file per request", {})[column] = timed(lambda: naive_list(path), 3)
                for label, page in PAGES.items():
                    results.setdefault(label, {})[column] = timed(lambda: get(base + page), args.repeat)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    baseline = results["baseline: parse the file per request"]
    print(f"{args.alerts} alerts in JSON Lines; first request (reads the file): {first * 1000:.0f} ms\n")
    print("| request | idle ms | loaded ms | vs baseline (idle) | loaded / idle |")
    print("|---|---:|---:|---:|---:|")
    for label, values in results.items():
        print(f"| {label} | {values['idle'] * 1000:.1f} | {values['loaded'] * 1000:.1f} | "
              f"{baseline['idle'] / values['idle']:.0f}x | {values['loaded'] / values['idle']:.2f} |")
    out = ROOT / "bench" / "results" / "ui_list.json"
    out.write_text(json.dumps({"alerts": args.alerts, "first_request_s": first, "seconds": results,
                               "machine": f"{os.cpu_count()} cores"}, indent=2) + "\n")


if __name__ == "__main__":
    main()
