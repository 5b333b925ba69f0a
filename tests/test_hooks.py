"""One test per hook, named for it: a plugin file implements the hook, the host loads it from a
plugins directory, and the test uses what the hook provided (tests/test_hook_contract.py
fails when a hook has no such test)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from siem_gad.graphs import WindowGrid
from siem_gad.plugins import load_host

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def host_with(tmp_path: Path, code: str):
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "mine.py").write_text("from siem_gad import hookimpl\n" + code)
    host = load_host(plugins, entry_points=False)
    assert not host.failures, host.failures
    return host


def test_register_sources_adds_a_source_type(tmp_path: Path):
    host = host_with(tmp_path, '''
from siem_gad.sources.simulate import SimulateSource

class Tiny(SimulateSource):
    """The simulator, small."""

@hookimpl
def register_sources(register):
    register("tiny", Tiny)
''')
    info = host.components("sources")["tiny"]
    assert info.plugin == "mine"
    source = info.cls(hours=2, hosts=10)
    assert len(source.read(T0, T0 + timedelta(hours=1), None).events) > 0


def test_register_graph_builders_adds_a_builder_type(tmp_path: Path):
    host = host_with(tmp_path, '''
from siem_gad.graphs.bipartite import BipartiteGraphBuilder

class UserHost(BipartiteGraphBuilder):
    pass

@hookimpl
def register_graph_builders(register):
    register("user_host", UserHost)
''')
    builder = host.component("graph_builders", "user_host")(source_field="user.name", target_field="host.name")
    events = pd.DataFrame({"@timestamp": pd.to_datetime([T0, T0 + timedelta(minutes=5)], utc=True),
                           "user.name": ["alice", "bob"], "host.name": ["h1", "h1"], "event.id": ["e1", "e2"]})
    [window] = builder.build(events, WindowGrid(T0, timedelta(hours=1), 1))
    assert sorted(map(str, window.node_value)) == ["alice", "bob", "h1"] and window.num_edges == 2


def test_register_detectors_adds_a_detector_type(tmp_path: Path):
    host = host_with(tmp_path, '''
import numpy as np
from siem_gad.detectors import Detector, Explanation

class Degree(Detector):
    def fit(self, windows, progress=False):
        self.threshold_ = self.threshold_from(np.concatenate([w.x[:, 1] for w in windows]))
        return self

    def score(self, windows):
        return [w.x[:, 1] for w in windows]

    def explain(self, window, item, top_k=5):
        return Explanation(window.entity(item), [{"name": "degree", "value": float(window.x[item, 1]), "weight": 1.0}])

    def get_state(self):
        return {}

    def set_state(self, state):
        pass

@hookimpl
def register_detectors(register):
    register("degree", Degree)
''')
    detector = host.component("detectors", "degree")()
    assert detector.level == "node" and hasattr(detector, "threshold_from")


def test_register_sinks_adds_a_sink_type(tmp_path: Path):
    host = host_with(tmp_path, '''
from siem_gad.sinks import Sink

class Memory(Sink):
    stored = []

    def write(self, alerts):
        self.stored.extend(alerts)
        return len(alerts)

@hookimpl
def register_sinks(register):
    register("memory", Memory)
''')
    sink = host.component("sinks", "memory")()
    assert sink.write([{"siem_gad": {"alert_id": "a"}}]) == 1 and sink.stored


def test_register_log_parsers_adds_a_parser(tmp_path: Path):
    host = host_with(tmp_path, '''
from siem_gad.syslog.parsers import LogParser

class Vpn(LogParser):
    programs = ("openvpn",)

    def parse(self, record):
        return {"event.action": "vpn_login"} if "Initiated" in record.message else None

@hookimpl
def register_log_parsers(register):
    register("vpn", Vpn)
''')
    from siem_gad.syslog.headers import SyslogRecord
    from siem_gad.syslog.parsers import ParserSet

    parsers = ParserSet({name: info.cls for name, info in host.components("log_parsers").items()})
    assert parsers.parse(SyslogRecord(T0, "h", "openvpn", 1, "Peer Connection Initiated")) == {"event.action": "vpn_login"}


def test_enrich_events_changes_the_events_of_a_batch(tmp_path: Path):
    host = host_with(tmp_path, '''
@hookimpl
def enrich_events(events, job):
    return events.assign(**{"labels.job": job})
''')
    events = pd.DataFrame({"source.ip": ["10.0.0.1"]})
    [(plugin, result)] = host.call_each("enrich_events", events=events, job="net")
    assert plugin == "mine" and list(result["labels.job"]) == ["net"]


def test_enrich_alert_changes_an_alert_in_place(tmp_path: Path):
    host = host_with(tmp_path, '''
@hookimpl
def enrich_alert(alert, job):
    alert.setdefault("labels", {})["team"] = "soc-" + job
''')
    alert = {"siem_gad": {"alert_id": "a"}}
    host.call_each("enrich_alert", alert=alert, job="net")
    assert alert["labels"] == {"team": "soc-net"}
