"""One pass of a job, and the application object that wires config, plugins and state.

A pass processes every complete window between the job's checkpoint and the source's horizon,
in batches of `batch_windows`:

    source.read -> enrich_events -> graph builder -> detector.score -> rules -> explain
      -> alert documents -> enrich_alert -> every sink writes (ack) -> checkpoint commit

The checkpoint (watermark, source cursor, suppression and detector stream state) is committed
in one transaction only after every sink acknowledged the batch's alerts. A crash anywhere
before that repeats the batch on restart; alert ids are deterministic, so nothing is written
twice and nothing is skipped. Before the first batch, detectors without a current model (none
yet, or trained under another config) are trained on the job's history (cold start).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import AppConfig, component_params
from .inspection import inspect_config
from .memory import keep_freed_memory
from .models import ModelManager
from .errors import OperationalError
from .plugins import PluginHost
from .rules import RuleSet, Suppressor
from .state import ModelRecord, PassRecord, StateStore
from .threads import ThreadPolicy, decide
from .timeutil import align_down, align_up, isoformat, parse_time, utcnow
from .triage.desk import TriageDesk
from .yamlfile import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from .execution import LocalExecutor, WindowBatch
    from .execution.ray_engine import RayExecutor

    from .graphs import GraphBuilder, GraphWindow
    from .sinks import Sink
    from .sources import Source
    from .triage.related import Related
    from .triage.scorebook import ScorePoint

log = logging.getLogger(__name__)


class App:
    """A loaded configuration: plugins, rules, state store and component instances."""

    def __init__(self, config: AppConfig, host: PluginHost, rules: RuleSet, state: StateStore):
        self.config = config
        self.host = host
        self.rules = rules
        self.state = state
        self._sources: dict[str, Source] = {}
        self._sinks: dict[str, Sink] = {}
        self._jobs: dict[str, JobRunner] = {}
        self.threads: ThreadPolicy | None = None  # set by open(); tests may build an App without it
        self.triage = TriageDesk(self)
        self._executor: LocalExecutor | RayExecutor | None = None

    @classmethod
    def open(cls, config_path: str | Path, *, plugins_dir: Path | None = None, state_dir: Path | None = None) -> "App":
        """Load everything; `state_dir` replaces the config's (evaluate keeps production state apart)."""
        found = inspect_config(config_path, plugins_dir=plugins_dir, state_dir=state_dir)
        if found.problems:
            raise ConfigError(found.problems)
        assert found.rules is not None
        app = cls(found.config, found.host, found.rules, StateStore(found.config.state_path))
        app.threads = decide(found.config.threads).apply()  # before any detector loads torch
        keep_freed_memory()
        return app

    def _component(self, kind: str, spec: Any, path: tuple, name: str) -> Any:
        cls = self.host.component(kind, spec.type)
        instance = cls(**component_params(self.config, spec, cls, path))
        if hasattr(instance, "bind"):
            instance.bind(name, self.state, self.host)
        return instance

    def source(self, name: str) -> "Source":
        if name not in self._sources:
            self._sources[name] = self._component("sources", self.config.sources[name], ("sources", name), name)
        return self._sources[name]

    def sink(self, name: str) -> "Sink":
        if name not in self._sinks:
            self._sinks[name] = self._component("sinks", self.config.sinks[name], ("sinks", name), name)
        return self._sinks[name]

    def job(self, name: str) -> "JobRunner":
        if name not in self._jobs:
            if name not in self.config.jobs:
                raise KeyError(f"no job named {name!r} (jobs: {', '.join(self.config.jobs)})")
            self._jobs[name] = JobRunner(self, name)
        return self._jobs[name]

    def executor(self) -> "LocalExecutor | RayExecutor":
        """Where training runs (`execution:`); a Ray cluster is joined or started on first use."""
        if self._executor is None:
            from .execution import executor_for

            self._executor = executor_for(self.config.execution, self.threads.threads if self.threads else 1)
            log.info("execution: %s", self._executor.describe())
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
        for component in [*self._sources.values(), *self._sinks.values()]:
            try:
                component.close()
            except Exception:  # noqa: BLE001 - closing must not hide the real outcome
                log.exception("closing %s failed", component.name)
        self.state.close()


@dataclass
class PassOutcome:
    job: str
    status: str  # ok | idle | waiting | error | interrupted
    message: str = ""
    windows: int = 0
    events: int = 0
    alerts: int = 0
    quarantined: int = 0  # malformed records the source set aside during this pass
    stopped_by_feedback: int = 0  # alerts analysts' false-positive verdicts stopped
    watermark: datetime | None = None


