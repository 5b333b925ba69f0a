"""Where the heavy work of a pass runs: in this process (`local`, the default) or on Ray.

Two calls make the interface. `fit_all` takes the detectors a job must train, each with its
training windows, and fits them; `score_all` takes the fitted detectors of a batch of windows
and scores them. `LocalExecutor` does both in this process, one detector after the other, as
siem-gad always has. `RayExecutor` fits them in parallel, one Ray task per
detector: each distinct list of windows goes into the object store once, a task fits its
detector under the same thread policy as the driver, and hands back the model file's bytes
(the weights-only format of `Detector.save`), which the driver saves and loads. The driver
keeps the scheduler, the checkpoint and every commit, so the no-gap, no-duplicate guarantee
does not depend on the engine.

On Ray, scoring goes out too: each model is put into the object store once (per version), the
batch's windows are cut into runs of whole windows (one per CPU of the cluster), and a task
scores one detector on one run. Sequence detectors (`stateful`, whose score of a window depends
on the windows before it and whose stream state is checkpointed) score in the driver, in order.

Reading, graph building, rules and explanations stay in the driver (docs/scale-out.md).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ExecutionConfig
    from .detectors import Detector
    from .graphs import GraphWindow

log = logging.getLogger(__name__)


@dataclass
class FitTask:
    """One detector to fit on its windows; `fitted` and `seconds` are set by the executor."""

    name: str
    detector: "Detector"
    windows: list["GraphWindow"]
    progress: bool = False
    fitted: "Detector | None" = field(default=None, repr=False)
    seconds: float = 0.0
    node: str = "local"  # the Ray node that fitted it


@dataclass
class ScoreTask:
    """One fitted detector to score on a batch of windows; `model` names its version (the
    object-store copy is reused while it is current); `scores` is set by the executor."""

    name: str
    detector: "Detector"
    windows: list["GraphWindow"]
    model: tuple[str, str, int]
    scores: list | None = field(default=None, repr=False)


class LocalExecutor:
    """Everything in this process, one detector after the other."""

    engine = "local"

    def fit_all(self, tasks: list[FitTask]) -> list[FitTask]:
        for task in tasks:
            began = time.monotonic()
            task.fitted = task.detector.fit(task.windows, progress=task.progress)
            task.seconds = time.monotonic() - began
        return tasks

    def score_all(self, tasks: list[ScoreTask]) -> list[ScoreTask]:
        for task in tasks:
            task.scores = task.detector.score(task.windows)
        return tasks

    def describe(self) -> str:
        return "local (this process)"

    def close(self) -> None:
        pass


def fit_to_bytes(detector: "Detector", windows: list["GraphWindow"], threads: int) -> tuple[bytes, float, str]:
    """Fit `detector` and return its saved model file, the seconds fitting took and the node
    (what a Ray task runs, in a worker process that applies the driver's thread count first)."""
    import ray

    from .memory import keep_freed_memory
    from .threads import ThreadPolicy

    ThreadPolicy(threads, "driver").apply()
    keep_freed_memory()
    began = time.monotonic()
    detector.fit(windows)
    seconds = time.monotonic() - began
    with tempfile.TemporaryDirectory(prefix="siem-gad-fit-") as folder:
        path = Path(folder) / "model.pt"
        detector.save(path)
        return path.read_bytes(), seconds, ray.get_runtime_context().get_node_id()


def score_run(detector: "Detector", windows: list["GraphWindow"], threads: int) -> tuple[list, str]:
    """Scores of one run of windows, and the node (what a Ray scoring task runs)."""
    import ray

    from .threads import ThreadPolicy

    ThreadPolicy(threads, "driver").apply()
    return detector.score(windows), ray.get_runtime_context().get_node_id()


def window_runs(count: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) of at most `parts` consecutive runs covering `count` windows."""
    parts = max(1, min(parts, count))
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


class RayExecutor:
    """Detectors fitted and scored in Ray tasks; joins `address`, or starts a local Ray."""

    engine = "ray"

    def __init__(self, config: "ExecutionConfig", threads: int = 1):
        import ray

        self.ray = ray
        self.threads = threads
        self.started_here = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if config.address:
                ray.init(address=config.address, **options)
            else:
                ray.init(num_cpus=config.workers, **options)
            self.started_here = True
        self.fit_remote = ray.remote(fit_to_bytes)
        self.score_remote = ray.remote(score_run)
        self.models: dict[tuple[str, str], tuple[int, Any]] = {}  # (job, detector) -> (version, object ref)
        self.scored_runs = 0  # scoring tasks sent
        self.nodes_used: set[str] = set()  # the nodes that ran this executor's tasks

    def fit_all(self, tasks: list[FitTask]) -> list[FitTask]:
        refs: dict[int, Any] = {}  # one object per distinct windows list: detectors trained on the same range share it
        pending = []
        for task in tasks:
            self._ship_plugin_code(task.detector)
            key = id(task.windows)
            if key not in refs:
                refs[key] = self.ray.put(task.windows)
            pending.append(self.fit_remote.options(max_retries=3, retry_exceptions=False).remote(
                task.detector, refs[key], self.threads))
        for task, (payload, seconds, node) in zip(tasks, self.ray.get(pending)):
            with tempfile.TemporaryDirectory(prefix="siem-gad-fit-") as folder:
                path = Path(folder) / "model.pt"
                path.write_bytes(payload)
                task.fitted = type(task.detector).load(path)
            task.seconds, task.node = seconds, node
            self.nodes_used.add(node)
        return tasks

    def score_all(self, tasks: list[ScoreTask]) -> list[ScoreTask]:
        remote = [t for t in tasks if not t.detector.stateful and t.windows]
        for task in tasks:
            if not any(task is r for r in remote):
                task.scores = task.detector.score(task.windows)
        if not remote:
            return tasks
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        runs_of = {id(task): window_runs(len(task.windows), cpus) for task in remote}
        window_refs: dict[tuple[int, tuple[int, int]], Any] = {}  # tasks of one batch share its runs' objects
        pending = []
        for task in remote:
            runs = runs_of[id(task)]
            job, name, version = task.model
            cached = self.models.get((job, name))
            if cached is None or cached[0] != version:
                self._ship_plugin_code(task.detector)
                cached = self.models[job, name] = (version, self.ray.put(task.detector))
            for run in runs:
                if (id(task.windows), run) not in window_refs:
                    window_refs[id(task.windows), run] = self.ray.put(task.windows[run[0]:run[1]])
                pending.append(self.score_remote.remote(cached[1], window_refs[id(task.windows), run], self.threads))
        self.scored_runs += len(pending)
        done = self.ray.get(pending)
        self.nodes_used.update(node for _, node in done)
        results = iter(scores for scores, _ in done)
        for task in remote:
            task.scores = [scores for _ in runs_of[id(task)] for scores in next(results)]
        return tasks

    def _ship_plugin_code(self, detector: "Detector") -> None:
        module = type(detector).__module__
        if module.startswith("siem_gad_local_plugins."):  # loaded from a file: not importable on workers
            self.ray.cloudpickle.register_pickle_by_value(sys.modules[module])

    def describe(self) -> str:
        resources = self.ray.cluster_resources()
        return f"ray ({len(self.ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs)"

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()


def executor_for(config: "ExecutionConfig", threads: int = 1) -> LocalExecutor | RayExecutor:
    """The executor of an `execution:` section."""
    if config.engine == "ray":
        return RayExecutor(config, threads)
    return LocalExecutor()
