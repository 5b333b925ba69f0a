"""`execution: {engine: ray}`: the work of a pass spread over a Ray cluster.

- **Warming.** At the start of a pass, before the driver loads (or trains) the models, one
  task per CPU imports what the job's source, builder and detectors name in `worker_imports`
  (torch, PyG, scikit-learn), so the first batch's tasks do not each pay seconds of imports.
- **Reading and building.** A batch's windows are cut into runs of whole windows, three per
  CPU of the cluster (`RUNS_PER_CPU`). A splittable source (`Source.splittable`: the
  simulator, Elasticsearch) is read on the workers, each run by its own copy of the source,
  and each worker builds its run's graphs; other sources (files, syslog), or any job whose
  `enrich_events` hooks must run where the plugins are loaded, are read in the driver, and the
  runs' events go to the workers as Arrow tables (`execution/arrow.py`). Only the graphs come
  back.
- **Training.** One task per detector; each distinct list of training windows goes into the
  object store once; a task returns the model file's bytes (the weights-only format of
  `Detector.save`), which the driver saves and loads.
- **Scoring.** Each model goes into the object store once per version. Plain detectors score
  one task per run of windows; sequence detectors (`stateful`) score the whole batch in one
  task, in order, from the stream state the driver checkpointed, and hand the new state back;
  keyed baselines (`detectors/baselines.py`) score per run too, each task asking the actors
  that hold one shard of the table each (`execution/shards.py`). All of a batch's tasks are
  sent before any answer is awaited; scoring tasks read the runs the building tasks left in the
  object store (without the evidence index, which only the driver's explanations read).

Every task is retried by Ray when its worker dies (`max_retries`), and an actor is restarted
and its calls retried, so a lost worker changes no score. Rules, explanations, alerts, sinks
and the checkpoint stay in the driver (docs/scale-out.md).
"""

from __future__ import annotations

import itertools
import logging
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from . import BuildTask, FitTask, ScoreTask, WindowBatch, read_and_build, window_runs
from .worker import (build_run, fit_to_bytes, for_worker, import_modules, plan_lookups, read_and_build_run,
                     score_from_lookups, score_run, score_sequence, scoring_view)

if TYPE_CHECKING:
    from ..config import ExecutionConfig
    from ..detectors import Detector

log = logging.getLogger(__name__)

RETRIES = 3  # attempts Ray makes after a task's worker dies
# Runs of windows per CPU: windows are not equally busy (a working day against its night), so
# a batch cut into one run per CPU waits for the busiest run; three let Ray even the load.
RUNS_PER_CPU = 3


