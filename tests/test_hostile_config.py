"""A careless or hostile operator: alias bombs, unwritable state, credentials in URLs (issue 17)."""

from __future__ import annotations

import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_config, siem_gad
from siem_gad.redact import redact
from siem_gad.yamlfile import ConfigError, load_yaml

BOMB = "".join(f"{chr(97 + n)}: &{chr(97 + n)} [" + ",".join([f"*{chr(96 + n)}"] * 9 if n else ['"lol"'] * 9) + "]\n"
               for n in range(9))


def _capped(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """siem-gad under a 1 GiB address-space cap: an expanding bomb would die of MemoryError."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([sys.executable, "-m", "siem_gad", *args], cwd=cwd, capture_output=True, text=True,
                          preexec_fn=limit, timeout=60)


@pytest.mark.parametrize("where", ["config", "rule"])
def test_a_yaml_alias_bomb_is_refused_quickly_naming_the_file(tmp_path: Path, where: str):
    """Defect 17.8: an alias bomb exhausted memory in `check` and `run` (MemoryError after 19 s)."""
    config = make_config(tmp_path / "deploy")
    target = config if where == "config" else config.parent / "rules" / "graph-shift.yml"
    target.write_text(target.read_text() + BOMB.replace("a:", "zz_a:", 1) if where == "config" else BOMB)
    for command in ("check", "run"):
        result = _capped(command, "-c", str(config), *(["--once"] if command == "run" else []), cwd=config.parent)
        assert result.returncode != 0
        assert f"{target}:" in result.stderr and "alias bomb" in result.stderr, result.stderr[-2000:]
        assert "MemoryError" not in result.stderr and "Traceback" not in result.stderr


def test_recursive_aliases_and_huge_files_are_refused(tmp_path: Path):
    recursive = tmp_path / "loop.yaml"
    recursive.write_text("a: &x\n  b: *x\n")
    with pytest.raises(ConfigError, match="recursive alias"):
        load_yaml(recursive)
    huge = tmp_path / "huge.yaml"
    huge.write_text("k: " + "x" * (5 << 20))
    with pytest.raises(ConfigError, match="limited to"):
        load_yaml(huge)
    plain = tmp_path / "ok.yaml"
    plain.write_text("base: &base {a: 1}\nuse: *base\nlist: [*base, *base]\n")
    assert load_yaml(plain).data["list"] == [{"a": 1}, {"a": 1}]  # ordinary aliases still work


@pytest.mark.parametrize("state_dir", ["config.yaml/state", "/proc/siem-gad-state"])
def test_an_unwritable_state_dir_is_a_config_error_in_check_and_run(tmp_path: Path, state_dir: str):
    """Defect 17.9: `check` accepted an unwritable state_dir and `run` printed a traceback."""
    config = make_config(tmp_path / "deploy")
    text = config.read_text().replace("state_dir: state", f"state_dir: {state_dir}")
    config.write_text(text)
    for command in (["check"], ["run", "--once"]):
        result = siem_gad(*command, "-c", str(config), cwd=config.parent, check=False)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert f"{config}:1: state_dir:" in result.stderr and "siem-gad-state" in result.stderr or \
            "is not a directory" in result.stderr, result.stderr


SECRET = "Pa55-w0rd-XYZ"


def test_credentials_in_a_host_url_never_reach_logs_errors_or_state(tmp_path: Path):
    """Defect 17.7: `http://user:PASSWORD@host:9200` appeared in run warnings and errors, in
    `setup` errors and in the state database shown by `status --json`."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://elastic:{SECRET}@127.0.0.1:{port}"
    deploy = tmp_path / "deploy"
    config = make_config(deploy)
    data = yaml.safe_load(config.read_text())
    data["sinks"] = {"alerts": {"type": "elasticsearch", "hosts": [url], "retry": {"attempts": 2, "initial": 0.01,
                                                                                "maximum": 0.02}}}
    data["sources"]["siem"] = {"type": "elasticsearch", "hosts": [url], "index": "logs-*",
                               "retry": {"attempts": 2, "initial": 0.01, "maximum": 0.02}}
    data["jobs"]["other"] = {**data["jobs"]["network"], "source": "siem"}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    outputs = []
    for command in (["setup"], ["run", "--once"], ["--log-format", "json", "run", "--once"], ["status", "--json"],
                    ["--log-level", "DEBUG", "setup"]):
        result = siem_gad(*command, "-c", str(config), cwd=deploy, check=False)
        outputs.append(result.stdout + result.stderr)
    joined = "\n".join(outputs)
    assert "127.0.0.1" in joined and "elastic:***@" in joined  # the errors still say where
    assert SECRET not in joined
    assert "Traceback" not in "\n".join(outputs[:4])  # one line per failed try, not a urllib3 dump
    for path in (deploy / "state").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    rows = sqlite3.connect(deploy / "state" / "state.sqlite").execute("SELECT message FROM passes").fetchall()
    assert rows and any("***" in (message or "") for (message,) in rows)


@pytest.mark.parametrize("text, expected", [
    ("GET https://u:p@h:9200/x failed", "GET https://u:***@h:9200/x failed"),
    ("hosts: ['http://a:b@c', 'http://d:e@f']", "hosts: ['http://a:***@c', 'http://d:***@f']"),
    ("no url here: user@example.com", "no url here: user@example.com"),
    ("http://host:9200/ has no credentials", "http://host:9200/ has no credentials"),
])
def test_redact_masks_only_passwords_in_urls(text: str, expected: str):
    assert redact(text) == expected


def test_the_non_specific_tag_is_refused_naming_its_line(tmp_path: Path):
    """`a: !` was an empty string to libyaml and null to PyYAML's own parser (found by the fuzz
    suite): one file, two configurations. It is refused with its line."""
    path = tmp_path / "config.yaml"
    path.write_text("sources:\n  sim: {type: simulate}\njobs:\n  net: !\n")
    with pytest.raises(ConfigError, match=r"config.yaml:4: .*non-specific tag '!' is not allowed"):
        load_yaml(path)
