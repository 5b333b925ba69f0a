"""Command-line behaviour: fast start-up without heavy imports, simulate, help texts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from siem_gad.sources.simulate import SimulateSource

from conftest import ROOT, siem_gad

# The module each library imports only once its code has run: `siem_gad.lazy` puts a lazy
# module object under "numpy" that costs nothing until used, so its name alone proves nothing.
HEAVY = {"numpy": "numpy._core", "pandas": "pandas.core", "pydantic": "pydantic_core", "torch": "torch",
         "torch_geometric": "torch_geometric", "sklearn": "sklearn", "hmmlearn": "hmmlearn", "shap": "shap",
         "numba": "numba"}


def loaded_modules_after(*args: str) -> set[str]:
    """Run the CLI in-process in a fresh interpreter and report which heavy libraries it ran."""
    code = (
        "import sys, json\n"
        "from siem_gad.cli import main\n"
        f"sys.argv = ['siem-gad', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(name for name, marker in {HEAVY!r}.items() if marker in sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def test_help_and_plugins_import_none_of_the_heavy_libraries():
    assert loaded_modules_after("--help") == set()
    assert loaded_modules_after("plugins") == set()


def test_check_imports_only_pydantic_to_validate_the_config():
    assert loaded_modules_after("check", "-c", "config.example.yaml") == {"pydantic"}


def test_every_command_has_help():
    text = siem_gad("--help").stdout
    for command in ("run", "train", "check", "status", "plugins", "simulate"):
        assert command in text
        assert "Usage: siem-gad " + command in siem_gad(command, "--help").stdout


def test_simulate_writes_what_the_source_reads(tmp_path: Path):
    out = tmp_path / "sim.csv"
    siem_gad("simulate", "--out", str(out), "--hours", "3", "--seed", "11", "--hosts", "15")
    written = pd.read_csv(out)
    source = SimulateSource(seed=11, hosts=15, hours=3)
    start, horizon = source.bounds(None)
    read = source.read(start, horizon, None).events
    assert list(written["event.id"]) == list(read["event.id"])
    assert (pd.to_datetime(written["@timestamp"], utc=True) == read["@timestamp"].dt.floor("us")).all()
    assert set(written["labels.attack"]) == {"benign", *source.enterprise.attack_hours()}  # the schedule scales to the run


def test_train_command_records_a_model_version(tmp_path: Path):
    from conftest import make_config

    config = make_config(tmp_path, rules={}, jobs={"network": {
        "source": "sim", "graph": {"type": "bipartite"},
        "detectors": {"iforest": {"type": "iforest", "n_estimators": 50, "training": {"windows": 24}}}}})
    out = siem_gad("train", "-c", str(config), "--from", "2026-01-05T06:00:00Z", "--to", "2026-01-06T00:00:00Z").stdout
    assert "network/iforest: model v1 trained on 2026-01-05T06:00:00Z .. 2026-01-06T00:00:00Z" in out
    status = json.loads(siem_gad("status", "-c", str(config), "--json").stdout)
    assert status[0]["models"][0]["trained_on"] == "2026-01-05T06:00:00Z .. 2026-01-06T00:00:00Z"


def test_json_logs_on_request(tmp_path: Path):
    from conftest import make_config

    config = make_config(tmp_path, sources={"sim": {"type": "simulate", "hours": 4, "hosts": 12}})
    result = siem_gad("--log-format", "json", "run", "-c", str(config), "--once")
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records and all({"@timestamp", "log.level", "log.logger", "message"} <= set(r) for r in records)
    assert any("waiting for training data" in r["message"] for r in records)


def test_help_imports_none_of_the_heavy_libraries():
    """`siem-gad --help` (and listing the commands) loads no numpy, pandas, torch, pydantic or
    scikit-learn: only the command plugins are imported to find their commands."""
    import subprocess
    import sys

    code = ("import contextlib, io, sys\nsys.argv = ['siem-gad', '--help']\nfrom siem_gad.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n    try:\n        main()\n    except SystemExit:\n"
            "        pass\nassert 'deadletter' in out.getvalue() and 'kibana' in out.getvalue(), out.getvalue()\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'torch', 'pydantic', 'sklearn') if m in sys.modules))")
    heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert heavy == "[]"


def test_every_time_option_refuses_a_bad_time_naming_the_option_before_any_work(small_config: Path, tmp_path: Path):
    """`entities --at garbage` used to end in a bare ValueError; every time option now parses
    its value as the command line is read, with one message."""
    for args, option in ((["train", "-c", str(small_config), "--from", "garbage"], "--from"),
                         (["train", "-c", str(small_config), "--to", "yesterday-ish"], "--to"),
                         (["evaluate", "-c", str(small_config), "--label-field", "labels.attack", "--to", "x"], "--to"),
                         (["entities", "-c", str(small_config), "--at", "garbage"], "--at"),
                         (["feedback", "some-alert", "-c", str(small_config), "--verdict", "false_positive",
                           "--until", "later"], "--until"),
                         (["simulate", "--out", str(tmp_path / "x.csv"), "--start", "soon"], "--start")):
        result = siem_gad(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert f"Invalid value for '{option}': expected an ISO 8601 time" in result.stderr, result.stderr
    assert not (tmp_path / "x.csv").exists() and not (small_config.parent / "state").exists(), "work began"
