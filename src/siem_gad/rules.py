"""Alert rules: one YAML file per rule in `rules_dir`, turning detector scores into alerts.

A rule names a job and one of its detectors, a condition (score at or above the model's
threshold or a number, optionally only the top k per window), severity and risk score, a
message template, suppression (one alert per entity key per period), MITRE ATT&CK ids, and
the sinks to write to. See docs/configuration.md for every key.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from .config import AppConfig, Duration, Name, Strict
from .yamlfile import ConfigError, Problem, load_yaml

if TYPE_CHECKING:
    import numpy as np

    from .graphs import GraphWindow

SEVERITY_RISK = {"low": 21, "medium": 47, "high": 73, "critical": 99}
TEMPLATE_FIELDS = frozenset({
    "rule", "rule_id", "job", "detector", "entity", "entity_field", "entity_value", "score", "threshold",
    "window_start", "window_end", "explanation", "top_contributor", "severity",
})
DEFAULT_MESSAGE = "{detector}: {entity} anomalous in window {window_start} (score {score:.3f} >= {threshold:.3f}): {explanation}"


class Condition(Strict):
    threshold: Literal["model"] | float = Field("model", description="'model' uses the detector's fitted threshold")
    top_k: int | None = Field(None, ge=1, description="at most this many alerts per window, highest scores first; "
                              "items suppressed or stopped by feedback leave their place to the next")
    min_risk_score: float | None = Field(None, ge=0, le=100,
                                         description="only items whose 0-100 risk score (risk.py) reaches this")


class Suppression(Strict):
    key: list[str] | None = Field(None, description="entity fields forming the key; default: the alert's entity fields")
    period: Duration = timedelta(hours=1)


TechniqueId = Annotated[str, Field(pattern=r"^T\d{4}(\.\d{3})?$")]
TacticId = Annotated[str, Field(pattern=r"^TA\d{4}$")]


class Threat(Strict):
    techniques: list[TechniqueId] = Field(default_factory=list)
    tactics: list[TacticId] = Field(default_factory=list)


class Rule(Strict):
    id: Name
    name: str
    description: str = ""
    enabled: bool = True
    job: Name
    detector: Name
    condition: Condition = Condition()
    severity: Literal["low", "medium", "high", "critical"] | None = Field(
        None, description="fixed severity; default: the band of the alert's risk score (risk.py)")
    risk_score: int | None = Field(None, ge=0, le=100, description="fixed risk score; default: the detector's 0-100 scale")
    message: str = DEFAULT_MESSAGE
    suppress: Suppression | None = None
    threat: Threat = Threat()
    sinks: list[Name] | None = None
    file: Path | None = Field(None, exclude=True)

    @field_validator("message")
    @classmethod
    def _check_template(cls, value: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"invalid message template: {exc}") from None
        unknown = sorted(n for n in names if n.split(".")[0].split("[")[0] not in TEMPLATE_FIELDS)
        if unknown or "" in names:
            raise ValueError(f"unknown placeholder(s) {unknown or ['{}']} in message; available: {', '.join(sorted(TEMPLATE_FIELDS))}")
        return value

    def alert_risk(self, normalised: float) -> tuple[float, str]:
        """(risk score, severity) of an alert whose detector scored it `normalised` (0-100):
        the rule's own values where it sets them, else the score and its band."""
        from .risk import severity_of

        risk = float(self.risk_score) if self.risk_score is not None else normalised
        return risk, self.severity or severity_of(risk)

    def select(self, windows: list["GraphWindow"], scores: list["np.ndarray"], threshold: float) -> list[tuple[int, int, float]]:
        """(window position, item, score) of the items over the threshold, in window order and
        by score within a window; `top_k` is applied to what suppression leaves (`Suppressor`)."""
        import numpy as np

        bar = threshold if self.condition.threshold == "model" else float(self.condition.threshold)
        picked = []
        for position, values in enumerate(scores):
            values = np.asarray(values, dtype=np.float64)
            hits = np.flatnonzero(np.nan_to_num(values, nan=-np.inf) >= bar)
            hits = hits[np.argsort(-values[hits], kind="stable")]
            picked.extend((position, int(i), float(values[i])) for i in hits)
        return picked


