"""Plugin discovery, isolation of failing plugins, and every hook exercised for real."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest
import yaml

from siem_gad.graphs.bipartite import NODE_FEATURES
from siem_gad.pipeline import App
from siem_gad.plugins import load_host

from conftest import ROOT, make_config, read_alerts, siem_gad

IFOREST_ONLY = {
    "network": {
        "source": "sim", "window": "1h",
        "graph": {"type": "bipartite"},
        "detectors": {"iforest": {"type": "iforest", "n_estimators": 50, "training": {"windows": 24}}},
        "sinks": ["alerts"],
    }
}
IFOREST_RULE = {"outlier": {"name": "Outlier", "job": "network", "detector": "iforest", "condition": {"top_k": 2}}}

BROKEN_IMPORT = "raise RuntimeError('cannot reach the CMDB')\n"
TYPO = "from siem_gad import hookimpl\n\n@hookimpl\ndef enrich_alertt(alert, job):\n    pass\n"
RAISING = "from siem_gad import hookimpl\n\n@hookimpl\ndef enrich_alert(alert, job):\n    raise KeyError('owner')\n"
TAGGING = '''from siem_gad import hookimpl

@hookimpl
def enrich_events(events, job):
    events["labels.site"] = "lab-" + job
    return events

@hookimpl
def enrich_alert(alert, job):
    alert.setdefault("labels", {})["reviewed_by"] = "tagging-plugin"
'''
COMMAND = '''import click
from siem_gad import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        """Say hello from a plugin."""
        click.echo("hello from a plugin command")
'''


def write_plugins(directory: Path, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / f"{name}.py").write_text(text)
    return directory


def test_builtins_register_through_the_hooks():
    host = load_host(None)
    assert {"gcn_hmm", "iforest"} <= set(host.components("detectors"))
    assert {"csv", "simulate"} <= set(host.components("sources"))
    assert set(host.components("graph_builders")) >= {"bipartite"}
    assert {"jsonl", "stdout"} <= set(host.components("sinks"))
    described = {p["name"]: p for p in host.describe()}
    assert described["siem_gad.detectors.gcn_hmm"]["origin"] == "builtin"
    assert described["siem_gad.detectors.gcn_hmm"]["components"] == {"detectors": ["gcn_hmm"]}


def test_the_builtin_catalog_declares_every_component_class_and_each_reference_resolves():
    import importlib
    import inspect

    from siem_gad.builtins import BUILTIN_COMPONENTS
    from siem_gad.components import Component as ComponentBase
    from siem_gad.detectors import Detector
    from siem_gad.graphs import GraphBuilder
    from siem_gad.plugins import COMPONENT_HOOKS
    from siem_gad.sinks import Sink
    from siem_gad.sources import Source

    from siem_gad.syslog.parsers import LogParser

    bases = {"sources": Source, "graph_builders": GraphBuilder, "detectors": Detector, "sinks": Sink,
             "log_parsers": LogParser}
    host = load_host(None)
    declared = set()
    for module_name, kinds in BUILTIN_COMPONENTS.items():
        assert set(kinds) <= set(COMPONENT_HOOKS)
        for kind, names in kinds.items():
            for name, attr in names.items():
                component = host.components(kind)[name]
                assert component.plugin == module_name
                assert issubclass(component.cls, bases[kind]) and component.cls.__name__ == attr
                declared.add(component.cls)
        module = importlib.import_module(module_name)
        concrete = {cls for _, cls in inspect.getmembers(module, inspect.isclass)
                    if cls.__module__ == module_name and issubclass(cls, (ComponentBase, Detector, LogParser))
                    and not inspect.isabstract(cls)}
        undeclared = concrete - declared
        assert not undeclared, f"{module_name}: {sorted(c.__name__ for c in undeclared)} not in BUILTIN_COMPONENTS"


def test_a_plugin_may_register_a_reference_that_check_reports_when_it_cannot_load(tmp_path: Path):
    lazy = ("from siem_gad import hookimpl\n\n@hookimpl\ndef register_detectors(register):\n"
            "    register('later', 'siem_gad.detectors.iforest:IsolationForestDetector')\n"
            "    register('missing', 'no_such_package.detector:Missing')\n")
    directory = write_plugins(tmp_path / "plugins", lazy=lazy)
    host = load_host(directory)
    assert host.components("detectors")["later"].target == "siem_gad.detectors.iforest:IsolationForestDetector"
    assert host.component("detectors", "later").__name__ == "IsolationForestDetector"
    jobs = {"network": {"source": "sim", "window": "1h", "graph": {"type": "bipartite"},
                        "detectors": {"m": {"type": "missing"}}, "sinks": ["alerts"]}}
    config = make_config(tmp_path, jobs=jobs, rules={})
    result = siem_gad("--plugins-dir", str(directory), "check", "-c", str(config), check=False)
    assert result.returncode == 1
    assert "jobs.network.detectors.m.type" in result.stdout + result.stderr
    assert "detector 'missing' of plugin 'lazy' cannot be loaded from no_such_package.detector:Missing" in result.stdout + result.stderr


def test_failing_plugins_are_reported_by_name_and_left_out(tmp_path: Path):
    directory = write_plugins(tmp_path / "plugins", broken=BROKEN_IMPORT, typo=TYPO, tagging=TAGGING)
    host = load_host(directory)
    failures = {f.plugin: f for f in host.failures}
    assert "RuntimeError: cannot reach the CMDB" in failures["broken"].error
    assert "unknown hook 'enrich_alertt' (did you mean 'enrich_alert'?)" in failures["typo"].error
    assert host.plugins["broken"].status == "failed" and host.plugins["typo"].status == "rejected"
    assert host.plugins["tagging"].status == "loaded"
    assert host.plugins["tagging"].hooks == ["enrich_alert", "enrich_events"]


def test_plugins_command_lists_origin_location_and_status(tmp_path: Path):
    directory = write_plugins(tmp_path / "plugins", broken=BROKEN_IMPORT, tagging=TAGGING)
    listed = json.loads(siem_gad("--plugins-dir", str(directory), "plugins", "--json").stdout)
    by_name = {p["name"]: p for p in listed}
    assert by_name["tagging"]["location"] == str(directory / "tagging.py")
    assert by_name["tagging"]["origin"] == "plugins dir"
    assert by_name["broken"]["status"] == "failed" and "cannot reach the CMDB" in by_name["broken"]["error"]
    text = siem_gad("--plugins-dir", str(directory), "plugins").stdout
    assert "siem_gad.detectors.gcn_hmm" in text and "detectors: gcn_hmm" in text


def test_register_commands_adds_a_cli_command(tmp_path: Path):
    directory = write_plugins(tmp_path / "plugins", greeter=COMMAND)
    assert load_host(directory).plugins["greeter"].hooks == ["register_commands"]
    assert "hello" in siem_gad("--plugins-dir", str(directory), "--help").stdout
    assert siem_gad("--plugins-dir", str(directory), "hello").stdout.strip() == "hello from a plugin command"


def test_entry_point_plugins_are_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    site = tmp_path / "site"
    dist = site / "siem_gad_demo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: siem-gad-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[siem_gad]\ndemo = siem_gad_demo_plugin\n")
    (site / "siem_gad_demo_plugin.py").write_text(
        "from siem_gad import hookimpl\nfrom siem_gad.sinks.stdout import StdoutSink\n\n"
        "class LoudSink(StdoutSink):\n    pass\n\n@hookimpl\ndef register_sinks(register):\n    register('loud', LoudSink)\n")
    monkeypatch.syspath_prepend(str(site))
    host = load_host(None)
    assert host.components("sinks")["loud"].plugin == "demo"
    assert host.plugins["demo"].origin == "entry point (siem-gad-demo)"
    assert host.plugins["demo"].as_dict()["version"] == "1.0"  # what `siem-gad plugins --json` shows
    from siem_gad import __version__

    assert host.plugins["siem_gad.sinks.jsonl"].version == __version__


def test_hooks_run_and_a_raising_plugin_does_not_stop_the_job(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    deploy = tmp_path / "deploy"
    write_plugins(deploy / "plugins", raising=RAISING, tagging=TAGGING, broken=BROKEN_IMPORT)
    config = make_config(deploy, jobs=IFOREST_ONLY, rules=IFOREST_RULE)
    app = App.open(config)
    seen_columns = []
    original = app.job("network").builder.build

    def build_and_record(events, grid):
        seen_columns.append(set(events.columns))
        return original(events, grid)

    app.job("network").builder.build = build_and_record
    with caplog.at_level(logging.ERROR):
        outcome = app.job("network").run_pass()
    app.close()
    assert outcome.status == "ok" and outcome.alerts > 0
    assert all("labels.site" in columns for columns in seen_columns)
    alerts = read_alerts(deploy / "state" / "alerts.jsonl")
    assert alerts and all(a["labels"]["reviewed_by"] == "tagging-plugin" for a in alerts)
    assert "plugin 'raising' failed in enrich_alert: KeyError: 'owner'" in caplog.text


def test_example_asset_inventory_plugin_enriches_alerts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = Path(__file__).resolve().parents[1]
    deploy = tmp_path / "deploy"
    (deploy / "plugins").mkdir(parents=True)
    (deploy / "plugins" / "asset_inventory.py").write_text((root / "plugins" / "asset_inventory.py").read_text())
    (deploy / "plugins" / "assets.csv").write_text("entity,owner,criticality\n10.0.0.60,unix-team,critical\n")
    sys.modules.pop("siem_gad_local_plugins.asset_inventory", None)
    config = make_config(deploy, jobs=IFOREST_ONLY, rules={
        "outlier": {"name": "Outlier", "job": "network", "detector": "iforest", "condition": {"threshold": -1.0}}})
    app = App.open(config)
    app.job("network").run_pass()
    app.close()
    alerts = read_alerts(deploy / "state" / "alerts.jsonl")
    ssh = [a for a in alerts if a["siem_gad"]["entity"]["value"] == "10.0.0.60"]
    other = [a for a in alerts if a["siem_gad"]["entity"]["value"] != "10.0.0.60"]
    assert ssh and all(a["siem_gad"]["asset"] == {"owner": "unix-team", "criticality": "critical"} for a in ssh)
    # a critical asset adds 10 to the detector's risk score; the initial score stays as it was
    assert all(a["event"]["risk_score"] == pytest.approx(min(100.0, a["siem_gad"]["initial_score"] + 10)) for a in ssh)
    assert all(a["event"]["risk_score"] == a["siem_gad"]["initial_score"] for a in other)
    assert other and all("asset" not in a["siem_gad"] for a in other)


THIRD_PARTY = '''
import numpy as np
from siem_gad import hookimpl
from siem_gad.detectors import Detector, Explanation
from siem_gad.graphs.bipartite import BipartiteGraphBuilder
from siem_gad.sources.simulate import SimulateSource


class QuietSim(SimulateSource):
    """The simulator without its attacks."""

    def __init__(self, **params):
        super().__init__(**{**params, "attacks": False})


class UserHostGraph(BipartiteGraphBuilder):
    def __init__(self, **params):
        super().__init__(source_field="source.ip", target_field="destination.ip")


class FanOut(Detector):
    """Scores each entity by its degree, relative to the training maximum."""

    def fit(self, windows, progress=False):
        degrees = np.concatenate([w.x[:, 1] for w in windows])
        self.max_degree_ = float(degrees.max())
        self.threshold_ = self.threshold_from(degrees - self.max_degree_)
        return self

    def score(self, windows):
        return [w.x[:, 1] - self.max_degree_ for w in windows]

    def explain(self, window, item, top_k=5):
        return Explanation(window.entity(item), [{"name": "degree", "value": float(window.x[item, 1]), "weight": 1.0}],
                           summary="fan-out")

    def get_state(self):
        return {"max_degree": self.max_degree_}

    def set_state(self, state):
        self.max_degree_ = state["max_degree"]


@hookimpl
def register_sources(register):
    register("quiet_sim", QuietSim)


@hookimpl
def register_graph_builders(register):
    register("ip_graph", UserHostGraph)


@hookimpl
def register_detectors(register):
    register("fan_out", FanOut)
'''


def test_third_party_source_builder_and_detector_run_a_job(tmp_path: Path):
    deploy = tmp_path / "deploy"
    write_plugins(deploy / "plugins", third_party=THIRD_PARTY)
    config = make_config(
        deploy, sources={"quiet": {"type": "quiet_sim", "hours": 30, "hosts": 12}},
        jobs={"net": {"source": "quiet", "graph": {"type": "ip_graph"},
                      "detectors": {"fan": {"type": "fan_out", "threshold_percentile": 90, "training": {"windows": 24}}}}},
        rules={"fan": {"name": "Fan-out", "job": "net", "detector": "fan", "condition": {"threshold": -100.0, "top_k": 1}}})
    assert "OK" in siem_gad("check", "-c", str(config)).stdout
    siem_gad("run", "-c", str(config), "--once")
    alerts = read_alerts(deploy / "state" / "alerts.jsonl")
    # one per window after the 24 it trained on (top_k 1): the quiet simulator has traffic every hour
    assert len(alerts) == 6
    assert {a["siem_gad"]["detector_type"] for a in alerts} == {"fan_out"}
    status = json.loads(siem_gad("status", "-c", str(config), "--json").stdout)
    assert status[0]["models"][0]["state"] == "current" and status[0]["checkpoint"] == "2026-01-06T06:00:00Z"


def test_register_commands_beside_the_config_add_commands(tmp_path: Path):
    """One plugins-directory rule for every command: `plugins/` beside the config adds its
    commands when the config is given (it used to look only in the working directory)."""
    deploy = tmp_path / "deploy"
    config = make_config(deploy)
    write_plugins(deploy / "plugins", greeter=COMMAND.replace("    @cli.command()\n", "    @cli.command()\n    @click.option('-c', '--config')\n").replace("def hello():", "def hello(config):"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert siem_gad("hello", "-c", str(config), cwd=elsewhere, check=False).stdout.strip() == "hello from a plugin command"
    assert "hello" not in siem_gad("--help", cwd=elsewhere).stdout  # no config, no plugins/ here
    other = write_plugins(tmp_path / "other", nothing="x = 1\n")
    refused = siem_gad("--plugins-dir", str(other), "hello", "-c", str(config), cwd=elsewhere, check=False)
    assert refused.returncode != 0 and "No such command 'hello'" in refused.stderr  # --plugins-dir replaces it


def doc_block(marker: str) -> str:
    """The fenced code block of docs/plugins.md whose first line is `marker`."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    for block in re.findall(r"```(?:python|yaml)\n(.*?)```", text, re.S):
        if block.startswith(marker):
            return block
    raise AssertionError(f"docs/plugins.md has no block starting {marker!r}")