@dataclass
class _Plan:
    """What a pass has to do, worked out from the checkpoint and the source's bounds."""

    start: datetime | None = None  # the job's first window
    watermark: datetime | None = None  # windows before this are done
    last_end: datetime | None = None  # windows up to this are due
    cursor: dict | None = None
    reason: str = ""


@dataclass
class _BatchResult:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    suppressions: dict[tuple[str, str], datetime] = field(default_factory=dict)
    streams: dict[str, tuple[int, dict]] = field(default_factory=dict)
    suppressed: int = 0
    by_feedback: int = 0  # alerts an analyst's false-positive verdict stopped
    in_training: int = 0  # leading windows a model was fitted on: scored, not alerted
    entities: dict[str, dict[str, str]] = field(default_factory=dict)  # alert id -> its entity fields
    related: dict[str, list["Related"]] = field(default_factory=dict)  # alert id -> what it touches
    scores: list["ScorePoint"] = field(default_factory=list)  # the entity score history's new rows


class JobRunner:
    def __init__(self, app: App, name: str):
        self.app = app
        self.name = name
        self.config = app.config.jobs[name]
        self.window = self.config.window
        self.builder: GraphBuilder = app._component("graph_builders", self.config.graph, ("jobs", name, "graph"), name)
        self.models = ModelManager(app, name)
        self._first: datetime | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ planning
    @property
    def source(self) -> "Source":
        return self.app.source(self.config.source)

    def plan(self) -> _Plan:
        checkpoint = self.app.state.checkpoint(self.name)
        cursor = checkpoint.cursor if checkpoint else None
        earliest, horizon = self.source.bounds(cursor)
        start = self._first_window(cursor, earliest)
        if checkpoint is None and start is None:
            return _Plan(reason="the source holds no events yet")
        watermark = checkpoint.watermark if checkpoint else start
        if horizon is None:
            return _Plan(start, watermark, watermark, cursor, reason="no new events since the checkpoint")
        last_end = align_up(horizon, self.window) if self.source.is_finite() else align_down(horizon, self.window)
        return _Plan(start, watermark, max(last_end, watermark), cursor)

    def _first_window(self, cursor: dict | None, earliest: datetime | None) -> datetime | None:
        """The job's first window: the config's `start`, else the source's earliest event.

        Worked out once per runner: it does not move, and past a checkpoint the source must be
        asked about all of its data (`bounds(None)`), not just what follows the cursor.
        """
        if self._first is None:
            if self.config.start:
                self._first = align_down(parse_time(self.config.start), self.window)
            else:
                if cursor is not None:
                    earliest = self.source.bounds(None)[0]
                self._first = align_down(earliest, self.window) if earliest else None
        return self._first

    def training_range(self, detector: str, plan: _Plan) -> tuple[datetime, datetime]:
        """The windows a model is fitted on: the `training.windows` windows before the
        watermark, or the first ones of the job when there is not that much history yet."""
        span = self.config.detectors[detector].training.windows * self.window
        assert plan.start is not None and plan.watermark is not None
        end = max(plan.watermark, plan.start + span)
        return end - span, end

    def requested_training_range(self, detector: str, start: datetime | None = None,
                                 end: datetime | None = None) -> tuple[datetime, datetime]:
        """The range `siem-gad train` fits on: from `start` (aligned to the window) to `end`, or
        `training.windows` windows after it; without `start`, the default training range."""
        span = self.config.detectors[detector].training.windows * self.window
        if start is not None:
            begin = align_down(start, self.window)
            return begin, align_down(end, self.window) if end is not None else begin + span
        plan = self.plan()
        if plan.start is None:
            raise ValueError(f"{self.name}: the source holds no events to train on")
        return self.training_range(detector, plan)

    # ------------------------------------------------------------------ models
    def worker_imports(self) -> list[str]:
        """What the job's source, graph builder and detectors import on first use."""
        classes = [type(self.source), type(self.builder), *map(self.models.detector_class, self.config.detectors)]
        return [module for cls in classes for module in cls.worker_imports]

    def ensure_models(self, plan: _Plan, progress: bool = False) -> str:
        """Load or train every detector; return why the job must wait, or '' when ready."""
        waiting, due = [], []
        for name in self.config.detectors:
            if self.models.current(name) is not None:
                continue
            start, end = self.training_range(name, plan)
            if plan.last_end is None or end > plan.last_end:
                have = max(0, int(((plan.last_end or start) - start) / self.window))
                need = self.config.detectors[name].training.windows
                waiting.append(f"detector {name!r} is waiting for training data: {have} of {need} windows available")
                continue
            due.append((name, start, end))
        if due:
            self.train_many(due, progress=progress)
        return "; ".join(waiting)

    def train_many(self, requests: list[tuple[str, datetime, datetime]], progress: bool = False) -> list[ModelRecord]:
        """Fit each (detector, start, end): every distinct range is read once, and the fits go
        to the executor together (in parallel on Ray)."""
        ranges = {(start, end): self.read_windows(start, end, cursor=None).windows for _, start, end in requests}
        return self.models.train_all([(name, ranges[start, end], start, end) for name, start, end in requests],
                                     progress=progress)

    # ------------------------------------------------------------------ data
    def read_windows(self, start: datetime, end: datetime, cursor: dict | None, keep_events: bool = False) -> "WindowBatch":
        """Read [start, end), run the enrich_events hooks and build one graph per window: the one
        way the pass, training and `evaluate` turn the source's events into windows, here or on
        the executor's workers. The batch keeps the events when `keep_events` (or when they
        were read here anyway)."""
        from .execution import BuildTask
        from .graphs import WindowGrid

        grid = WindowGrid(start, self.window, int((end - start) / self.window))
        enrich = self.enrich if self.app.host.implements("enrich_events") else None
        return self.app.executor().build(BuildTask(self.source, self.builder, grid, cursor, enrich, keep_events))

    def enrich(self, events: "pd.DataFrame") -> "pd.DataFrame":
        """Run the `enrich_events` hooks over a batch of events."""
        for plugin, result in self.app.host.call_each("enrich_events", events=events, job=self.name):
            if result is not None:
                events = result
        return events

    # ------------------------------------------------------------------ the pass
    def _quarantined_so_far(self) -> int:
        return int(self.source.counters().get("quarantined", 0))

    def run_pass(self, stop: threading.Event | None = None, progress: bool = False) -> PassOutcome:
        """Process everything that is due; safe to call again at any time."""
        with self._lock:
            began, clock = utcnow(), time.monotonic()
            try:
                before = self._quarantined_so_far()
                self.app.triage.sync_verdicts()
                self.app.triage.deliver_incidents()  # what a crash or an unreachable sink left behind
                outcome = self._run_pass(stop, progress)
                # Training reads (and quarantines) history too: the run reports all it set aside.
                outcome.quarantined = max(outcome.quarantined, self._quarantined_so_far() - before)
            except Exception as exc:  # noqa: BLE001 - recorded, reported, retried next schedule
                if isinstance(exc, OperationalError):
                    log.error("%s: pass failed: %s", self.name, exc)
                else:
                    log.exception("%s: pass failed: %s", self.name, exc)
                self.app.state.record_pass(PassRecord(self.name, began, None, None, 0, 0, 0,
                                                      (utcnow() - began).total_seconds(), "error", f"{type(exc).__name__}: {exc}"))
                outcome = PassOutcome(self.name, "error", f"{type(exc).__name__}: {exc}")
            self.app.triage.heartbeat(self, outcome, began, time.monotonic() - clock)
            return outcome

    def _run_pass(self, stop: threading.Event | None, progress: bool) -> PassOutcome:
        plan = self.plan()
        if plan.reason and plan.watermark is None:
            return self._wait(plan.reason)
        assert plan.watermark is not None and plan.last_end is not None
        if plan.last_end <= plan.watermark:
            return PassOutcome(self.name, "idle", "nothing due", watermark=plan.watermark)
        self.app.executor().warm(self.worker_imports())  # while the models load
        reason = self.ensure_models(plan, progress=progress)
        if reason:
            return self._wait(reason)

        total = int((plan.last_end - plan.watermark) / self.window)
        outcome = PassOutcome(self.name, "ok", watermark=plan.watermark)
        batch = self.config.batch_windows * self.window
        cursor = plan.cursor
        bar = _progress(total, f"{self.name}: windows", progress)
        start = plan.watermark
        while start < plan.last_end:
            if stop is not None and stop.is_set():
                outcome.status, outcome.message = "interrupted", "stopped at a batch boundary on request"
                break
            end = min(start + batch, plan.last_end)
            cursor, windows, events, alerts, quarantined, stopped = self._run_batch(start, end, cursor)
            outcome.stopped_by_feedback += stopped
            outcome.windows += windows
            outcome.events += events
            outcome.alerts += alerts
            outcome.quarantined += quarantined
            outcome.watermark = end
            bar.update(windows)
            start = end
        bar.close()
        return outcome

    def _wait(self, reason: str) -> PassOutcome:
        log.info("%s: waiting: %s", self.name, reason)
        now = utcnow()
        self.app.state.record_pass(PassRecord(self.name, now, None, None, 0, 0, 0, 0.0, "waiting", reason))
        return PassOutcome(self.name, "waiting", reason)

    def _run_batch(self, start: datetime, end: datetime, cursor: dict | None) -> tuple[dict | None, int, int, int, int, int]:
        began, clock = utcnow(), time.monotonic()
        batch = self.read_windows(start, end, cursor)
        windows, new_cursor, stats = batch.windows, batch.cursor, batch.stats
        result = self._detect(windows)
        for alert in result.alerts:
            self.app.host.call_each("enrich_alert", alert=alert, job=self.name)
        new = self._deliver(result.alerts)
        quarantined = stats.get("quarantined", 0)
        stored = ", ".join(f"{count} new in {sink}" for sink, count in new.items())
        feedback = f", {result.by_feedback} stopped by analysts' verdicts" if result.by_feedback else ""
        message = (f"{len(result.alerts)} alerts ({result.suppressed} suppressed{feedback}; {stored or 'none to store'})"
                   if result.alerts or result.suppressed or result.by_feedback else "")
        if result.in_training:
            message = f"{message}; " * bool(message) + f"{result.in_training} training window(s) scored, not alerted"
        if quarantined:
            message = f"{message}; " * bool(message) + f"{quarantined} malformed record(s) quarantined"
        if stats.get("late"):
            message = f"{message}; " * bool(message) + (f"{stats['late']} event(s) of windows read before arrived "
                                                        "late, after their window was read (raise query_delay)")
        record = PassRecord(self.name, began, start, end, stats.get("events", 0), len(result.alerts), quarantined,
                            time.monotonic() - clock, "quarantined" if quarantined else "ok", message)
        self.app.state.commit_pass(record, watermark=end, cursor=new_cursor, suppressions=result.suppressions,
                                   streams=result.streams,
                                   apply=self.app.triage.fold(result.alerts, result.entities, result.related,
                                                              result.scores))
        self.app.triage.deliver_incidents()
        log.info("%s: %s .. %s: %d events, %d windows, %d alerts (%s, %d suppressed) in %.2fs", self.name,
                 isoformat(start), isoformat(end), record.events, len(windows), len(result.alerts),
                 stored or "none to store", result.suppressed, record.duration_s)
        return new_cursor, len(windows), record.events, len(result.alerts), quarantined, result.by_feedback

    def _detect(self, windows: list["GraphWindow"]) -> _BatchResult:
        from .alerts import build_alert
        from .risk import confidence
        from .triage.neighbourhood import evidence_graph
        from .triage.related import entity_key, related_entities

        result = _BatchResult()
        state = self.app.state
        from .execution import ScoreTask

        stops = [v for v in self.app.triage.verdicts() if v.verdict == "false_positive"]
        alerted: dict[str, set[tuple[datetime, str]]] = {}  # detector -> (window start, entity key) alerted
        for name, loaded in self.models.loaded.items():
            if loaded.detector.stateful:
                loaded.detector.stream_state_ = state.stream_state(self.name, name, loaded.record.version)
        scored = {task.name: task.scores for task in self.app.executor().score_all(
            [ScoreTask(name, loaded.detector, windows, (self.name, name, loaded.record.version))
             for name, loaded in self.models.loaded.items()])}
        for name, loaded in self.models.loaded.items():
            detector, record, scores = loaded.detector, loaded.record, scored[name]
            if detector.stateful and detector.stream_state_ is not None:
                result.streams[name] = (record.version, detector.stream_state_)
            scale = detector.risk_scale()
            trained_windows = int((record.train_end - record.train_start) / self.window) \
                if record.train_start and record.train_end else None
            first = self.first_alertable(windows, record)
            result.in_training = max(result.in_training, first)
            for rule in self.app.rules.for_job(self.name):
                if rule.detector != name:
                    continue
                suppressor = Suppressor(rule, state.suppressed_until(rule.id), stops)
                for position, item, score, explanation in suppressor.alerts(windows[first:], scores[first:], detector):
                    position += first
                    window = windows[position]
                    related = related_entities(window, explanation, detector.level, item)
                    alert = build_alert(
                        rule=rule, job=self.name, detector=name, detector_type=self.config.detectors[name].type,
                        model_version=record.version, score=score, threshold=float(detector.threshold_),
                        window_start=window.start, window_end=window.end, explanation=explanation,
                        level=detector.level, normalised_score=scale.score(score),
                        confidence=confidence(trained_windows, window.num_events), related=related,
                        graph=evidence_graph(window, explanation, detector.level, item, scores[position],
                                             float(detector.threshold_)))
                    result.alerts.append(alert)
                    alerted.setdefault(name, set()).update(
                        (window.start, entity_key(f, v)) for f, v in explanation.entity.items())
                    result.entities[alert["siem_gad"]["alert_id"]] = dict(explanation.entity)
                    result.related[alert["siem_gad"]["alert_id"]] = related
                result.suppressed += suppressor.suppressed
                result.by_feedback += suppressor.by_feedback
                result.suppressions.update({(rule.id, key): until for key, until in suppressor.decided.items()})
        result.scores = self._score_points(windows, scored, alerted)
        return result

    def first_alertable(self, windows: list["GraphWindow"], record: ModelRecord) -> int:
        """How many leading windows of the batch lie in the range the model was fitted on.
        They are scored (for the score history) but raise no alerts unless the job sets
        `alert_training_windows`: a model's own training windows are what it calls normal, so
        what crosses its threshold there is the threshold's quantile, not news."""
        if self.config.alert_training_windows or record.train_end is None:
            return 0
        return sum(1 for window in windows if window.start < record.train_end)

    def _score_points(self, windows: list["GraphWindow"], scored: dict[str, list], alerted: dict[str, set]) -> list:
        """The batch's rows of the entity score history (`triage.scorebook`)."""
        from .triage.scorebook import batch_points, watched_entities

        if not windows:
            return []
        with self.app.state.transaction() as db:
            keep = watched_entities(db, self.name, windows[0].start)
        keep |= {key for pairs in alerted.values() for _, key in pairs}
        return [point for name, loaded in self.models.loaded.items()
                for point in batch_points(self.name, name, loaded.detector.level, windows, scored[name],
                                          float(loaded.detector.threshold_), alerted.get(name, set()), keep)]

    def _deliver(self, alerts: list[dict[str, Any]]) -> dict[str, int]:
        """Hand each alert to its rule's sinks; return how many were new to each sink (a batch
        repeated after a crash stores nothing twice: 0 new). Raises, so that nothing is
        committed, when a sink fails."""
        by_sink: dict[str, list[dict[str, Any]]] = {}
        rules = {r.id: r for r in self.app.rules.rules}
        default = self.config.sinks or list(self.app.config.sinks)
        for alert in alerts:
            for sink in rules[alert["rule"]["id"]].sinks or default:
                by_sink.setdefault(sink, []).append(alert)
        return {sink_name: self.app.sink(sink_name).write(batch) for sink_name, batch in by_sink.items()}

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        state = self.app.state
        checkpoint = state.checkpoint(self.name)
        models = []
        for name in self.config.detectors:
            model_state, record = self.models.state(name)
            models.append({
                "detector": name, "type": self.config.detectors[name].type,
                "version": record.version if record else None,
                "state": model_state,
                "trained_on": f"{isoformat(record.train_start)} .. {isoformat(record.train_end)}" if record and record.train_start else None,
                "threshold": record.metrics.get("threshold") if record else None,
                "fit_seconds": record.metrics.get("fit_seconds") if record else None,
            })
        passes = state.passes(self.name, limit=5)
        waiting = next((p.message for p in passes[:1] if p.status == "waiting"), None)
        return {
            "job": self.name,
            "source": self.config.source,
            "window": self.window.total_seconds(),
            "checkpoint": isoformat(checkpoint.watermark) if checkpoint else None,
            "lag_seconds": (utcnow() - checkpoint.watermark).total_seconds() if checkpoint else None,
            "source_counters": self.source.counters(),
            "dead_letters": sum(1 for d in state.dead_letters() if d.document.get("siem_gad", {}).get("job") == self.name),
            "models": models,
            "waiting": waiting,
            "passes": [{"started": isoformat(p.started_at), "window_start": p.window_start and isoformat(p.window_start),
                        "window_end": p.window_end and isoformat(p.window_end), "events": p.events, "alerts": p.alerts,
                        "quarantined": p.quarantined, "seconds": p.duration_s, "status": p.status, "message": p.message}
                       for p in passes],
        }


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="window", leave=False, disable=not enabled or total <= 1)
