"""Replay a config's jobs over labeled history, train, score, and measure every detector and rule.

Per job: the events of the range are read once through the job's source and `enrich_events`
hooks and built into windows by the job's graph builder. Each detector is fitted on the first
`training.windows` windows of the range (its configured training size) and scores the rest;
with `use_models` the job's current models from the state store score the whole range instead.
Labels come from a field of the events (see `labels.py`), and the rules of the job are applied
with their suppression, since rule alerts are what analysts see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..rules import Suppressor
from ..timeutil import align_down, align_up, isoformat
from ..labeling import positive_mask
from .labels import LabelIndex
from .metrics import day_metrics, score_metrics

if TYPE_CHECKING:
    import pandas as pd

    from ..pipeline import App, JobRunner

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """The evaluation cannot run as asked (bad label field, no positives, no events ...)."""


@dataclass
class DetectorEvaluation:
    job: str
    detector: str
    type: str
    level: str
    threshold: float
    train: tuple[datetime, datetime] | None  # None: a stored model was used
    scored: tuple[datetime, datetime]
    items: "pd.DataFrame"  # window, window_start, item, entity, score, positive, labels
    metrics: dict[str, Any]
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Evaluation:
    config: str
    label_field: str
    positives: list[str]
    detectors: list[DetectorEvaluation] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # per job: events, windows, positives


def evaluate(app: "App", *, label_field: str, positives: Iterable[str] | None = None, start: datetime | None = None,
             end: datetime | None = None, jobs: Iterable[str] | None = None, use_models: bool = False,
             progress: bool = False, verdicts: Iterable[Any] = ()) -> Evaluation:
    """`verdicts`: analysts' verdicts (triage.feedback.Verdict) from the production state; each
    rule reports its precision with and without the alerts their false positives stop."""
    positives = list(positives or [])
    result = Evaluation(str(app.config.file), label_field, positives)
    stops = [v for v in verdicts if v.verdict == "false_positive"]
    for name in jobs or app.config.jobs:
        _evaluate_job(app, app.job(name), result, label_field, positives, start, end, use_models, progress, stops)
    return result


def _evaluate_job(app: "App", runner: "JobRunner", result: Evaluation, label_field: str, positives: list[str],
                  start: datetime | None, end: datetime | None, use_models: bool, progress: bool,
                  stops: list) -> None:
    source = runner.source
    source.start()
    plan = runner.plan()
    begin = align_down(start, runner.window) if start else plan.start
    finish = (align_up(end, runner.window) if end else plan.last_end)
    if begin is None or finish is None or finish <= begin:
        raise EvaluationError(f"job {runner.name}: the source holds no events in the range to evaluate")
    batch = runner.read_windows(begin, finish, None, keep_events=True)
    events, windows = batch.events, batch.windows
    if events.empty:
        raise EvaluationError(f"job {runner.name}: no events between {isoformat(begin)} and {isoformat(finish)}")
    if label_field not in events.columns:
        known = ", ".join(sorted(c for c in events.columns if not c.startswith("@")))
        raise EvaluationError(f"job {runner.name}: the events have no field {label_field!r} (fields: {known})")
    data = {"events": int(len(events)), "windows": len(windows), "from": isoformat(begin), "to": isoformat(finish),
            "positive_events": int(positive_mask(events[label_field], positives).sum())}
    result.data[runner.name] = data
    if data["positive_events"] == 0:
        raise EvaluationError(f"job {runner.name}: no positive labels in {label_field!r} between {isoformat(begin)} "
                              f"and {isoformat(finish)} (positive values: {positives or 'anything but benign/normal/-/0'})")
    names = list(runner.config.detectors)
    if progress and len(names) > 1:
        from tqdm.auto import tqdm

        names = tqdm(names, desc=f"{runner.name}: detectors", unit="detector", leave=False)
    for name in names:
        spec = runner.config.detectors[name]
        detector, train, scored = _detector(app, runner, name, windows, use_models, progress)
        scored_from = scored[0].start
        labels = LabelIndex.build(events[events["@timestamp"] >= scored_from], label_field, positives, begin,
                                  runner.window, runner.builder.entity_fields)
        evaluation = _measure(runner, name, spec.type, detector, scored, labels, train, stops)
        result.detectors.append(evaluation)


def _detector(app: "App", runner: "JobRunner", name: str, windows: list, use_models: bool, progress: bool):
    spec = runner.config.detectors[name]
    if use_models:
        loaded = runner.models.current(name)
        if loaded is None:
            state, _ = runner.models.state(name)
            why = {"stale": "trained with another configuration", "current": "unusable"}.get(state, state)
            raise EvaluationError(f"detector {runner.name}/{name} is {why}: "
                                  f"run `siem-gad train -c FILE --job {runner.name} --detector {name}`, or evaluate "
                                  f"without --use-models")
        return loaded.detector, None, windows
    needed = spec.training.windows
    if len(windows) <= needed:
        raise EvaluationError(f"detector {runner.name}/{name} trains on {needed} windows, but the range has only "
                              f"{len(windows)}: widen --from/--to or lower training.windows")
    training, scored = windows[:needed], windows[needed:]
    if not any(w.num_nodes for w in training):
        raise EvaluationError(f"detector {runner.name}/{name} cannot be trained: no events in its training windows "
                              f"{isoformat(training[0].start)} .. {isoformat(training[-1].end)}")
    log.info("%s/%s: training on %d windows, scoring %d", runner.name, name, len(training), len(scored))
    detector = runner.models.new_detector(name).fit(training, progress=progress)
    return detector, (training[0].start, training[-1].end), scored


def _measure(runner: "JobRunner", name: str, kind: str, detector: Any, windows: list, labels: LabelIndex,
             train: tuple | None, stops: list) -> DetectorEvaluation:
    import pandas as pd

    scores = detector.score(windows)
    rows = []
    for window, values in zip(windows, scores):
        for item, (value, item_labels) in enumerate(zip(np.asarray(values, dtype=float),
                                                        labels.item_labels(window, detector.level))):
            if np.isnan(value):  # items a detector does not score (hetero_gnn's flow nodes, host copies)
                continue
            rows.append((window.index, window.start, window.end, item, _entity(window, detector.level, item), value,
                         bool(item_labels), ",".join(sorted(item_labels))))
    items = pd.DataFrame(rows, columns=["window", "window_start", "window_end", "item", "entity", "score", "positive",
                                        "labels"])
    threshold = float(detector.threshold_)
    metrics = score_metrics(items["positive"].to_numpy(), items["score"].to_numpy(), threshold)
    days = max((windows[-1].end - windows[0].start) / timedelta(days=1), 1e-9)
    flagged = items[items["score"] >= threshold]
    metrics["alerts_per_day"] = len(flagged) / days
    metrics["per_day"] = day_metrics(items, threshold)
    attack_days = [d for d in metrics["per_day"] if d["roc_auc"] is not None]
    metrics["attack_day_roc_auc_min"] = min((d["roc_auc"] for d in attack_days), default=None)
    incidents = _incidents(items)
    metrics["incidents"] = sorted(incidents)
    metrics["detection_delay_s"] = _delays(flagged, labels, incidents)
    evaluation = DetectorEvaluation(runner.name, name, kind, detector.level, threshold, train,
                                    (windows[0].start, windows[-1].end), items, metrics)
    for rule in runner.app.rules.for_job(runner.name):
        if rule.detector == name:
            evaluation.rules[rule.id] = _rule_metrics(rule, windows, scores, detector, items, labels, incidents, days,
                                                      stops)
    return evaluation


def _entity(window, level: str, item: int) -> str:
    if level == "node":
        return " ".join(f"{k}={v}" for k, v in window.entity(item).items())
    if level == "edge":
        a, b = window.edge_index[:, item]
        return f"{window.node_value[a]} -> {window.node_value[b]}"
    return ""


def _incidents(items: "pd.DataFrame") -> set[str]:
    """The label values this detector can see: those of its positive items (an incident without
    events of the graph's entity fields is not one the detector could catch)."""
    return {label for text in items["labels"] for label in text.split(",") if label}


def _delays(flagged: "pd.DataFrame", labels: LabelIndex, incidents: set[str]) -> dict[str, float | None]:
    """Per incident (label value): first alert (window end) minus its first labeled event, in seconds;
    None when no flagged item holds it."""
    delays: dict[str, float | None] = {}
    for incident, first in sorted(labels.first_seen.items()):
        if incident not in incidents:
            continue
        caught = flagged[flagged["labels"].str.split(",").apply(lambda values, i=incident: i in values)]
        delays[incident] = ((caught["window_end"].min() - first).total_seconds() if len(caught) else None)
    return delays


def _rule_metrics(rule, windows, scores, detector, items: "pd.DataFrame", labels: LabelIndex, incidents: set[str],
                  days: float, stops: list) -> dict:
    suppressor = Suppressor(rule)
    alerts = suppressor.alerts(windows, scores, detector)
    row_of = {key: row for row, key in enumerate(zip(items["window"], items["item"]))}
    rows = [row_of[(windows[position].index, item)] for position, item, *_ in alerts]
    frame = items.iloc[rows]
    true_alerts = int(frame["positive"].sum())
    caught = _incidents(frame)
    # with the analysts' false positives: what the same rule sends once they stop their scopes
    with_feedback = Suppressor(rule, stops=stops).alerts(windows, scores, detector) if stops else alerts
    kept = [row_of[(windows[position].index, item)] for position, item, *_ in with_feedback]
    kept_true = int(items.iloc[kept]["positive"].sum())
    return {
        "feedback": {"verdicts": len(stops), "alerts": len(kept), "true_alerts": kept_true,
                     "precision": kept_true / len(kept) if kept else 0.0},
        "alerts": len(alerts), "suppressed": suppressor.suppressed, "true_alerts": true_alerts,
        "precision": true_alerts / len(alerts) if alerts else 0.0,
        "incidents_detected": sorted(caught), "incidents": sorted(incidents),
        "incident_recall": len(caught) / len(incidents) if incidents else 0.0,
        "alerts_per_day": len(alerts) / days,
        "detection_delay_s": _delays(frame, labels, incidents),
    }
