"""Where the heavy work of a pass runs: in this process (`local`, the default) or on Ray.

Three calls make the interface, each taking a description of the work (and `warm(modules)`,
which lets an engine with worker processes import what the work will need ahead of it):

- `build(BuildTask)`: read a range of the source, run the `enrich_events` hooks and build one
  graph per window (a `WindowBatch`);
- `fit_all([FitTask])`: fit the detectors a job must train, each on its training windows;
- `score_all([ScoreTask])`: score the fitted detectors on a batch of windows.

`LocalExecutor` does all three in this process, one thing after the other, as siem-gad always
has. `RayExecutor` (`execution/ray_engine.py`) spreads them over a Ray cluster: runs of whole
windows are read and built in tasks, detectors fitted one task each, scored per run of windows
(or, for sequence detectors, per batch with their stream state handed back), and per-entity
baselines looked up in actors that hold one shard each (`execution/shards.py`). The driver
keeps the scheduler, the checkpoint and every commit, so the no-gap, no-duplicate guarantee does
not depend on the engine (docs/scale-out.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    import pandas as pd

    from ..config import ExecutionConfig
    from ..detectors import Detector
    from ..graphs import GraphBuilder, GraphWindow, WindowGrid
    from ..sources import Cursor, Source
    from .ray_engine import RayExecutor


@dataclass
class WindowBatch:
    """The events of a time range and the window graphs built from them (`events` is None when
    the caller did not ask to keep them and the engine built the graphs elsewhere)."""

    events: "pd.DataFrame | None"
    windows: list["GraphWindow"]
    cursor: dict | None
    stats: dict


@dataclass
class BuildTask:
    """Read `grid`'s range from `source` after `cursor`, enrich the events (`enrich`: None when no
    plugin implements `enrich_events`) and build one graph per window with `builder`."""

    source: "Source"
    builder: "GraphBuilder"
    grid: "WindowGrid"
    cursor: "Cursor"
    enrich: Callable[["pd.DataFrame"], "pd.DataFrame"] | None = None
    keep_events: bool = False  # `evaluate` reads the labels of the events


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


def read_and_build(task: BuildTask) -> WindowBatch:
    """The one way a range of the source becomes windows: read, enrich, build."""
    result = task.source.read(task.grid.start, task.grid.end, task.cursor)
    events = result.events if task.enrich is None else task.enrich(result.events)
    return WindowBatch(events, task.builder.checked_build(events, task.grid), result.cursor,
                       {**result.stats, "events": len(events)})


class LocalExecutor:
    """Everything in this process, one thing after the other."""

    engine = "local"

    def build(self, task: BuildTask) -> WindowBatch:
        return read_and_build(task)

    def warm(self, modules: "Iterable[str]") -> None:
        """Nothing to do: this process imports what it needs when loading the models."""

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


def window_runs(count: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) of at most `parts` consecutive runs covering `count` windows."""
    parts = max(1, min(parts, count))
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def executor_for(config: "ExecutionConfig", threads: int = 1) -> "LocalExecutor | RayExecutor":
    """The executor of an `execution:` section."""
    if config.engine == "ray":
        from .ray_engine import RayExecutor

        return RayExecutor(config, threads)
    return LocalExecutor()


__all__ = ["BuildTask", "FitTask", "LocalExecutor", "ScoreTask", "WindowBatch", "executor_for",
           "read_and_build", "window_runs"]