def test_register_detectors_example_in_the_plugin_guide_runs_as_written(tmp_path: Path):
    """The custom detector of docs/plugins.md, copied verbatim into plugins/, with the config and
    rule the guide shows: check, run and explain work, and the alerts come from it."""
    assert "def register_detectors(register):" in doc_block("# plugins/fan_out.py")
    deploy = tmp_path / "deploy"
    write_plugins(deploy / "plugins", fan_out=doc_block("# plugins/fan_out.py"))
    excerpt = yaml.safe_load(doc_block("# config.yaml"))
    rule = yaml.safe_load("\n".join(line.removeprefix("#   ") for line in doc_block("# config.yaml").splitlines()
                                    if line.startswith("#   ")))
    jobs = excerpt["jobs"]
    jobs["network"]["graph"].update(source_field="source.ip", target_field="destination.ip")
    config = make_config(deploy, sources={"sim": {"type": "simulate", "seed": 3, "hosts": 20, "hours": 36}}, jobs=jobs,
                         rules={"fan-out": {**rule, "condition": {"top_k": 1}}})
    assert "OK" in siem_gad("check", "-c", str(config)).stdout
    siem_gad("run", "-c", str(config), "--once")
    alerts = read_alerts(deploy / "state" / "alerts.jsonl")
    assert alerts and {a["siem_gad"]["detector_type"] for a in alerts} == {"fan_out"}
    assert all(a["siem_gad"]["explanation"][0]["name"] == "degree" for a in alerts)
    explained = siem_gad("explain", alerts[0]["siem_gad"]["alert_id"], "-c", str(config)).stdout
    assert "degree" in explained


