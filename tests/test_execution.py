"""`execution: {engine: ray}`: training and scoring on a real local Ray give the models and
alerts of the local engine, also when a worker dies mid-fit or mid-scoring; without Ray
installed, `check` says so."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from siem_gad.pipeline import App
from siem_gad.scheduler import run_once

from conftest import ROOT, SHARED_DATA, make_config, read_alerts, require_module

ray = require_module("ray", extra="ray")

# A detector whose first fit kills the worker process running it, as SIGKILL or an OOM kill
# would; the marker file makes the retry behave.
DYING = '''import os
from pathlib import Path

from siem_gad import hookimpl
from siem_gad.detectors.iforest import IsolationForestDetector

MARKER = Path(os.environ["SIEM_GAD_TEST_MARKER"])


class DyingOnce(IsolationForestDetector):
    """Kills its worker the first time it fits, and the first time a pass scores with it."""

    def fit(self, windows, progress=False):
        self._die_once(MARKER)
        self._fitting = True  # the training scores are not the pass's
        try:
            return super().fit(windows, progress)
        finally:
            self._fitting = False

    def score(self, windows):
        if not getattr(self, "_fitting", False):
            self._die_once(MARKER.with_suffix(".score"))
        return super().score(windows)

    @staticmethod
    def _die_once(marker):
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(9)


@hookimpl
def register_detectors(register):
    register("dying_once", DyingOnce)
'''


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray with two CPUs for these tests (the executor joins it). Yields the marker
    file of `DYING`, named in the environment before the workers start, so they inherit it."""
    marker = tmp_path_factory.mktemp("ray") / "killed-worker-pid"
    os.environ["SIEM_GAD_TEST_MARKER"] = str(marker)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield marker
    ray.shutdown()
    del os.environ["SIEM_GAD_TEST_MARKER"]


def run_job(directory: Path, engine: str, jobs: dict | None = None) -> tuple[list[dict], dict[str, float]]:
    config = make_config(directory, jobs=jobs, extra={"execution": {"engine": engine}})
    app = App.open(config)
    try:
        outcomes = run_once(app, list(app.config.jobs), threading.Event())
        assert all(o.status == "ok" for o in outcomes), outcomes
        assert app.executor().engine == engine
        if engine == "ray":  # iforest scored in Ray tasks; gcn_hmm, a sequence model, in the driver
            assert app.executor().scored_runs > 0
        thresholds = {f"{job}/{name}": app.state.latest_model(job, name).metrics["threshold"]
                      for job, spec in app.config.jobs.items() for name in spec.detectors}
    finally:
        app.close()
    return read_alerts(directory / "state" / "alerts.jsonl"), thresholds


def alert_scores(alerts: list[dict]) -> dict[str, float]:
    return {a["siem_gad"]["alert_id"]: a["siem_gad"]["score"] for a in alerts}


def test_training_on_ray_gives_the_models_and_alerts_of_the_local_engine(tmp_path: Path, ray_cluster):
    local_alerts, local_thresholds = run_job(tmp_path / "local", "local")
    ray_alerts, ray_thresholds = run_job(tmp_path / "ray", "ray")
    assert local_alerts and set(local_thresholds) == {"network/gcn_hmm", "network/iforest"}
    assert ray_thresholds == local_thresholds
    assert alert_scores(ray_alerts) == alert_scores(local_alerts)
    assert ray.cluster_resources()["CPU"] == 2  # the executor joined the test's cluster, started none