class Suppressor:
    """A rule's condition and suppression over a batch of windows: which items become alerts.

    `until` holds the suppression state from earlier passes (key -> time before which the key
    is suppressed); `decided` collects the new state to commit with the checkpoint. `stops` are
    analysts' verdicts (triage/feedback.py); the items they stop are counted in `by_feedback`.

    `top_k` counts the alerts a window sends: an entity that is suppressed (alerted within the
    period) or stopped by feedback leaves its place to the next one over the threshold, so the
    same few entities at the top of every window cannot keep the rest from ever alerting. Only
    alerts that are sent are explained (`Detector.alert_entity` names the others' entities).
    """

    def __init__(self, rule: Rule, until: dict[str, datetime] | None = None, stops: list | None = None):
        self.rule = rule
        self.until = dict(until or {})
        self.decided: dict[str, datetime] = {}
        self.stops = list(stops or [])
        self.suppressed = 0
        self.by_feedback = 0

    def alerts(self, windows: list["GraphWindow"], scores: list["np.ndarray"], detector: Any) -> list[tuple]:
        """(window position, item, score, explanation) of the alerts, in window order."""
        from .triage.feedback import suppressing

        rule, out = self.rule, []
        scale = detector.risk_scale() if rule.condition.min_risk_score is not None else None
        sent: dict[int, int] = {}  # window position -> alerts so far
        for position, item, score in rule.select(windows, scores, detector.threshold_):
            if rule.condition.top_k and sent.get(position, 0) >= rule.condition.top_k:
                continue
            if scale is not None and scale.score(score) < rule.condition.min_risk_score:
                continue
            window = windows[position]
            entity = detector.alert_entity(window, item)
            explanation = None if entity is not None else detector.explain(window, item)
            entity = entity if entity is not None else explanation.entity
            if self.stops and suppressing(self.stops, rule.id, entity, window.start):
                self.by_feedback += 1
                continue
            if rule.suppress:
                fields = rule.suppress.key or sorted(entity)
                key = "|".join(f"{f}={entity.get(f, '')}" for f in fields)
                until = self.decided.get(key) or self.until.get(key)
                if until is not None and window.start < until:
                    self.suppressed += 1
                    continue
                self.decided[key] = window.start + rule.suppress.period
            sent[position] = sent.get(position, 0) + 1
            out.append((position, item, score, explanation or detector.explain(window, item)))
        return out


@dataclass
class RuleSet:
    rules: list[Rule]

    def for_job(self, job: str) -> list[Rule]:
        return [r for r in self.rules if r.enabled and r.job == job]


def load_rules(config: AppConfig) -> RuleSet:
    """Load and validate every `*.yml` / `*.yaml` in the rules directory against the config."""
    directory = config.rules_path
    if not directory.is_dir():
        raise ConfigError([Problem(config.file, ("rules_dir",), f"rules directory not found: {directory}")])
    problems: list[Problem] = []
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
        try:
            doc = load_yaml(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if not isinstance(doc.data, dict):
            problems.append(doc.problem((), "a rule file holds one mapping (one rule per file)"))
            continue
        data = {"id": path.stem, **doc.data}
        try:
            rule = Rule.model_validate(data)
        except ValidationError as exc:
            problems.extend(doc.validation_problems(exc))
            continue
        rule.file = path
        if rule.id in seen:
            problems.append(doc.problem(("id",), f"rule id {rule.id!r} is also used by {seen[rule.id]}"))
        seen[rule.id] = path
        job = config.jobs.get(rule.job)
        if job is None:
            problems.append(doc.problem(("job",), f"no job named {rule.job!r} in {config.file.name} (jobs: {', '.join(config.jobs)})"))
        elif rule.detector not in job.detectors:
            problems.append(doc.problem(("detector",), f"job {rule.job!r} has no detector {rule.detector!r} (detectors: {', '.join(job.detectors)})"))
        for index, sink in enumerate(rule.sinks or []):
            if sink not in config.sinks:
                problems.append(doc.problem(("sinks", index), f"no sink named {sink!r} (sinks: {', '.join(config.sinks)})"))
        rules.append(rule)
    if problems:
        raise ConfigError(problems)
    return RuleSet(rules)
