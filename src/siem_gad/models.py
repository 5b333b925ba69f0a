"""The models of one job: which version is current, loading it, training a new one.

The pass (load or train before scoring), `siem-gad train`, `evaluate --use-models` and
`status` all ask this one place whether a detector's model is current: its config hash matches
the detector's configuration now and its file exists. A model whose configuration changed is
stale and is retrained, never silently reused; a file another detector class saved is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from .config import component_params
from .state import ModelRecord
from .timeutil import isoformat, utcnow

if TYPE_CHECKING:
    from .detectors import Detector
    from .execution import FitTask
    from .graphs import GraphWindow
    from .pipeline import App

log = logging.getLogger(__name__)
ModelState = Literal["current", "stale", "not trained"]


@dataclass
class LoadedModel:
    detector: "Detector"
    record: ModelRecord


class ModelManager:
    """The detectors of job `job` and their trained models."""

    def __init__(self, app: "App", job: str):
        self.app, self.job = app, job
        self.config = app.config.jobs[job]
        self.loaded: dict[str, LoadedModel] = {}  # detector name -> the model the pass scores with

    def detector_class(self, name: str) -> type["Detector"]:
        """The plugin class of the job's detector `name`."""
        return self.app.host.component("detectors", self.config.detectors[name].type)

    def new_detector(self, name: str) -> "Detector":
        """An unfitted detector `name` with its validated parameters."""
        spec = self.config.detectors[name]
        cls = self.detector_class(name)
        return cls(**component_params(self.app.config, spec, cls, ("jobs", self.job, "detectors", name)))

    def state(self, name: str) -> tuple[ModelState, ModelRecord | None]:
        """Whether the newest model of `name` can be used, and its record."""
        record = self.app.state.latest_model(self.job, name)
        if record is None:
            return "not trained", None
        current = record.config_hash == self.app.config.detector_config_hash(self.job, name) and record.path.exists()
        return ("current" if current else "stale"), record

    def current(self, name: str) -> LoadedModel | None:
        """The current model of `name`, loaded (once); None when it must be trained first."""
        wanted = self.app.config.detector_config_hash(self.job, name)
        loaded = self.loaded.get(name)
        if loaded and loaded.record.config_hash == wanted:
            return loaded
        state, record = self.state(name)
        if state == "current":
            assert record is not None
            try:
                self.loaded[name] = LoadedModel(self.detector_class(name).load(record.path), record)
                return self.loaded[name]
            except ValueError as exc:  # another detector class or format: never reuse it silently
                log.warning("%s/%s: model v%d cannot be used (%s); retraining", self.job, name, record.version, exc)
        elif record is not None:
            log.info("%s/%s: model v%d was trained with another configuration; retraining", self.job, name,
                     record.version)
        return None

    def train_all(self, requests: list[tuple[str, list["GraphWindow"], datetime, datetime]],
                  progress: bool = False) -> list[ModelRecord]:
        """Fit each (detector, windows, start, end) through the app's executor (all at once on
        Ray, one after the other locally), then save and record every model in this process."""
        from .execution import FitTask

        tasks = []
        for name, windows, start, end in requests:
            if not any(w.num_nodes for w in windows):
                raise ValueError(f"{self.job}/{name}: no events in the training range {isoformat(start)} .. "
                                 f"{isoformat(end)}")
            log.info("%s/%s: training on %d windows (%s .. %s)", self.job, name, len(windows), isoformat(start),
                     isoformat(end))
            detector = self.new_detector(name)
            if detector.learns_from_labels:
                from .triage.feedback import label_windows

                labeled = label_windows(windows, self.app.triage.verdicts())
                if labeled:
                    log.info("%s/%s: %d row(s) labeled by analysts' verdicts", self.job, name, labeled)
            tasks.append(FitTask(name, detector, windows, progress))
        self.app.executor().fit_all(tasks)
        return [self._record(task, start, end) for task, (_, _, start, end) in zip(tasks, requests)]

    def _record(self, task: "FitTask", start: datetime, end: datetime) -> ModelRecord:
        detector, name, state = task.fitted, task.name, self.app.state
        assert detector is not None
        version = state.next_model_version(self.job, name)
        path = state.model_path(self.job, name, version)
        detector.save(path)
        metrics = {**detector.metrics_, "threshold": detector.threshold_, "fit_seconds": round(task.seconds, 2),
                   "node": task.node}
        record = ModelRecord(self.job, name, version, self.app.config.detector_config_hash(self.job, name), path,
                             start, end, metrics, utcnow())
        state.add_model(record)
        self.loaded[name] = LoadedModel(detector, record)
        log.info("%s/%s: model v%d trained in %.1fs, threshold %.4f", self.job, name, version,
                 metrics["fit_seconds"], detector.threshold_)
        return record
