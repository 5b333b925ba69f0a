"""`execution: {engine: ray}`: training and scoring on a real local Ray give the models and
alerts of the local engine, also when a worker dies mid-fit or mid-scoring; without Ray
installed, `check` says so."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
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


def run_job(directory: Path, engine: str, jobs: dict | None = None, rules: dict | None = None,
            during=None) -> tuple[list[dict], dict[str, float]]:
    """Run every job once; `during(executor)` runs in a thread beside the pass."""
    config = make_config(directory, jobs=jobs, rules=rules, extra={"execution": {"engine": engine}})
    app = App.open(config)
    try:
        beside = threading.Thread(target=during, args=(app.executor(),), daemon=True) if during else None
        if beside:
            beside.start()
        outcomes = run_once(app, list(app.config.jobs), threading.Event())
        if beside:
            beside.join(timeout=60)
        assert all(o.status == "ok" for o in outcomes), outcomes
        assert app.executor().engine == engine
        if engine == "ray":  # windows read and built on the workers, and scored there
            assert app.executor().built_runs > 0 and app.executor().scored_runs > 0
        thresholds = {f"{job}/{name}": app.state.latest_model(job, name).metrics["threshold"]
                      for job, spec in app.config.jobs.items() for name in spec.detectors}
    finally:
        app.close()
    return read_alerts(directory / "state" / "alerts.jsonl"), thresholds


def without_clock(alerts: list[dict]) -> list[dict]:
    """The alerts without `event.created`, the only field that says when they were written."""
    return [{**a, "event": {k: v for k, v in a["event"].items() if k != "created"}} for a in alerts]


def alike(a, b) -> bool:
    """Equal documents, floats to 1e-3 (relative or absolute)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(alike(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(alike(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-3)
    return a == b


def alert_scores(alerts: list[dict]) -> dict[str, float]:
    return {a["siem_gad"]["alert_id"]: a["siem_gad"]["score"] for a in alerts}


def test_training_on_ray_gives_the_models_and_alerts_of_the_local_engine(tmp_path: Path, ray_cluster):
    local_alerts, local_thresholds = run_job(tmp_path / "local", "local")
    ray_alerts, ray_thresholds = run_job(tmp_path / "ray", "ray")
    assert local_alerts and set(local_thresholds) == {"network/gcn_hmm", "network/iforest"}
    assert ray_thresholds == local_thresholds
    assert alert_scores(ray_alerts) == alert_scores(local_alerts)
    # whole documents: evidence ids, explanations, evidence graphs (gradient weights to float noise)
    assert alike(without_clock(ray_alerts), without_clock(local_alerts))
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


WARMING = '''from siem_gad import hookimpl
from siem_gad.detectors.iforest import IsolationForestDetector


class NeedsAMissingModule(IsolationForestDetector):
    worker_imports = (*IsolationForestDetector.worker_imports, "siem_gad_test_no_such_module")


@hookimpl
def register_detectors(register):
    register("needs_a_missing_module", NeedsAMissingModule)
'''


def test_a_pass_warms_the_workers_with_what_the_job_imports_once_and_a_failed_import_only_warns(
        tmp_path: Path, ray_cluster, caplog: pytest.LogCaptureFixture):
    jobs = {"network": {"source": "sim", "window": "1h", "batch_windows": 12, "graph": {"type": "bipartite"},
                        "detectors": {"iforest": {"type": "needs_a_missing_module", "training": {"windows": 24}}},
                        "sinks": ["alerts"]}}
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "warming.py").write_text(WARMING)
    rules = {"outlier": {"name": "Outlier", "job": "network", "detector": "iforest", "condition": {"top_k": 2}}}
    app = App.open(make_config(tmp_path, jobs=jobs, rules=rules, extra={"execution": {"engine": "ray"}}))
    try:
        assert all(o.status == "ok" for o in run_once(app, ["network"], threading.Event()))
        executor = app.executor()
        # the builder's and the detector's imports, one warm-up task per CPU of the cluster
        assert executor.warmed == {"pandas", "siem_gad.graphs.kernels", "siem_gad.detectors.forest_kernels",
                                   "siem_gad_test_no_such_module"}
        assert executor.warm_ups == 2
        executor.warm(app.job("network").worker_imports())  # nothing new to import: nothing sent
        assert executor.warm_ups == 2
    finally:
        app.close()
    warnings = [r.getMessage() for r in caplog.records if "warming a worker" in r.getMessage()]
    assert warnings and all("siem_gad_test_no_such_module: ModuleNotFoundError" in w for w in warnings)


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


def test_link_tables_in_shard_actors_killed_mid_pass_give_the_alerts_of_the_local_engine(tmp_path: Path, ray_cluster):
    """rare_links' link table is split over actors by a hash ring of the source entity; an actor
    killed while the pass runs is restarted from the model in the object store, and its
    in-flight lookups are retried: the alert set and scores do not change."""
    jobs = {"network": {"source": "sim", "window": "1h", "batch_windows": 2,
                        "graph": {"type": "bipartite", "source_field": "source.ip", "target_field": "destination.ip"},
                        "detectors": {"rare_links": {"type": "rare_links", "training": {"windows": 24}}},
                        "sinks": ["alerts"]}}
    rules = {"new-links": {"name": "New links", "job": "network", "detector": "rare_links", "condition": {"top_k": 2}}}
    killed = []

    def kill_each_shard_once(executor) -> None:
        deadline = time.monotonic() + 60
        while not executor.shards and time.monotonic() < deadline:
            time.sleep(0.02)
        for _, actors in list(executor.shards.values()):
            for actor in actors:
                ray.kill(actor, no_restart=False)  # as a lost worker process: Ray restarts it
                killed.append(actor)

    ray_alerts, _ = run_job(tmp_path / "ray", "ray", jobs, rules, during=kill_each_shard_once)
    local_alerts, _ = run_job(tmp_path / "local", "local", jobs, rules)
    assert len(killed) == 2  # one shard per CPU of the test's Ray
    assert local_alerts and alert_scores(ray_alerts) == alert_scores(local_alerts)


def test_a_killed_shard_actor_restarts_with_its_shard_and_answers_alike(ray_cluster):
    from siem_gad.execution.shards import BaselineShard

    detector = fitted_rare_links()
    actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(BaselineShard).remote(detector, 1, 3)
    keys = detector.baseline_table()[0]
    before = ray.get(actor.lookup.remote(keys))
    assert not ray.get(actor.restarted.remote())
    ray.kill(actor, no_restart=False)
    after = ray.get(actor.lookup.remote(keys))  # waits for the restart, then retried
    assert ray.get(actor.restarted.remote())
    assert (after == before).all() and 0 < ray.get(actor.size.remote()) < len(keys)
    ray.kill(actor, no_restart=True)


def fitted_rare_links(with_windows: bool = False, **params):
    """rare_links (with `params`) fitted on 6 windows of a small simulated enterprise (and the 8 windows)."""
    from datetime import timedelta

    from siem_gad.detectors.rare_links import RareLinksDetector
    from siem_gad.events import finalize_events
    from siem_gad.graphs import WindowGrid
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder
    from siem_gad.simulator import Enterprise

    enterprise = Enterprise(seed=3, hosts=30, hours=8)
    events = finalize_events(enterprise.events(enterprise.start, enterprise.end), "sim")
    windows = BipartiteGraphBuilder().build(events, WindowGrid(enterprise.start, timedelta(hours=1), 8))
    detector = RareLinksDetector(**params).fit(windows[:6])
    return (detector, windows) if with_windows else detector
