"""Where the heavy work of a pass runs: in this process (`local`, the default) or on Ray.

One small interface, `Executor.fit_all`, takes the detectors a job must train, each with its
training windows, and returns them fitted. `LocalExecutor` fits them one after the other in
this process, as siem-gad always has. `RayExecutor` fits them in parallel, one Ray task per
detector: each distinct list of windows goes into the object store once, a task fits its
detector under the same thread policy as the driver, and hands back the model file's bytes
(the weights-only format of `Detector.save`), which the driver saves and loads. The driver
keeps the scheduler, the checkpoint and every commit, so the no-gap, no-duplicate guarantee
does not depend on the engine.

Scope today: training runs on Ray; reading, graph building and scoring stay in the driver
(docs/scale-out.md says what is planned).
"""

from __future__ import annotations

import logging
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


class LocalExecutor:
    """Everything in this process, one detector after the other."""

    engine = "local"

    def fit_all(self, tasks: list[FitTask]) -> list[FitTask]:
        for task in tasks:
            began = time.monotonic()
            task.fitted = task.detector.fit(task.windows, progress=task.progress)
            task.seconds = time.monotonic() - began
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


class RayExecutor:
    """Detectors fitted in parallel Ray tasks; joins `address`, or starts a local Ray."""

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

    def fit_all(self, tasks: list[FitTask]) -> list[FitTask]:
        refs: dict[int, Any] = {}  # one object per distinct windows list: detectors trained on the same range share it
        pending = []
        for task in tasks:
            module = type(task.detector).__module__
            if module.startswith("siem_gad_local_plugins."):  # loaded from a file: not importable on workers
                import sys

                self.ray.cloudpickle.register_pickle_by_value(sys.modules[module])
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
        return tasks

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
