"""Shared fixtures: a small but real configuration on the simulated enterprise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
# The reduced benchmarks run the bench/ scripts' own protocol code: make them importable.
sys.path.insert(0, str(ROOT / "bench"))

# Small enough for CI, large enough that attacks (at 70-97 % of the run) come after training.
SIM = {"type": "simulate", "seed": 3, "hosts": 20, "hours": 36}
TRAIN_WINDOWS = 24


def require_data(*folders: str) -> None:
    """Skip (fail under CI=true) unless ../shared/data holds these folders: the real data sets
    are not part of the repository, and a fresh clone must say what is missing, not crash."""
    missing = [folder for folder in folders if not (SHARED_DATA / folder).exists()]
    if missing:
        message = f"needs the real data set(s) {', '.join(missing)} in {SHARED_DATA}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def require_module(name: str, extra: str):
    """The module `name`, or skip the test module (fail under CI=true, where scripts/setup
    installs every extra) with the command that installs it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"needs {name}, from the {extra!r} extra: pip install -e '.[{extra}]'"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)


def require_program(*names: str, package: str) -> list[str]:
    """The paths of these programs, or skip the test module (fail under CI=true, where .ci/run
    installs them) with the Debian package that has them."""
    import shutil

    found = [shutil.which(name) for name in names]
    if None in found:
        message = f"needs {', '.join(n for n, f in zip(names, found) if f is None)}: apt-get install {package}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs_data"):
        require_data(*mark.args)


def make_config(directory: Path, *, jobs: dict | None = None, sources: dict | None = None, rules: dict | None = None,
                extra: dict | None = None) -> Path:
    """Write config.yaml and rules/*.yml into `directory`; return the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "state_dir": "state",
        "rules_dir": "rules",
        "sources": sources or {"sim": SIM},
        "sinks": {"alerts": {"type": "jsonl", "path": "state/alerts.jsonl"}},
        "jobs": jobs or {
            "network": {
                "source": "sim", "window": "1h", "batch_windows": 6,
                "graph": {"type": "bipartite", "source_field": "source.ip", "target_field": "destination.ip"},
                "detectors": {
                    "gcn_hmm": {"type": "gcn_hmm", "epochs": 40, "training": {"windows": TRAIN_WINDOWS}},
                    "iforest": {"type": "iforest", "n_estimators": 100, "training": {"windows": TRAIN_WINDOWS}},
                },
                "sinks": ["alerts"],
            },
        },
        **(extra or {}),
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rules_dir = directory / "rules"
    rules_dir.mkdir(exist_ok=True)
    default_rules = {
        "graph-shift": {"name": "Graph shift", "job": "network", "detector": "gcn_hmm", "severity": "high",
                        "threat": {"techniques": ["T1046"]}},
        "entity-outlier": {"name": "Entity outlier", "job": "network", "detector": "iforest",
                           "condition": {"top_k": 3}, "suppress": {"period": "6h"}},
    }
    for rule_id, rule in (rules if rules is not None else default_rules).items():
        (rules_dir / f"{rule_id}.yml").write_text(yaml.safe_dump(rule, sort_keys=False))
    return directory / "config.yaml"


def siem_gad(*args: str, cwd: Path | None = None, env: dict | None = None, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess."""
    result = subprocess.run([sys.executable, "-m", "siem_gad", *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"siem-gad {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def wait_for(condition, what: str, timeout: float = 30, interval: float = 0.1) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def read_alerts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    return make_config(tmp_path / "deploy")


# Hypothesis: `ci` keeps the fuzz suite short; `HYPOTHESIS_PROFILE=bench` runs 20x as many examples.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", max_examples=300, deadline=None)
_hypothesis_settings.register_profile("bench", max_examples=6000, deadline=None)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
