"""Detectors whose model is a table of per-entity values, looked up by key when scoring.

`rare_links` keeps the training rate of every link it saw. On one machine the table lives in the
detector; on a Ray cluster (`execution/shards.py`) it is split over actors by a consistent hash
of each key's entity, so that a table too large for one process still fits, and a scoring pass
asks each actor only for the keys of its shard. A detector opts in by implementing the four
methods of `KeyedBaseline`; its `score` must equal looking its keys up in its own table and
calling `score_from_baseline`, which the Ray engine does with the actors' answers instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ..lazy import lazy_import

np = lazy_import("numpy")

if TYPE_CHECKING:
    import numpy

    from ..graphs import GraphWindow


def look_up(keys: "numpy.ndarray", values: "numpy.ndarray", queries: "numpy.ndarray") -> "numpy.ndarray":
    """The value of each query in the sorted `keys` (0 for a key not in the table)."""
    if not len(keys):
        return np.zeros(len(queries))
    at = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return np.where(keys[at] == queries, values[at], 0.0)


class KeyedBaseline(ABC):
    """Mixin of detectors scored from a table of (key, value); see the module docstring."""

    @abstractmethod
    def baseline_table(self) -> tuple["numpy.ndarray", "numpy.ndarray"]:
        """The fitted table: sorted unique keys (str) and one float value per key."""

    @abstractmethod
    def baseline_entity(self, keys: "numpy.ndarray") -> "numpy.ndarray":
        """The entity each key belongs to: what places it on a shard (keys of one entity stay
        together)."""

    @abstractmethod
    def baseline_keys(self, window: "GraphWindow") -> "numpy.ndarray":
        """The keys a window's score needs, in the order `score_from_baseline` expects."""

    @abstractmethod
    def score_from_baseline(self, window: "GraphWindow", values: "numpy.ndarray") -> "numpy.ndarray":
        """The window's scores from the looked-up value of each of its `baseline_keys`."""
