"""Anomaly detectors: estimators over window graphs, in the scikit-learn / PyOD style.

Parameters go to `__init__` (validated by the class's `Params`), `fit(windows)` learns from a
list of `GraphWindow`s and sets the fitted attributes (`threshold_`, `metrics_`), `score(windows)`
returns one array of anomaly scores per window (higher is more anomalous) at the detector's
`level`, and `explain(window, item)` says why an item scored as it did. The threshold is the
`threshold_percentile` of the training scores.

Models are saved with `torch.save` as plain tensors and numbers and loaded with
`torch.load(weights_only=True)`: a model file cannot execute code. `get_state`/`set_state`
define what is saved.

Sequence detectors (`stateful = True`) carry a small stream state from one pass to the next
(`stream_state_`); the host stores it with the checkpoint, so a repeated pass sees the same state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
import logging
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

from pydantic import Field, model_validator

from ..lazy import lazy_import
from ..components import Params
from ..graphs import GraphWindow

np = lazy_import("numpy")

if TYPE_CHECKING:
    from ..risk import RiskScale

Level = Literal["window", "node", "edge"]
FORMAT_VERSION = 1


def renamed_key(data: Any, old: str, new: str, owner: str, accept: Callable[[Any], bool] = lambda v: True) -> Any:
    """Move a deprecated key to its new name (with a warning naming both), so old configs keep
    working; the value goes on to the new key's validation."""
    if isinstance(data, dict) and old in data and accept(data[old]):
        if new in data:
            raise ValueError(f"{old!r} is the old name of {new!r}: give only {new!r}")
        message = f"{owner}: {old!r} is deprecated, write {new}: {data[old]!r} instead"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        logging.getLogger("siem_gad.config").warning("%s", message)
        data = {**data, new: data[old]}
        del data[old]
    return data


class BaseDetectorParams(Params):
    """What every detector takes. `threshold` is always a score value (the score an item must
    reach); how a detector derives its own from the training scores is its `threshold_method`."""

    seed: int = Field(0, description="random seed: the same data and seed give the same model")


class DetectorParams(BaseDetectorParams):
    """Detectors whose threshold comes from their training scores."""

    threshold_percentile: float = Field(99.0, gt=0, lt=100, description="percentile of training scores used as threshold")


class ErrorThresholdParams(DetectorParams):
    """Parameters of detectors whose scores are reconstruction errors: besides the percentile,
    the usual rule for such errors, mean + k sigma (`threshold_from` applies either)."""

    threshold_method: Literal["percentile", "sigma"] = Field("percentile", description="how the alert threshold is set")
    sigma: float = Field(3.0, gt=0, description="k in mean + k sigma when threshold_method: sigma")

    @model_validator(mode="before")
    @classmethod
    def _old_threshold_key(cls, data: Any) -> Any:
        return renamed_key(data, "threshold", "threshold_method", "detector", lambda v: v in ("percentile", "sigma"))


@dataclass
class Explanation:
    """Why an item is anomalous: the entity, ranked contributors, and the events behind it."""

    entity: dict[str, str]
    contributors: list[dict[str, Any]]  # {"name", "value", "weight"}, strongest first
    evidence: list[str] = field(default_factory=list)
    evidence_count: int = 0
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class NotFittedError(RuntimeError):
    pass


