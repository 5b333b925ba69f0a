"""The novelty half of the supervised graph detectors (`novelty: true`, `supervised.py`).

A supervised model knows the attacks its labels showed; the novelty half is there for the
family nobody labeled. It asks of each node: does any one of its features take a value the
training nodes (benign and attack alike: everything the model has seen) rarely or never took?

- **Rarity** of a node is, over its behaviour features, the largest -log of the share of
  training nodes at least as extreme on that feature (either tail, Laplace-smoothed). A flag
  or state never seen in training scores log(reference rows + 2); a common one about 0. Time
  of day and of week are left out (`graphs.TIME_OF_DAY_FEATURES`): a new network's hours are
  not an attack. A value common in training, under any label, is not new: what the labels
  taught, the supervised half judges.
- **Threshold**: the `novelty_percentile` of held-out benign training nodes' rarity; a node
  is novel above it. `ratio()` is rarity over that threshold.
- **Burst**: where a node is a single event (a flow), one odd event is weak evidence: every
  network has its own oddities (an Echo's half-closed sessions, a gateway's resets), and on a
  network the model never saw they are novel too. Floods and scans repeat theirs by the
  hundred. So a flow's novelty counts only when its sender sent at least `burst` novel flows
  per ten minutes of its window (`groups`; an hour's window needs six times as many, a window
  under ten minutes still `burst`); outside a burst it is 0, so the supervised half alone
  ranks and alerts there. Host-level nodes already sum their events and are not grouped.

Measured on IoT-23 leave-one-capture-out (docs/benchmarks.md, "The product detector"): 34-1's
DDoS flood, no other capture's traffic, carries a TCP flag (Zeek's `C`) that two of the other
captures' 6,619 flows show, 13,617 times in ten minutes; the honeypots' own oddities come 10-21
per ten minutes (and 60-130 an hour, which a count per window regardless of its length let
through: bench/deployment.py's hourly windows).

Its state is a sorted sample of the training nodes per feature (at most `MAX_ROWS` rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..graphs import TIME_OF_DAY_FEATURES
from . import subsample

if TYPE_CHECKING:
    from ..graphs import GraphWindow


BURST_MINUTES = 10.0  # `burst` counts novel flows per this many minutes of window


class NoveltyHalf:
    MAX_ROWS = 20_000

    def __init__(self, reference: np.ndarray, columns: np.ndarray, names: tuple[str, ...], threshold: float,
                 burst: int):
        self.reference = np.asarray(reference, dtype=np.float32)  # per behaviour column, its training values sorted
        self.columns = np.asarray(columns, dtype=np.int64)  # which of a node's features they are
        self.names = tuple(names)  # those features' names, for explanations
        self.threshold = float(threshold)
        self.burst = int(burst)

    @classmethod
    def fit(cls, seen: np.ndarray, benign: np.ndarray, feature_names: tuple[str, ...], percentile: float,
            burst: int, seed: int) -> "NoveltyHalf":
        """`seen`: the training nodes' features (every label); `benign`: benign nodes that the
        reference should not hold (held out), whose rarity sets the threshold."""
        columns = np.array([i for i, name in enumerate(feature_names) if name not in TIME_OF_DAY_FEATURES], np.int64)
        if len(seen) < 2 or not len(benign) or not len(columns):
            raise ValueError("novelty needs benign-labeled training nodes with behaviour features to learn what is "
                             "usual")
        sample = subsample(np.asarray(seen)[:, columns], cls.MAX_ROWS, np.random.default_rng(seed))
        half = cls(np.sort(sample.T, axis=1), columns, tuple(feature_names[i] for i in columns), 1.0, burst)
        cut = float(np.percentile(half.rarity(benign)[0], percentile))
        # novel means above the benign nodes' percentile: ties at it (common with flags) are not
        half.threshold = max(float(np.nextafter(cut, np.inf)), 1e-9)
        return half

    def rarity(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's rarity and the position (in `names`) of the feature that gives it."""
        rows = np.asarray(rows, dtype=np.float32)
        n = self.reference.shape[1]
        if not len(rows):
            return np.zeros(0), np.zeros(0, np.int64)
        # the rarest value is the one with the fewest training values at least as extreme
        fewest = np.empty((len(rows), len(self.columns)), dtype=np.int64)
        for j, column in enumerate(self.columns):
            values = self.reference[j]
            fewest[:, j] = np.minimum(n - np.searchsorted(values, rows[:, column], side="left"),
                                      np.searchsorted(values, rows[:, column], side="right"))
        which = fewest.argmin(axis=1)
        return -np.log((fewest[np.arange(len(rows)), which] + 1) / (n + 2)), which

    def ratio(self, rows: np.ndarray, groups: np.ndarray | None = None,
              minutes: float = BURST_MINUTES) -> np.ndarray:
        """Rarity over the threshold (1: at it); with `groups` (each row's sender in a window of
        `minutes`), 0 outside a burst (module docstring)."""
        return self.ratios([rows], None if groups is None else lambda _: groups, [minutes])[0]

    def ratios(self, rows: list[np.ndarray], groups: Callable[[int], np.ndarray] | None,
               minutes: Sequence[float] | None = None) -> list[np.ndarray]:
        """`ratio` of many windows' rows at once: one rarity lookup for all, the burst counted
        per window. `groups(i)` gives window i's senders; it is asked only of windows with a
        novel row (None: nodes are judged alone). `minutes`: each window's length (default:
        ten minutes each)."""
        sizes = [len(r) for r in rows]
        if not sum(sizes):
            return [np.zeros(0) for _ in rows]
        everything = self.rarity(np.concatenate([np.asarray(r, dtype=np.float32) for r in rows if len(r)]))[0]
        ratios = np.split(everything / self.threshold, np.cumsum(sizes)[:-1])
        if groups is None or self.burst <= 1:
            return ratios
        minutes = [BURST_MINUTES] * len(rows) if minutes is None else minutes
        return [self._in_bursts(ratio, groups(i), length) if (ratio >= 1).any() else np.zeros(len(ratio))
                for i, (ratio, length) in enumerate(zip(ratios, minutes))]

    def window_ratios(self, windows: list["GraphWindow"], kind: int,
                      groups: Callable[["GraphWindow"], np.ndarray] | None) -> list[np.ndarray]:
        """`ratios` of the nodes of `kind` in each window, with each window's length, and the
        senders (`groups(window)`) asked only of windows with a novel node."""
        return self.ratios([w.kind_x(kind) for w in windows], None if groups is None else lambda i: groups(windows[i]),
                           [(w.end - w.start).total_seconds() / 60 for w in windows])

    def needed(self, minutes: float) -> float:
        """Novel flows a sender must send in a window of `minutes` for them to count."""
        return self.burst * max(1.0, minutes / BURST_MINUTES)

    def _in_bursts(self, ratio: np.ndarray, groups: np.ndarray, minutes: float) -> np.ndarray:
        _, group = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        novel = np.bincount(group, weights=(ratio >= 1).astype(np.float64))[group]
        return np.where(novel >= self.needed(minutes), ratio, 0.0)

    def rarest(self, rows: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        """What an explanation says of each row: the feature whose value is rarest in training,
        the share of training nodes with a value at least as extreme there, and whether the row
        is novel by itself (before any burst)."""
        rarity, which = self.rarity(rows)
        return [self.names[i] for i in which], np.exp(-rarity), rarity >= self.threshold

    def get_state(self) -> dict[str, Any]:
        import torch

        return {"reference": torch.from_numpy(np.ascontiguousarray(self.reference)),
                "columns": torch.from_numpy(self.columns), "names": list(self.names), "threshold": self.threshold}

    @classmethod
    def from_state(cls, state: dict[str, Any], burst: int) -> "NoveltyHalf":
        if "reference" not in state:
            raise ValueError("this model's novelty half is an isolation forest, from a siem-gad before the rarity "
                             "novelty (docs/detectors.md): train the model again")
        return cls(state["reference"].numpy(), state["columns"].numpy(), tuple(state["names"]),
                   float(state["threshold"]), burst)
