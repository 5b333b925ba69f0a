"""Config and rule validation: every error names the file, the line and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from siem_gad.config import load_config, validate_components
from siem_gad.plugins import load_host
from siem_gad.rules import load_rules
from siem_gad.yamlfile import ConfigError

from conftest import ROOT, make_config, siem_gad


def problems_of(func, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    return str(info.value)


def test_example_config_is_valid():
    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "config.example.yaml")
    assert validate_components(config, load_host(config.plugins_path)) == []
    assert {r.id for r in load_rules(config).rules} >= {"network-graph-shift", "auth-entity-outlier"}


def test_environment_variables_with_defaults(tmp_path: Path):
    path = make_config(tmp_path)
    text = path.read_text().replace("path: state/alerts.jsonl", "path: ${ALERT_DIR:-fallback}/alerts.jsonl")
    path.write_text(text)
    assert load_config(path, environ={"ALERT_DIR": "/srv/x"}).sinks["alerts"].params["path"] == "/srv/x/alerts.jsonl"
    assert load_config(path, environ={}).sinks["alerts"].params["path"] == "fallback/alerts.jsonl"


def test_missing_environment_variable_names_file_line_and_key(tmp_path: Path):
    path = make_config(tmp_path)
    lines = path.read_text().replace("path: state/alerts.jsonl", "path: ${ALERT_DIR}/alerts.jsonl")
    path.write_text(lines)
    line = next(i for i, text in enumerate(lines.splitlines(), 1) if "ALERT_DIR" in text)
    message = problems_of(load_config, path, environ={})
    assert f"{path}:{line}: sinks.alerts.path: environment variable ALERT_DIR is not set" in message


def test_bad_values_and_unknown_keys_are_reported_together(tmp_path: Path):
    path = make_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["jobs"]["network"]["window"] = "1 hour"
    data["jobs"]["network"]["sheduel"] = "5m"
    data["jobs"]["network"]["source"] = "nowhere"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    message = problems_of(load_config, path)
    assert "jobs.network.window: Value error, expected a duration like '90s', '15m', '1h', '2d' or '1w', got '1 hour'" in message
    assert "jobs.network.sheduel: unknown key" in message
    path.write_text(path.read_text().replace("sheduel: 5m\n", "").replace("window: 1 hour", "window: 1h"))
    assert "jobs.network.source: no source named 'nowhere' (defined: sim)" in problems_of(load_config, path)


def test_component_parameters_are_validated_by_the_plugin_class(tmp_path: Path):
    path = make_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["jobs"]["network"]["detectors"]["gcn_hmm"]["epochs"] = 0
    data["jobs"]["network"]["detectors"]["iforest"]["n_trees"] = 5
    data["jobs"]["network"]["graph"]["type"] = "bipartit"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(path)
    messages = "\n".join(str(p) for p in validate_components(config, load_host(None)))
    assert "jobs.network.detectors.gcn_hmm.epochs: Input should be greater than or equal to 1 (got 0)" in messages
    assert "jobs.network.detectors.iforest.n_trees: unknown key" in messages
    assert "jobs.network.graph.type: unknown graph builder type 'bipartit' (available: bipartite, host_flow, profile, temporal)" in messages
    assert all(f"{path}:" in line for line in messages.splitlines())


def test_invalid_yaml_names_the_line(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("sources:\n  sim: {type: simulate\njobs: []\n")
    assert f"{path}:3: (top level): invalid YAML" in problems_of(load_config, path)


def test_rules_are_checked_against_the_config(tmp_path: Path):
    path = make_config(tmp_path, rules={
        "bad-template": {"name": "x", "job": "network", "detector": "iforest", "message": "{entity} {scroe}"},
        "bad-detector": {"name": "x", "job": "network", "detector": "vae"},
        "bad-threat": {"name": "x", "job": "network", "detector": "iforest", "threat": {"techniques": ["1046"]}},
    })
    message = problems_of(load_rules, load_config(path))
    assert "bad-template.yml:4: message: Value error, unknown placeholder(s) ['scroe']" in message
    assert "bad-detector.yml:3: detector: job 'network' has no detector 'vae' (detectors: gcn_hmm, iforest)" in message
    assert "bad-threat.yml:6: threat.techniques[0]: String should match pattern" in message


def test_check_command_exits_non_zero_with_the_problems(tmp_path: Path):
    from conftest import siem_gad

    path = make_config(tmp_path)
    path.write_text(path.read_text().replace("window: 1h", "window: soon"))
    result = siem_gad("check", "-c", str(path), check=False)
    assert result.returncode == 1
    assert "jobs.network.window" in result.stderr and "got 'soon'" in result.stderr


@pytest.mark.parametrize("example", ["config.example.yaml", "examples/elastic.yaml", "examples/syslog.yaml"])
def test_shipped_example_configs_are_valid(example: str):
    result = siem_gad("check", "-c", str(ROOT / example), env={"ES_API_KEY": "not-a-real-key"})
    assert "OK" in result.stdout