class RayExecutor:
    """Graph building, fits and scoring in Ray tasks and actors; joins `address`, or starts a
    local Ray with `workers` CPUs."""

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
        self.shard_count = config.shards
        task = ray.remote(max_retries=RETRIES, retry_exceptions=False)
        self.fit_remote = task(fit_to_bytes)
        self.score_remote = task(score_run)
        self.plan_remote = task(plan_lookups)
        self.from_lookups_remote = task(score_from_lookups)
        self.sequence_remote = task(score_sequence)
        # Building spreads over the nodes (Ray would keep reusing the first workers it leased);
        # scoring then goes where the runs it reads were built.
        self.read_build_remote = task(read_and_build_run).options(num_returns=2, scheduling_strategy="SPREAD")
        self.build_remote = task(build_run).options(num_returns=2, scheduling_strategy="SPREAD")
        self.warm_remote = task(import_modules).options(scheduling_strategy="SPREAD")
        self.warmed: set[str] = set()  # modules the workers were sent to import
        self.warming: list = []  # the warm-up tasks not yet reported on
        self.warm_ups = 0  # warm-up tasks sent
        self.models: dict[tuple[str, str], tuple[int, Any]] = {}  # (job, detector) -> (version, object ref)
        # The scoring views of the last batches built, by id of their window list: (the list, runs, refs)
        self.views: dict[int, tuple[list, list[tuple[int, int]], list]] = {}
        self.shards: dict[tuple[str, str], tuple[int, list]] = {}  # (job, detector) -> (version, shard actors)
        self.scored_runs = 0  # scoring tasks sent
        self.built_runs = 0  # graph-building tasks sent
        self.nodes_used: set[str] = set()  # the nodes that ran this executor's tasks

    @property
    def cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    # ------------------------------------------------------------------ warming the workers
    def warm(self, modules: Iterable[str]) -> None:
        """Have one worker per CPU import `modules` now, without waiting for it. A worker's first
        scoring task would otherwise spend seconds importing torch, PyG and scikit-learn inside
        the first batch, every worker at the same moment; sent before the driver loads its
        models, the imports overlap that loading instead. Modules already sent are not sent
        again (a worker Ray starts later imports on first use, as before)."""
        wanted = sorted(set(modules) - self.warmed)
        if not wanted:
            return
        self.warmed.update(wanted)
        self.warming += [self.warm_remote.remote(wanted, self.threads) for _ in range(self.cpus)]
        self.warm_ups += self.cpus

    def _report_warming(self, wait_s: float = 0) -> None:
        """Log the imports that failed in the warm-up tasks finished so far (or within `wait_s`)."""
        if not self.warming:
            return
        done, self.warming = self.ray.wait(self.warming, num_returns=len(self.warming), timeout=wait_s)
        for ref in done:
            try:
                failed, node = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:  # its worker died: the real tasks are retried anyway
                failed, node = [f"the warm-up task failed: {str(exc).splitlines()[0]}"], "?"
            for failure in failed:
                log.warning("warming a worker on node %s: %s", node[:8], failure)

    # ------------------------------------------------------------------ reading and building
    def build(self, task: BuildTask) -> WindowBatch:
        from ..graphs import WindowGrid

        runs = window_runs(task.grid.count, self.cpus * RUNS_PER_CPU)
        if len(runs) < 2:
            return read_and_build(task)
        grids = [WindowGrid(task.grid.bounds(a)[0], task.grid.size, b - a) for a, b in runs]
        builder = for_worker(task.builder)
        self.built_runs += len(grids)
        if task.enrich is None and task.source.splittable:
            return self._read_and_build_on_workers(task, builder, grids)
        return self._build_on_workers(task, builder, grids)

    def _read_and_build_on_workers(self, task: BuildTask, builder: Any, grids: list) -> WindowBatch:
        import pandas as pd

        from .arrow import to_frame

        source = task.source.detached()
        sent = [self.read_build_remote.remote(source, builder, grid, task.cursor if i == 0 else None,
                                              task.keep_events, self.threads) for i, grid in enumerate(grids)]
        parts = self.ray.get([fetched for fetched, _ in sent])
        stats: dict[str, int] = {}
        for *_, part_stats, node in parts:
            self.nodes_used.add(node)
            for key, value in part_stats.items():
                stats[key] = stats.get(key, 0) + value
        events = pd.concat([to_frame(table, dtypes) for _, table, dtypes, *_ in parts], ignore_index=True) \
            if task.keep_events else None
        windows = self._keep_views([windows for windows, *_ in parts], [view for _, view in sent])
        cursor = task.source.join_cursors([cursor for _, _, _, cursor, _, _ in parts])
        return WindowBatch(events, windows, cursor, stats)

    def _build_on_workers(self, task: BuildTask, builder: Any, grids: list) -> WindowBatch:
        from .arrow import runs_of_events, to_table

        result = task.source.read(task.grid.start, task.grid.end, task.cursor)
        events = result.events if task.enrich is None else task.enrich(result.events)
        runs = runs_of_events(events, [(g.start_ns, g.start_ns + g.count * g.size_ns) for g in grids])
        sent = [self.build_remote.remote(builder, self.ray.put(to_table(run)), events.dtypes, grid, self.threads)
                for run, grid in zip(runs, grids)]
        parts = self.ray.get([fetched for fetched, _ in sent])
        self.nodes_used.update(node for _, node in parts)
        windows = self._keep_views([windows for windows, _ in parts], [view for _, view in sent])
        return WindowBatch(events, windows, result.cursor, {**result.stats, "events": len(events)})

    def _keep_views(self, runs: list[list], views: list) -> list:
        """The batch's window list, remembered with its runs' scoring views in the object store
        (scoring tasks read those, not a second copy from the driver)."""
        windows = [w for run in runs for w in run]
        bounds = [0, *itertools.accumulate(len(run) for run in runs)]
        while len(self.views) >= 4:  # a pass scores the batch it built last; training keeps a few ranges
            self.views.pop(next(iter(self.views)))
        self.views[id(windows)] = (windows, list(zip(bounds, bounds[1:])), views)
        return windows

    # ------------------------------------------------------------------ training
    def fit_all(self, tasks: list[FitTask]) -> list[FitTask]:
        refs: dict[int, Any] = {}  # one object per distinct windows list: detectors trained on the same range share it
        pending = []
        for task in tasks:
            self._ship_plugin_code(task.detector)
            key = id(task.windows)
            if key not in refs:
                refs[key] = self.ray.put(task.windows)
            pending.append(self.fit_remote.remote(task.detector, refs[key], self.threads))
        for task, (payload, seconds, node) in zip(tasks, self.ray.get(pending)):
            with tempfile.TemporaryDirectory(prefix="siem-gad-fit-") as folder:
                path = Path(folder) / "model.pt"
                path.write_bytes(payload)
                task.fitted = type(task.detector).load(path)
            task.seconds, task.node = seconds, node
            self.nodes_used.add(node)
        return tasks

    # ------------------------------------------------------------------ scoring
    def score_all(self, tasks: list[ScoreTask]) -> list[ScoreTask]:
        """Send every task of the batch, then collect: detectors per run of windows (keyed
        baselines asking their shard actors), sequence detectors per batch with their state.
        Scoring is pure, so a batch whose shard actors died for good (their node lost) is
        scored again with new ones."""
        try:
            return self._score_all(tasks)
        except self.ray.exceptions.RayError as exc:
            if not self.shards or "actor" not in str(exc).lower():
                raise
            log.warning("shard actors lost (%s); placing them anew and scoring the batch again",
                        str(exc).splitlines()[0])
            self._drop_shards()
            return self._score_all(tasks)

    def _score_all(self, tasks: list[ScoreTask]) -> list[ScoreTask]:
        from ..detectors.baselines import KeyedBaseline

        self._report_warming()
        cpus = self.cpus
        window_refs: dict[tuple[int, tuple[int, int]], list] = {}  # tasks of one batch share the runs' objects

        def windows_ref(task: ScoreTask, run: tuple[int, int]) -> list:
            """References to the runs in the object store that make up `run` of the task's windows."""
            kept = self.views.get(id(task.windows))
            if kept is not None and kept[0] is task.windows:
                covered = [(b, ref) for b, ref in zip(kept[1], kept[2]) if run[0] <= b[0] and b[1] <= run[1]]
                if sum(b[1] - b[0] for b, _ in covered) == run[1] - run[0]:
                    return [ref for _, ref in covered]
            if (id(task.windows), run) not in window_refs:
                window_refs[id(task.windows), run] = [self.ray.put(scoring_view(task.windows[run[0]:run[1]]))]
            return window_refs[id(task.windows), run]

        collect = []
        for task in tasks:
            if not task.windows:
                task.scores = []
            elif task.detector.stateful:
                ref = self.sequence_remote.remote(self._model(task), windows_ref(task, (0, len(task.windows))),
                                                  task.detector.stream_state_, self.threads)
                collect.append((task, "sequence", ref))
            else:
                score = partial(self._score_keyed, self.shard_actors(task)) \
                    if isinstance(task.detector, KeyedBaseline) else self.score_remote.remote
                refs = [score(self._model(task), windows_ref(task, run), self.threads)
                        for run in window_runs(len(task.windows), cpus * RUNS_PER_CPU)]
                self.scored_runs += len(refs)
                collect.append((task, "runs", refs))
        for task, kind, pending in collect:
            if kind == "sequence":
                task.scores, task.detector.explain_cache, task.detector.stream_state_, node = self.ray.get(pending)
                self.nodes_used.add(node)
            else:
                done = self.ray.get(pending)
                self.nodes_used.update(node for *_, node in done)
                task.scores = [scores for run_scores, *_ in done for scores in run_scores]
                task.detector.explain_cache = {key: value for _, cache, _ in done for key, value in cache.items()}
        return tasks

    def _score_keyed(self, actors: list, model: list, parts: list, threads: int) -> Any:
        """A keyed baseline's scores of a run as a chain that never waits inside a task: a task
        splits the run's keys by shard, each shard actor answers its part, a last task scores."""
        planned = self.plan_remote.options(num_returns=len(actors) + 1).remote(model, parts, len(actors))
        answers = [actor.lookup.remote(keys) for actor, keys in zip(actors, planned[1:])]
        return self.from_lookups_remote.remote(model, parts, planned[0], threads, *answers)

    def _model(self, task: ScoreTask) -> list:
        """The object-store copy of the task's model, put once per version, as a reference in a
        list, which workers resolve once and keep (`worker.model_of`)."""
        job, name, version = task.model
        cached = self.models.get((job, name))
        if cached is None or cached[0] != version:
            self._ship_plugin_code(task.detector)
            detector = task.detector
            state, explained = detector.stream_state_, detector.explain_cache
            detector.stream_state_, detector.explain_cache = None, {}  # per call, not part of the model
            try:
                cached = self.models[job, name] = (version, self.ray.put(detector))
            finally:
                detector.stream_state_, detector.explain_cache = state, explained
        return [cached[1]]

    def shard_actors(self, task: ScoreTask) -> list:
        """The actors holding the shards of the task's model version, started on first use (one
        per CPU of the cluster unless `execution.shards` says), placed round the nodes."""
        job, name, version = task.model
        current = self.shards.get((job, name))
        if current is not None and current[0] == version:
            return current[1]
        if current is not None:
            for actor in current[1]:
                self.ray.kill(actor, no_restart=True)
        count = self.shard_count or self.cpus
        model = self._model(task)[0]
        actors = [self._shard_class(node).remote(model, shard, count)
                  for shard, node in zip(range(count), itertools.cycle(self._worker_nodes()))]
        self.shards[job, name] = (version, actors)
        log.info("%s/%s: keyed baseline in %d shard actors", job, name, count)
        return actors

    def _worker_nodes(self) -> list[str]:
        """The alive nodes with CPUs, in a fixed order: shard i is placed on node i mod n."""
        return sorted(n["NodeID"] for n in self.ray.nodes() if n["Alive"] and n["Resources"].get("CPU"))

    def _shard_class(self, node: str) -> Any:
        """The shard actor pinned to `node` (Ray's soft affinity does not hold for actors that
        need no CPU). Restarted in place when its process dies; when the node itself is lost,
        `score_all` places the shards anew on the nodes left."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .shards import BaselineShard

        return self.ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1,
                               scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))(BaselineShard)

    # ------------------------------------------------------------------ plumbing
    def _ship_plugin_code(self, detector: "Detector") -> None:
        module = type(detector).__module__
        if module.startswith("siem_gad_local_plugins."):  # loaded from a file: not importable on workers
            self.ray.cloudpickle.register_pickle_by_value(sys.modules[module])

    def describe(self) -> str:
        resources = self.ray.cluster_resources()
        return f"ray ({len(self.ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs)"

    def _drop_shards(self) -> None:
        for _, actors in self.shards.values():
            for actor in actors:
                self.ray.kill(actor, no_restart=True)
        self.shards.clear()

    def close(self) -> None:
        self._report_warming(wait_s=5)
        self._drop_shards()
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
