"""Per-entity baselines sharded over Ray actors by a consistent hash of the entity.

A detector whose model is a keyed table (`detectors/baselines.py`, e.g. `rare_links`'s link
rates) is scored on Ray by asking actors for the values of a batch's keys: actor i holds the
keys whose entity falls on its arcs of a hash ring. A ring rather than `hash % n` so that a
cluster that grows from n to n+1 shards moves about 1/(n+1) of the entities, not nearly all
(the scheme of OpenSearch AD's model placement and of Dynamo).

An actor builds its shard from the fitted model, which the driver put into the object store
once per model version: that object is the shard's checkpoint. When an actor dies (its worker
killed, its node lost) Ray restarts it (`max_restarts=-1`), its constructor reads the same
object again, and the calls that were in flight are retried (`max_task_retries=-1`): a lookup
is read-only, so a retried one answers alike and the pass's scores do not change.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import TYPE_CHECKING

from ..lazy import lazy_import

np = lazy_import("numpy")

if TYPE_CHECKING:
    import numpy

    from ..detectors.baselines import KeyedBaseline


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's `hash` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    """`shards` shards, each at `replicas` points of a ring of 64-bit hashes; an entity belongs
    to the shard of the first point at or after its own hash."""

    def __init__(self, shards: int, replicas: int = 64):
        if shards < 1:
            raise ValueError("a hash ring needs at least one shard")
        self.shards = shards
        points = sorted((stable_hash(f"shard-{shard}#{replica}"), shard)
                        for shard in range(shards) for replica in range(replicas))
        self._hashes = [h for h, _ in points]
        self._owners = [s for _, s in points]

    def shard_of(self, entity: str) -> int:
        at = bisect.bisect_left(self._hashes, stable_hash(entity))
        return self._owners[at % len(self._owners)]

    def shards_of(self, entities: "numpy.ndarray") -> "numpy.ndarray":
        """The shard of each entity (each distinct one hashed once)."""
        distinct, inverse = np.unique(entities.astype(str), return_inverse=True)
        return np.array([self.shard_of(e) for e in distinct], dtype=np.int64)[inverse] if len(distinct) \
            else np.zeros(0, np.int64)


class BaselineShard:
    """One shard of a detector's keyed table (a Ray actor; see the module docstring)."""

    def __init__(self, detector: "KeyedBaseline", shard: int, shards: int):
        keys, values = detector.baseline_table()
        mine = HashRing(shards).shards_of(detector.baseline_entity(keys)) == shard
        self.keys, self.values = keys[mine], values[mine]  # still sorted

    def lookup(self, queries: "numpy.ndarray") -> "numpy.ndarray":
        from ..detectors.baselines import look_up

        return look_up(self.keys, self.values, queries)

    def size(self) -> int:
        return len(self.keys)

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def restarted(self) -> bool:
        """True when Ray restarted this actor after it died."""
        import ray

        return ray.get_runtime_context().was_current_actor_reconstructed


class BatchLookup:
    """Where each key of a batch's windows went: its shard, and the bounds of each window's keys.

    `plan` splits the keys by shard; each shard answers the values of its keys in the order
    asked; `scores` puts the answers back in place and scores the windows. Both steps run in
    tasks and the shards in actors, so nothing waits inside a task (a task blocked on another
    makes Ray start one more worker process).
    """

    def __init__(self, shard: "numpy.ndarray", bounds: "numpy.ndarray"):
        self.shard, self.bounds = shard, bounds

    @classmethod
    def plan(cls, detector: "KeyedBaseline", windows: list, ring: HashRing) -> tuple["BatchLookup", list]:
        """The lookup and the keys to ask each of the ring's shards (some may be empty)."""
        keys = [detector.baseline_keys(w) for w in windows]
        bounds = np.cumsum([0] + [len(k) for k in keys])
        every = np.concatenate(keys) if keys else np.zeros(0, str)
        shard = ring.shards_of(detector.baseline_entity(every))
        return cls(shard, bounds), [every[shard == s] for s in range(ring.shards)]

    def scores(self, detector: "KeyedBaseline", windows: list, answers: list) -> list["numpy.ndarray"]:
        values = np.zeros(len(self.shard))
        for shard, answer in enumerate(answers):
            values[self.shard == shard] = answer
        return [detector.score_from_baseline(w, values[a:b]) for w, a, b in zip(windows, self.bounds, self.bounds[1:])]
