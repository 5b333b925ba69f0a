"""What Ray tasks run in a worker process: each applies the driver's thread count first (so
tasks side by side on one machine do not fight over cores) and names the node it ran on."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..detectors import Detector
    from ..graphs import GraphBuilder, GraphWindow, WindowGrid
    from ..sources import Cursor, Source


def _prepare(threads: int) -> str:
    import ray

    from ..memory import keep_freed_memory
    from ..threads import ThreadPolicy

    ThreadPolicy(threads, "driver").apply()
    keep_freed_memory()
    return ray.get_runtime_context().get_node_id()


# Fitted models this worker process has unpickled, by object id (the driver puts each model
# version once): Ray hands a task its arguments afresh each call, and unpickling a forest or a
# torch model costs more than scoring a run of windows with it. Tasks run one at a time in a
# worker, so sharing is safe.
_MODELS: dict[str, "Detector"] = {}
MODELS_KEPT = 16


def model_of(boxed: list) -> "Detector":
    """The model whose object reference is `boxed[0]` (in a list, so that Ray passes the
    reference and not the unpickled model), from this process's cache or the object store."""
    import ray

    key = boxed[0].hex()
    if key not in _MODELS:
        if len(_MODELS) >= MODELS_KEPT:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = ray.get(boxed[0])
    return _MODELS[key]


def windows_of(parts: list) -> list["GraphWindow"]:
    """The windows of consecutive runs held in the object store (references in a list)."""
    import ray

    return [w for run in ray.get(parts) for w in run]


def scoring_view(windows: list["GraphWindow"]) -> list["GraphWindow"]:
    """The windows without their evidence index (event ids), which only explanations read and
    the driver keeps: what scoring tasks receive."""
    import dataclasses

    return [dataclasses.replace(w, evidence=None) for w in windows]


def for_worker(builder: "GraphBuilder") -> "GraphBuilder":
    """A detached copy of `builder` that builds on one thread unless the config says otherwise
    (its default, one thread per core, would multiply with the other tasks on the node)."""
    params = type(builder).Params.model_fields
    if "threads" in params and not getattr(builder.params, "threads"):
        return builder.detached(threads=1)  # type: ignore[return-value]
    return builder.detached()  # type: ignore[return-value]


def import_modules(modules: list[str], threads: int) -> tuple[list[str], str]:
    """Import `modules` in this worker process ahead of its first real task (`RayExecutor.warm`);
    returns the ones that failed (as 'module: error') and the node."""
    import importlib

    node = _prepare(threads)
    failed = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a warm-up only saves time; the real task reports it
            failed.append(f"{module}: {type(exc).__name__}: {exc}")
    return failed, node


def fit_to_bytes(detector: "Detector", windows: list["GraphWindow"], threads: int) -> tuple[bytes, float, str]:
    """Fit `detector` and return its saved model file, the seconds fitting took and the node."""
    node = _prepare(threads)
    began = time.monotonic()
    detector.fit(windows)
    seconds = time.monotonic() - began
    with tempfile.TemporaryDirectory(prefix="siem-gad-fit-") as folder:
        path = Path(folder) / "model.pt"
        detector.save(path)
        return path.read_bytes(), seconds, node


def score_run(model: list, parts: list, threads: int) -> tuple[list, dict, str]:
    """Scores of the windows of `parts` (runs in the object store) with `model` (see
    `model_of`), what explaining them needs (`Detector.explain_cache`), and the node."""
    node = _prepare(threads)
    detector = model_of(model)
    return detector.score(windows_of(parts)), detector.explain_cache, node


def plan_lookups(model: list, parts: list, shards: int) -> tuple:
    """A keyed-baseline detector's first step on the windows of `parts`: the `BatchLookup` and
    the keys for each of `shards` shard actors (a task with `num_returns=shards + 1`)."""
    from .shards import BatchLookup, HashRing

    lookup, keys = BatchLookup.plan(model_of(model), windows_of(parts), HashRing(shards))
    return (lookup, *keys)


def score_from_lookups(model: list, parts: list, lookup: Any, threads: int, *answers: Any) -> tuple[list, dict, str]:
    """Its last step: the windows' scores from the shards' answers."""
    node = _prepare(threads)
    detector = model_of(model)
    return lookup.scores(detector, windows_of(parts), list(answers)), detector.explain_cache, node


def score_sequence(model: list, parts: list, state: dict | None,
                   threads: int) -> tuple[list, dict, dict | None, str]:
    """A sequence detector's scores of a batch, in order, from the stream state the driver
    checkpointed; also returns what explaining them needs and the state after the batch, for
    the driver's next commit."""
    node = _prepare(threads)
    detector = model_of(model)
    detector.stream_state_ = state
    scores = detector.score(windows_of(parts))
    return scores, detector.explain_cache, detector.stream_state_, node


def read_and_build_run(source: "Source", builder: "GraphBuilder", grid: "WindowGrid", cursor: "Cursor",
                       keep_events: bool, threads: int) -> tuple[tuple[list, Any, Any, "Cursor", dict, str], list]:
    """Read one run of windows from a splittable source and build its graphs. Two results (a
    task with `num_returns=2`): what the driver fetches (the graphs, the events as an Arrow
    table with their dtypes when it keeps them, cursor, stats, node) and the run's
    `scoring_view`, which stays in the object store for the scoring tasks."""
    from . import BuildTask, read_and_build
    from .arrow import to_table

    node = _prepare(threads)
    batch = read_and_build(BuildTask(source, builder, grid, cursor))
    events = batch.events
    table = to_table(events) if keep_events and events is not None else None
    dtypes = events.dtypes if table is not None else None
    return (batch.windows, table, dtypes, batch.cursor, batch.stats, node), scoring_view(batch.windows)


def build_run(builder: "GraphBuilder", table: Any, dtypes: Any, grid: "WindowGrid",
              threads: int) -> tuple[tuple[list, str], list]:
    """The graphs of one run of windows from its events (an Arrow table); two results, as
    `read_and_build_run`: (graphs, node) for the driver, the scoring view for the store."""
    from .arrow import to_frame

    node = _prepare(threads)
    windows = builder.checked_build(to_frame(table, dtypes), grid)
    return (windows, node), scoring_view(windows)