def test_a_worker_killed_mid_fit_or_mid_scoring_is_retried_and_nothing_changes(tmp_path: Path, ray_cluster):
    marker = ray_cluster
    jobs = {"network": {"source": "sim", "window": "1h", "batch_windows": 6,
                        "graph": {"type": "bipartite"},
                        "detectors": {"iforest": {"type": "dying_once", "training": {"windows": 24}}},
                        "sinks": ["alerts"]}}
    rules = {"outlier": {"name": "Outlier", "job": "network", "detector": "iforest", "condition": {"top_k": 2}}}
    results = {}
    for engine in ("ray", "local"):
        directory = tmp_path / engine
        (directory / "plugins").mkdir(parents=True)
        (directory / "plugins" / "dying.py").write_text(DYING)
        config = make_config(directory, jobs=jobs, rules=rules, extra={"execution": {"engine": engine}})
        if engine == "local":
            assert marker.exists() and marker.with_suffix(".score").exists()  # the Ray run's first attempts died
        app = App.open(config)
        try:
            assert all(o.status == "ok" for o in run_once(app, ["network"], threading.Event()))
            results[engine] = app.state.latest_model("network", "iforest").metrics["threshold"]
        finally:
            app.close()
        results[engine, "alerts"] = alert_scores(read_alerts(directory / "state" / "alerts.jsonl"))
    killed = {int(marker.read_text()), int(marker.with_suffix(".score").read_text())}
    assert os.getpid() not in killed  # Ray worker processes died, not the driver
    assert results["ray"] == results["local"]
    assert results["ray", "alerts"] == results["local", "alerts"] and results["ray", "alerts"]


def test_check_fails_cleanly_when_engine_ray_is_asked_without_ray_installed(tmp_path: Path):
    config = make_config(tmp_path, extra={"execution": {"engine": "ray", "workers": 2}})
    code = ("import sys\nsys.modules['ray'] = None  # as if the extra were not installed\n"
            "from siem_gad.cli import main\n"
            f"sys.argv = ['siem-gad', 'check', '-c', {str(config)!r}]\nmain()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "execution.engine" in out and "pip install 'siem-gad[ray]'" in out
    assert "Traceback" not in out
    # and with Ray installed the same config is valid
    assert subprocess.run([sys.executable, "-m", "siem_gad", "check", "-c", str(config)], capture_output=True,
                          text=True, cwd=ROOT).returncode == 0


def test_the_execution_section_is_validated(tmp_path: Path):
    config = make_config(tmp_path, extra={"execution": {"engine": "spark", "workers": 0}})
    result = subprocess.run([sys.executable, "-m", "siem_gad", "check", "-c", str(config)], capture_output=True,
                            text=True, cwd=ROOT)
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "execution.engine" in out and "execution.workers" in out, out
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["execution"]["engine"] == "spark"


@pytest.mark.needs_data("iot23")
def test_an_iot23_capture_through_the_csv_source_gives_the_same_alerts_on_ray(tmp_path: Path, ray_cluster):
    capture = SHARED_DATA / "iot23" / "CTU-Malware-Capture-42-1-labeled.csv"
    source = {"type": "csv", "path": str(capture), "timestamp_field": "ts", "timestamp_format": "epoch_s",
              "id_field": "uid", "field_map": {"id.orig_h": "source.ip", "id.resp_h": "destination.ip",
                                               "id.resp_p": "destination.port", "proto": "network.transport",
                                               "orig_bytes": "network.bytes"}}
    jobs = {"network": {"source": "flows", "window": "1h",
                        "graph": {"type": "bipartite", "source_field": "source.ip", "target_field": "destination.ip"},
                        "detectors": {"gcn_hmm": {"type": "gcn_hmm", "epochs": 40, "training": {"windows": 4}},
                                      "iforest": {"type": "iforest", "entity_baseline": False,
                                                  "training": {"windows": 4}}},
                        "sinks": ["alerts"]}}
    rules = {"flow-outlier": {"name": "Flow endpoint unlike its history", "job": "network", "detector": "iforest",
                              "condition": {"top_k": 3}},
             "odd-hour": {"name": "Unusual hour", "job": "network", "detector": "gcn_hmm", "condition": {"top_k": 1}}}
    alerts = {}
    for engine in ("local", "ray"):
        config = make_config(tmp_path / engine, jobs=jobs, sources={"flows": source}, rules=rules,
                             extra={"execution": {"engine": engine}})
        app = App.open(config)
        try:
            assert all(o.status == "ok" for o in run_once(app, ["network"], threading.Event()))
        finally:
            app.close()
        alerts[engine] = alert_scores(read_alerts(tmp_path / engine / "state" / "alerts.jsonl"))
    assert alerts["ray"] == alerts["local"]
    assert alerts["local"]  # the capture raises alerts at all