NAN_BUILDER = '''
import numpy as np
from siem_gad.hookspecs import hookimpl
from siem_gad.graphs.bipartite import BipartiteGraphBuilder


class RatioGraph(BipartiteGraphBuilder):
    """A plugin builder with a bug: a ratio feature divides by zero in one window."""

    def build(self, events, grid):
        windows = super().build(events, grid)
        for window in windows:
            if window.start.isoformat() == "2026-01-06T05:00:00+00:00" and window.num_nodes:
                window.x[0, 1] = np.nan
        return windows


@hookimpl
def register_graph_builders(register):
    register("ratio_graph", RatioGraph)
'''


def test_a_builder_whose_features_are_not_finite_fails_naming_builder_window_and_feature(tmp_path: Path):
    """A NaN feature fails nowhere by itself: a model trained on it scores NaN, which never
    crosses a threshold, so detection would stop without a word. The pipeline checks what
    builders return, names the builder, window and feature, and commits nothing past them."""
    deploy = tmp_path / "deploy"
    write_plugins(deploy / "plugins", nan_builder=NAN_BUILDER)
    config = make_config(
        deploy, sources={"sim": {"type": "simulate", "hours": 36, "hosts": 12}},
        jobs={"net": {"source": "sim", "graph": {"type": "ratio_graph"},
                      "detectors": {"forest": {"type": "iforest", "training": {"windows": 24}}}}},
        rules={"forest": {"name": "Outlier", "job": "net", "detector": "forest", "condition": {"top_k": 1}}})
    result = siem_gad("run", "-c", str(config), "--once", check=False)
    assert result.returncode != 0
    assert re.search(rf"graph builder RatioGraph \(job net\), window 2026-01-06T05:00:00\+00:00: 1 of \d+ rows .* '{NODE_FEATURES[1]}' "
                     r"\(value nan\)", result.stderr + result.stdout), result.stderr[-3000:]
    status = json.loads(siem_gad("status", "-c", str(config), "--json").stdout)
    assert status[0]["checkpoint"] is None or status[0]["checkpoint"] <= "2026-01-06T05:00:00Z"
