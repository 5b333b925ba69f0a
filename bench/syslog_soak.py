"""Soak: syslog over RELP at a sustained rate for minutes, siem-gad killed with -9 periodically.

A real rsyslog (Debian's rsyslogd, private config, see relp_harness.py) reads numbered lines
that this script appends to a file at `--rate` lines per second, and forwards them over RELP to
a siem-gad receiver process. Every `--kill-every` seconds the receiver is killed with SIGKILL
and restarted after `--down` seconds. At the end every number must be in the spool exactly
once. Baseline in the same run: the same stream with no kills, so the figures say what the
kills cost (delivery delay), not what the machine does.

    .venv/bin/python bench/syslog_soak.py --minutes 10 --rate 2000 --kill-every 60
    .venv/bin/python bench/syslog_soak.py --minutes 1 --load 2     # with two CPU burners beside it

Writes bench/results/syslog_soak.json and prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_load import cpu_load  # noqa: E402
from relp_harness import (Receiver, Rsyslog, free_port, rsyslog_available, sequence_numbers, spool_counters,  # noqa: E402
                          spooled_count, spooled_lines, wait_until, write_lines)

RESULTS = Path(__file__).resolve().parent / "results" / "syslog_soak.json"


def soak(seconds: float, rate: int, kill_every: float | None, down: float, workdir: Path) -> dict:
    workdir.mkdir(parents=True)
    source = workdir / "in.log"
    source.touch()
    port = free_port()
    state = workdir / "state"
    receiver = Receiver(state, port).start()
    rsyslog = Rsyslog(workdir / "rsyslog", source, port).start()
    sent, kills, began = 0, 0, time.monotonic()
    next_kill = began + kill_every if kill_every else float("inf")
    restart_at = None
    lag_samples = []
    try:
        while time.monotonic() - began < seconds:  # the sender keeps its rate while siem-gad is down
            tick = time.monotonic()
            due = int((tick - began) * rate)
            write_lines(source, sent, due - sent)
            sent = due
            if tick >= next_kill:
                receiver.kill()
                kills += 1
                restart_at, next_kill = tick + down, tick + kill_every
            if restart_at is not None and tick >= restart_at:
                receiver, restart_at = Receiver(state, port).start(), None
            lag_samples.append(sent - spooled_count(state))
            time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
        if restart_at is not None:
            receiver = Receiver(state, port).start()
        finished = wait_until(lambda: spooled_count(state) >= sent, 300)
        drained = time.monotonic() - began - seconds
        time.sleep(2)
    finally:
        rsyslog.stop()
        receiver.stop()
    counts = Counter(sequence_numbers(spooled_lines(state)))
    missing = sent - len(set(counts) & set(range(sent)))
    twice = sum(1 for c in counts.values() if c > 1)
    return {"seconds": seconds, "rate": rate, "sent": sent, "kills": kills, "finished": finished,
            "lost": missing, "duplicated": twice, "duplicates_dropped": spool_counters(state).get("duplicates", 0),
            "drain_seconds": round(drained, 1), "max_backlog_lines": max(lag_samples or [0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=2000, help="lines per second")
    parser.add_argument("--kill-every", type=float, default=60, help="seconds between kill -9")
    parser.add_argument("--down", type=float, default=2, help="seconds the receiver stays dead")
    parser.add_argument("--load", type=int, default=0, help="CPU burners running beside it")
    parser.add_argument("--baseline-minutes", type=float, default=1, help="the same stream without kills")
    args = parser.parse_args()
    missing = rsyslog_available()
    if missing:
        sys.exit(missing)
    with cpu_load(args.load, 60 * (args.minutes + args.baseline_minutes) + 600), tempfile.TemporaryDirectory() as tmp:
        base = soak(60 * args.baseline_minutes, args.rate, None, 0, Path(tmp) / "baseline")
        killed = soak(60 * args.minutes, args.rate, args.kill_every, args.down, Path(tmp) / "soak")
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "load": args.load,
              "command": " ".join(["bench/syslog_soak.py", *sys.argv[1:]]), "baseline": base, "soak": killed}
    RESULTS.parent.mkdir(exist_ok=True)
    name = RESULTS if not args.load else RESULTS.with_name(f"syslog_soak-load{args.load}.json")
    name.write_text(json.dumps(result, indent=2) + "\n")
    print("| run | minutes | lines/s | sent | kill -9 | lost | duplicated | resends dropped | max backlog | drain after end |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, r in (("no kills (baseline)", base), ("kill -9 every %gs" % args.kill_every, killed)):
        print(f"| {label} | {r['seconds'] / 60:g} | {r['rate']} | {r['sent']} | {r['kills']} | {r['lost']} | "
              f"{r['duplicated']} | {r['duplicates_dropped']} | {r['max_backlog_lines']} | {r['drain_seconds']} s |")
    if killed["lost"] or killed["duplicated"] or not killed["finished"]:
        sys.exit("soak failed: lines lost or duplicated")


if __name__ == "__main__":
    main()