class Detector(ABC):
    level: ClassVar[Level] = "node"
    stateful: ClassVar[bool] = False
    learns_from_labels: ClassVar[bool] = False  # analysts' verdicts label its training windows (triage/feedback.py)
    Params: ClassVar[type[BaseDetectorParams]] = DetectorParams
    # Modules scoring imports lazily (torch, PyG, scikit-learn): a new Ray worker imports them
    # while the driver is still loading the models (`execution.RayExecutor.warm`), not in the
    # first batch's scoring tasks.
    worker_imports: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self.params = self.Params.model_validate(params)
        self.threshold_: float | None = None
        self.metrics_: dict[str, Any] = {}
        self.stream_state_: dict[str, Any] | None = None
        self.score_reference_: list[float] = []  # quantiles of the reference scores (risk.py)
        # What the last `score` left for `explain`, keyed by window start (a sequence detector's
        # filtered steps). The Ray engine scores in a worker and explains in the driver, so it
        # brings this back with the scores: explanations do not depend on where scoring ran.
        self.explain_cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ estimator API
    @abstractmethod
    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "Detector":
        """Learn from training windows; sets `threshold_` and `metrics_`."""

    @abstractmethod
    def score(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        """Anomaly scores per window: shape (1,) for level 'window', (num_nodes,) for 'node'."""

    @abstractmethod
    def explain(self, window: GraphWindow, item: int, top_k: int = 5) -> Explanation:
        """Explain the score of `item` (node or edge index, 0 for window level) in `window`."""

    def alert_entity(self, window: GraphWindow, item: int) -> dict[str, str] | None:
        """The entity an alert on `item` names, where it is known without `explain` (a node-level
        alert names its node), so suppression and feedback can drop an alert before its
        explanation is computed; None where the explanation picks it (a window-level alert)."""
        return window.entity(item) if self.level == "node" else None

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """Fitted state as tensors, numbers, strings, lists and dicts (weights-only safe)."""

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_state` returned."""

    # The names data scientists know from scikit-learn and PyOD.
    def decision_function(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        """Alias of `score` (PyOD's name): higher is more anomalous."""
        return self.score(windows)

    def predict(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        """1 where the score reaches the fitted threshold, else 0 (PyOD's labels), per window."""
        self.check_fitted()
        return [(np.asarray(s) >= self.threshold_).astype(np.int8) for s in self.score(windows)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The parameters, as `__init__` takes them (scikit-learn's contract)."""
        return self.params.model_dump()

    def set_params(self, **params: Any) -> "Detector":
        """Change parameters (validated like `__init__`); fitted state is kept as it is."""
        self.params = self.Params.model_validate({**self.params.model_dump(), **params})
        return self

    @property
    def is_fitted(self) -> bool:
        return self.threshold_ is not None

    def check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load a model first")

    def threshold_from(self, scores: np.ndarray) -> float:
        """The alert threshold from reference scores: their `threshold_percentile`, or mean +
        `sigma` x std where the params ask for it (`ErrorThresholdParams.threshold_method`)."""
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) == 0:
            raise ValueError("no training scores to set a threshold from (were the training windows empty?)")
        self.remember_scores(scores)
        if isinstance(self.params, ErrorThresholdParams) and self.params.threshold_method == "sigma":
            return float(scores.mean() + self.params.sigma * scores.std())
        return float(np.percentile(scores, self.params.threshold_percentile))

    def remember_scores(self, scores: np.ndarray) -> None:
        """Keep the quantiles of the scores the threshold is judged against: the 0-100 risk
        scale of the model's alerts is read from them (`risk_scale`). `threshold_from` calls
        it; detectors that set their threshold otherwise call it with their reference scores."""
        from ..risk import reference_quantiles

        self.score_reference_ = reference_quantiles(scores)

    def risk_scale(self) -> "RiskScale":
        """The map from this model's raw scores to `event.risk_score` (0-100)."""
        from ..risk import RiskScale

        self.check_fitted()
        return RiskScale(float(self.threshold_), tuple(self.score_reference_))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        import torch

        self.check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT_VERSION,
            "detector": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self.params.model_dump(mode="json"),
            "threshold": float(self.threshold_),  # type: ignore[arg-type]
            "score_reference": [float(v) for v in self.score_reference_],
            "metrics": _plain(self.metrics_),
            "state": self.get_state(),
        }
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename, and before the registry names it
        tmp.replace(path)  # never leave a half-written model behind

    @classmethod
    def load(cls, path: Path) -> "Detector":
        """The detector saved at `path`; ValueError when the file is not a model of this class
        (damaged, cut short, another format or detector), so that the caller retrains."""
        import pickle

        import torch

        try:
            payload = torch.load(Path(path), weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise ValueError(f"{path}: not a readable model file ({str(exc).splitlines()[0]})") from None
        if not isinstance(payload, dict):
            raise ValueError(f"{path}: not a model file (a {type(payload).__name__})")
        if payload.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported model format {payload.get('format')!r}")
        saved_by, loading = payload.get("detector"), f"{cls.__module__}.{cls.__qualname__}"
        if saved_by != loading:
            raise ValueError(f"{path}: saved by detector {saved_by}, not {loading}; load it with that class")
        detector = cls(**payload["params"])
        detector.set_state(payload["state"])
        detector.threshold_ = float(payload["threshold"])
        detector.score_reference_ = [float(v) for v in payload.get("score_reference", [])]  # none before risk.py
        detector.metrics_ = dict(payload["metrics"])
        return detector


def _plain(value: Any) -> Any:
    """Metrics as plain Python numbers, so they load under weights_only and dump to JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def contamination_field() -> Any:
    """The `contamination` parameter of the row detectors (`iforest`, the tabular ones)."""
    return Field(0.0, ge=0, lt=0.5, description=(
        "share of training rows assumed to be attacks or noise: after a first fit, that share of the "
        "highest-scoring rows is dropped, the model is fitted again on the rest, and the threshold is "
        "the percentile of the kept rows' scores"))


def subsample_index(count: int, limit: int, rng: np.random.Generator) -> np.ndarray | None:
    """Which of `count` rows to keep, at most `limit`, drawn without replacement, in order;
    None when all of them fit (no draw is made, so the generator is left as it was)."""
    return np.sort(rng.choice(count, limit, replace=False)) if count > limit else None


def subsample(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most `limit` of the rows (`subsample_index`)."""
    keep = subsample_index(len(rows), limit, rng)
    return rows if keep is None else rows[keep]


def kept_after_trimming(scores: np.ndarray, contamination: float) -> np.ndarray:
    """The rows that stay when the `contamination` share scoring highest is dropped (a mask;
    every row when it is 0). Ties at the cut stay, so at most that share goes."""
    scores = np.asarray(scores, dtype=np.float64)
    if contamination <= 0 or len(scores) == 0:
        return np.ones(len(scores), dtype=bool)
    return scores <= np.quantile(scores, 1.0 - contamination)


def standardizer(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of training rows, per column; a column that is constant in
    training gets std 1 (as scikit-learn's StandardScaler does). Without that floor a value never
    seen in training lands millions of standard deviations out, and one such feature outweighs
    every other feature of every score and explanation."""
    rows = np.asarray(rows)
    dtype = rows.dtype if rows.dtype == np.float64 else np.float32
    if len(rows) == 0:
        return np.zeros(rows.shape[1], dtype), np.ones(rows.shape[1], dtype)
    mean, std = rows.mean(axis=0, dtype=np.float64), rows.std(axis=0, dtype=np.float64)
    return mean.astype(dtype), np.where(std > 1e-6, std, 1.0).astype(dtype)


def feature_contributors(window: GraphWindow, node: int, mean: np.ndarray, std: np.ndarray, top_k: int) -> list[dict[str, Any]]:
    """Features of a node ranked by how far they lie from the training distribution (|z|)."""
    z = (window.x[node] - mean) / std
    order = np.argsort(-np.abs(z))[:top_k]
    return [{"name": window.feature_names[i], "value": readable(window, i, window.x[node, i]),
             "typical": readable(window, i, mean[i]), "weight": round(float(z[i]), 3)} for i in order]


def readable(window: GraphWindow, feature: int, value: float) -> float:
    """A feature value for display: features the builder declares log1p-scaled
    (`GraphWindow.log_scaled`) back in counts, the others as they are."""
    if window.feature_names[feature] in window.log_scaled:
        return round(float(np.expm1(value)), 1)
    return round(float(value), 3)


def nodes_summary(contributors: list[dict[str, Any]], limit: int = 3) -> str:
    return ", ".join(f"{c['name']}={c['value']} ({c['weight']:+.2f})" for c in contributors[:limit])
