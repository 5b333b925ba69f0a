"""The `beacon` detector as deployed: trained on the first windows, scoring what follows.

- Simulator (the default enterprise, 40 hosts, 72 h): the beacon's rank among the alerts of
  each window it runs in, and the other alerts per day.
- IoT-23, every capture: whether the C&C edges are found (34-1: 185.244.25.235, 42-1:
  185.244.25.183, the network `flow_data.IOT23_CC_NETWORK`), and alerts per day on the rest
  (the honeypot captures hold no attack: every alert there is a false positive).
- LUFlow, every day: alerts per day (addresses are AS numbers there: a pair is AS to AS).

Baseline, in the same run: the same pairs scored by volume alone, log2(connections) x the same
popularity weight at the same threshold (regularity ignored): what a "busiest new pair" rule
would send. The detector has no randomness, so there are no seeds to take a median over.

An alert is a (source, window) whose score exceeds the threshold; "sources per day" counts
distinct alerted sources, what a rule suppressing an entity for 24 h would send. Windows of
one hour; training on the first quarter of each capture or day (at least one window).

    .venv/bin/python bench/beacon.py [--luflow-rows 300000]

`test_reduced_beacon_benchmark_finds_the_beacons_and_stays_quiet` runs it with 20,000 LUFlow
flows a day.

Prints Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flow_data import IOT23_CAPTURES, IOT23_CC_NETWORK, LUFLOW_DAYS, iot23, luflow  # noqa: E402
from graph_detectors import build  # noqa: E402

from siem_gad.detectors.beacon import BeaconDetector  # noqa: E402
from siem_gad.graphs import WindowGrid  # noqa: E402
from siem_gad.graphs.temporal import TemporalGraphBuilder  # noqa: E402
from siem_gad.simulator import BEACON_IP, Enterprise  # noqa: E402

HOUR = timedelta(hours=1)


def volume_score(pair: dict) -> float:
    """The baseline: the pair's connections alone (log2), with the same popularity weight."""
    return float(np.log2(pair["connections"])) * pair["weight"]


def alerts_of(model: BeaconDetector, windows, baseline: bool = False) -> list[dict]:
    out = []
    for window in windows:
        for pair in model.regular_pairs(window):
            if (volume_score(pair) if baseline else pair["score"]) > model.threshold_:
                out.append({"window": window.start, "day": window.start.date(), "score": pair["score"],
                            "source": str(window.node_value[pair["source"]]),
                            "destination": str(window.node_value[pair["destination"]]), "period": pair["period"]})
    return out


def per_day(alerts: list[dict], windows) -> tuple[float, float]:
    """(alerts per day, distinct alerted sources per day) over the scored days."""
    days = max(len({w.start.date() for w in windows}), 1)
    per_source = {(a["day"], a["source"]) for a in alerts}
    return len({(a["window"], a["source"]) for a in alerts}) / days, len(per_source) / days


def trained(windows) -> tuple[BeaconDetector, list]:
    cut = max(1, len(windows) // 4)
    return BeaconDetector().fit(windows[:cut]), windows[cut:]


def simulator() -> None:
    enterprise = Enterprise(seed=7, hosts=40, hours=72)
    events = enterprise.events(enterprise.start, enterprise.end)
    windows = TemporalGraphBuilder().build(events, WindowGrid(enterprise.start, HOUR, 72))
    model = BeaconDetector().fit(windows[:48])
    victim = enterprise.attack_entities()["beaconing"]["source.ip"]
    first, last = enterprise.attack_hours()["beaconing"]
    baseline_others = sum(a["source"] != victim for a in alerts_of(model, windows[48:], baseline=True))
    ranks, others = [], []
    for window in windows[48:]:
        scores = model.score([window])[0]
        alerted = np.flatnonzero(scores > model.threshold_)
        names = window.node_value[alerted].astype(str)
        ranked = names[np.argsort(-scores[alerted], kind="stable")].tolist()
        if first <= window.index <= last:
            ranks.append(ranked.index(victim) + 1 if victim in ranked else None)
        others += [n for n in ranked if n != victim]
    days = len(windows[48:]) / 24
    print("Simulator (40 hosts, 72 h; trained on hours 0-47, scored 48-71):")
    print("| beacon windows scored | beacon ranked first | beacon missed | other alerts per day | "
          "volume baseline: other alerts per day |")
    print("|---|---|---|---|---|")
    print(f"| {len(ranks)} | {sum(r == 1 for r in ranks)} | {sum(r is None for r in ranks)} | {len(others) / days:.1f} | "
          f"{baseline_others / days:.1f} |")
    print(f"(beacon: {victim} -> {BEACON_IP}, every 60 s +- 3 s)\n")


def iot23_captures() -> None:
    print("IoT-23 (trained on the first quarter of each capture's hours, scored on the rest):")
    print("| capture | scored hours | C&C found (windows) | C&C destinations alerted | other alerts per day | "
          "other sources per day | volume baseline: C&C windows / other alerts per day |")
    print("|---|---|---|---|---|---|---|")
    for capture in IOT23_CAPTURES:
        windows = build(TemporalGraphBuilder(), iot23(capture), HOUR)
        model, scored = trained(windows)
        alerts = alerts_of(model, scored)
        cc = [a for a in alerts if a["destination"].startswith(IOT23_CC_NETWORK)]
        rest = [a for a in alerts if not a["destination"].startswith(IOT23_CC_NETWORK)]
        rate, sources = per_day(rest, scored)
        base = alerts_of(model, scored, baseline=True)
        base_cc = {a["window"] for a in base if a["destination"].startswith(IOT23_CC_NETWORK)}
        base_rate, _ = per_day([a for a in base if not a["destination"].startswith(IOT23_CC_NETWORK)], scored)
        print(f"| {capture} | {len(scored)} | {len({a['window'] for a in cc})} | "
              f"{', '.join(sorted({a['destination'] for a in cc})) or '-'} | {rate:.1f} | {sources:.1f} | "
              f"{len(base_cc)} / {base_rate:.1f} |")
    print()


def luflow_days(rows: int | None) -> None:
    print(f"LUFlow ({'first ' + format(rows, ',') + ' flows of ' if rows else ''}each day; trained on its first "
          "quarter of hours, scored on the rest):")
    print("| day | malicious flows | scored hours | alerts per day | sources per day | volume baseline: alerts per day |")
    print("|---|---|---|---|---|---|")
    for day in LUFLOW_DAYS:
        flows = luflow(day, rows)
        windows = build(TemporalGraphBuilder(numeric_fields=["source.bytes", "destination.bytes"]), flows, HOUR)
        model, scored = trained(windows)
        rate, sources = per_day(alerts_of(model, scored), scored)
        base_rate, _ = per_day(alerts_of(model, scored, baseline=True), scored)
        print(f"| {day} | {int((flows['label'] == 'malicious').sum()):,} | {len(scored)} | {rate:.1f} | {sources:.1f} | "
              f"{base_rate:.1f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--luflow-rows", type=int, default=300_000, help="flows read per LUFlow day (0: all)")
    args = parser.parse_args(argv)
    simulator()
    iot23_captures()
    luflow_days(args.luflow_rows or None)


if __name__ == "__main__":
    main()
