"""The `beacon` detector: clock-like connections (C&C beaconing), not popular pollers."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from siem_gad.detectors.beacon import BeaconDetector
from siem_gad.graphs import WindowGrid
from siem_gad.graphs.temporal import TemporalGraphBuilder
from siem_gad.simulator import BEACON_IP, Enterprise

HOURS = 36
POLLED_IP = "10.0.0.123"  # an update server every workstation polls


def with_pollers(enterprise: Enterprise, events: pd.DataFrame, port: int = 8530) -> pd.DataFrame:
    """Every workstation polls one update server every 64 s (a benign clock of its own)."""
    rng = np.random.default_rng(0)
    rows = []
    for host in enterprise.ws_ips:
        ticks = np.arange(0, HOURS * 3600 - 64, 64.0)
        seconds = ticks + rng.uniform(0, 60) + rng.normal(0, 0.3, len(ticks))
        rows.append(pd.DataFrame({"@timestamp": pd.Timestamp(enterprise.start) + pd.to_timedelta(seconds, unit="s"),
                                  "source.ip": host, "destination.ip": POLLED_IP, "destination.port": port}))
    polls = pd.concat(rows, ignore_index=True)
    polls["event.id"] = [f"poll-{i}" for i in range(len(polls))]
    both = pd.concat([events, polls], ignore_index=True)
    return both.sort_values("@timestamp", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def beacon_run():
    enterprise = Enterprise(seed=3, hosts=20, hours=HOURS)
    events = with_pollers(enterprise, enterprise.events(enterprise.start, enterprise.end))
    windows = TemporalGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), HOURS))
    model = BeaconDetector().fit(windows[:24])
    return enterprise, events, windows, model


def test_the_simulated_beacon_ranks_first_in_every_hour_it_runs(beacon_run):
    enterprise, events, windows, model = beacon_run
    first, last = enterprise.attack_hours()["beaconing"]
    victim = enterprise.attack_entities()["beaconing"]["source.ip"]
    assert first >= 24  # scored after training, as deployed
    for window in windows[first:min(last, HOURS - 1) + 1]:
        scores = model.score([window])[0]
        top = int(np.argmax(scores))
        assert str(window.node_value[top]) == victim and scores[top] > model.threshold_
        explanation = model.explain(window, top)
        assert explanation.extra["destination"] == BEACON_IP
        assert abs(explanation.extra["period_s"] - 60) < 3 and explanation.extra["connections"] >= 50
        beacon_ids = set(events.loc[events["destination.ip"] == BEACON_IP, "event.id"])
        assert explanation.evidence and set(explanation.evidence) <= beacon_ids
        assert "every 60 s" in explanation.summary


def test_popular_pollers_and_ordinary_traffic_stay_below_the_threshold(beacon_run):
    enterprise, _, windows, model = beacon_run
    victim = enterprise.attack_entities()["beaconing"]["source.ip"]
    polls = [p for w in windows[24:] for p in model.regular_pairs(w) if str(w.node_value[p["destination"]]) == POLLED_IP]
    assert polls and all(p["raw_score"] > model.threshold_ for p in polls)  # regular, as clocks are
    assert all(p["score"] < model.threshold_ for p in polls)  # but every workstation polls that server
    others = sum(int((s[np.asarray(w.node_value).astype(str) != victim] > model.threshold_).sum())
                 for w, s in zip(windows[24:], model.score(windows[24:])))
    assert others <= 2 * (HOURS - 24) / 24 + 1  # at most 2 other alerts a day


def test_a_new_pollers_destination_is_not_excused_and_the_model_reloads(beacon_run, tmp_path):
    enterprise, _, windows, model = beacon_run
    assert model.destination_weight(BEACON_IP) == 1.0  # training never saw the C&C address
    assert model.destination_weight(POLLED_IP) < 0.05
    model.save(tmp_path / "beacon.pt")
    loaded = BeaconDetector.load(tmp_path / "beacon.pt")
    for a, b in zip(loaded.score(windows[24:]), model.score(windows[24:])):
        assert np.array_equal(a, b)


def test_one_hosts_ntp_is_not_judged_however_regular():
    """A capture of one device: popularity cannot excuse its NTP servers, the port does."""
    enterprise = Enterprise(seed=3, hosts=10, hours=4, attacks=False)
    events = enterprise.events(enterprise.start, enterprise.end)
    alone = with_pollers(enterprise, events.iloc[:0], port=123)
    alone = alone[alone["source.ip"] == enterprise.ws_ips[0]]
    windows = TemporalGraphBuilder().build(alone, WindowGrid(enterprise.start, timedelta(hours=1), 4))
    assert all(int((w.edge_port == 123).sum()) == w.num_edges > 50 for w in windows)
    model = BeaconDetector().fit(windows[:2])
    assert all(not model.regular_pairs(w) for w in windows)
    assert model.set_params(ignore_ports=[]).regular_pairs(windows[3])[0]["score"] > model.threshold_


def test_beacon_needs_timed_edges():
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder

    enterprise = Enterprise(seed=3, hosts=10, hours=2)
    events = enterprise.events(enterprise.start, enterprise.end)
    windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), 2))
    with pytest.raises(ValueError, match="temporal"):
        BeaconDetector().fit(windows)


def markdown_rows(printed: str, header: str) -> list[list[str]]:
    """The cells of the rows of the Markdown table whose header starts with `header`."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.needs_data("iot23", "luflow")
def test_reduced_beacon_benchmark_finds_the_beacons_and_stays_quiet(capsys):
    """bench/beacon.py with 20,000 LUFlow flows a day: issue 20's beacon points, deployment-style
    (trained on the first quarter of each run, scoring the rest)."""
    from beacon import main
    from flow_data import IOT23_CC_NETWORK

    main(["--luflow-rows", "20000"])
    printed = capsys.readouterr().out
    [(scored, first, missed, *_)] = markdown_rows(printed, "| beacon windows scored")
    assert int(scored) > 0 and first == scored and missed == "0"  # first among its window's alerts, every hour
    captures = {row[0]: row for row in markdown_rows(printed, "| capture |")}
    for capture in ("CTU-Malware-Capture-34-1", "CTU-Malware-Capture-42-1"):  # their C&C edges are found
        _, _, cc_windows, destinations, *_ = captures[capture]
        assert int(cc_windows) > 0 and all(d.startswith(IOT23_CC_NETWORK) for d in destinations.split(", "))
    for capture in ("CTU-Honeypot-Capture-4-1", "CTU-Honeypot-Capture-5-1", "CTU-Honeypot-Capture-7-1"):
        assert float(captures[capture][5]) <= 2  # distinct alerted sources per day: what a rule would send
    days = markdown_rows(printed, "| day | malicious flows")
    benign = [row for row in days if row[1] == "0"]
    assert len(benign) == 4 and all(float(row[4]) <= 2 for row in benign)
