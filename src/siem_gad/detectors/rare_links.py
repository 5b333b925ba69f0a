"""The `rare_links` detector: links between entities that the history seldom or never carried.

The oldest question of network hunting, asked of the graph: has this source ever talked to this
destination, and how much? Fitting counts the events on each link (source entity -> target
entity) over the training windows; a link's rate is its events per training window. A link in
a scored window gets the surprisal of that rate,

    edge score = -log(rate + prior)

so a link the history never saw scores -log(prior) (4.6 with the default prior of 0.01
events per window) and a link that carries thousands of events per window scores below 0.
An entity's score is one of two readings of its links in the window (`entity_score`):

- `traffic` (the default): the event-weighted mean surprisal, that of its average event. A host
  that only adds one new destination to its usual traffic stays low; a host whose traffic goes
  mostly over links never seen before scores high, however little traffic that is.
- `links`: the summed surprisal of its distinct links, counting only links rarer than one
  event per window (surprisal above 0), each once however many events it carries: how many
  new peers it has. One account logging on to twenty hosts it never used scores twenty times
  one that tried one new host, where `traffic` scores them alike (both all new). This is the
  reading for logons (`user.name` x `host.name`): lateral movement is many new hosts at once,
  while one new host for one user is a daily event. A server that many accounts use now and
  then sums their occasional links too, so it scores high in busy hours; with the default
  rule's `top_k` these stay single medium alerts. For flows the mean reads better: on LUFlow
  the attackers are low-volume sources whose few links are all new.

The model is the link table of the training windows, nothing more: scores are exact, the same
on every pass, and explained by the links themselves. Without labels it learns no notion of
what an attack looks like, only of what is new, so a change of infrastructure (a new backup
server, a new SaaS) raises alerts until the model is retrained on history that includes it.

**Labeled history.** Real history holds attacks, and a link table that counts them learns an
attacker who comes back as familiar (on LUFlow, most attack flows of a later day run over
links the history carried). Where the history says which events were attacks (the builder's
`label_field`, `GraphWindow.edge_attacks`) or an analyst marked an alert a true positive (the
entity's links in that window, `triage/feedback.py`), those events do not count as normal
traffic, and the link keeps what it carried as evidence against it:

    edge score = -log(normal rate + prior) + log((attack rate + prior) / prior)

so a link that carried only attacks scores above one never seen, a link never seen scores
-log(prior) as before, and a link whose history is all normal scores as before. Without
labels both rates are the plain rate and nothing changes. The training threshold is taken over
the entities that carried no labeled attack, scored against the normal rates. The table keeps
one value per link, the effective rate r with -log(r + prior) equal to that score (below 0 for
known-bad links), so the sharded scoring of `execution/shards.py` needs nothing new.

Works on single-kind graphs whose edges join two entities (`bipartite`, `temporal`). Events on a
link are read from the edge feature `events` (log1p-scaled, as `bipartite` writes it) or, where
the builder has none (`temporal`: one edge per event), counted as one per edge.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..graphs import GraphWindow
from ..lazy import lazy_import
from . import Detector, DetectorParams, Explanation
from .baselines import KeyedBaseline, look_up

np = lazy_import("numpy")  # `siem-gad check` validates the parameters without numpy

SEPARATOR = "\x1f"  # joins the two ends of a link into one key; never part of an entity value


class RareLinksDetector(KeyedBaseline, Detector):
    level = "node"
    learns_from_labels = True  # known-bad links: analysts' true positives mark an entity's links

    class Params(DetectorParams):
        prior: float = Field(0.01, gt=0, description="events per window assumed for a link never seen in training")
        entity_score: Literal["traffic", "links"] = Field(
            "traffic", description="`traffic`: the event-weighted mean surprisal of an entity's links (how much of its "
            "traffic is new); `links`: the summed surprisal of its distinct links rarer than one event per window "
            "(how many new peers)")

    # ------------------------------------------------------------------ links of a window
    @staticmethod
    def _keys(window: GraphWindow, edges: np.ndarray | None = None) -> np.ndarray:
        """The link key of each edge of a window (or of `edges` only): `kind:value` of both ends.
        Only the nodes those edges touch are turned into text (an alert's explanation needs a
        handful of links, not the window's thousands)."""
        if window.kind_features is not None:
            raise ValueError("rare_links scores links between two entities; heterogeneous graphs (host_flow) have "
                             "a node per flow: use bipartite or temporal")
        src, dst = window.edge_index if edges is None else window.edge_index[:, edges]
        used, position = np.unique(np.concatenate([src, dst]), return_inverse=True)
        ends = np.char.add(np.char.add(window.node_kind[used].astype(str), ":"), window.node_value[used].astype(str))
        return np.char.add(np.char.add(ends[position[:len(src)]], SEPARATOR), ends[position[len(src):]])

    @staticmethod
    def _events(window: GraphWindow) -> np.ndarray:
        """The events on each edge of a window."""
        if "events" in window.edge_feature_names:
            logged = window.edge_attr[:, window.edge_feature_names.index("events")].astype(np.float64)
            return np.rint(np.expm1(logged))  # counts: undo the float32 rounding of log1p
        return np.ones(window.num_edges)

    @staticmethod
    def _attack_events(window: GraphWindow, events: np.ndarray) -> np.ndarray:
        """The events on each edge that the history labels attacks: the builder's per-edge
        count, and every event of an edge whose end is labeled an attacker (an analyst's true
        positive on the entity, or a supervised builder's node label)."""
        from ..labeling import BENIGN

        attacks = np.zeros(window.num_edges)
        if window.edge_attacks is not None:
            attacks = np.minimum(window.edge_attacks.astype(np.float64), events)
        if window.node_label is not None:
            bad = np.array([v is not None and v != BENIGN for v in window.node_label], dtype=bool)
            src, dst = window.edge_index
            attacks = np.where(bad[src] | bad[dst], events, attacks)
        return attacks

    # ------------------------------------------------------------------ fit / score
    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "RareLinksDetector":
        if not windows:
            raise ValueError("rare_links needs training windows")
        keys = [self._keys(w) for w in windows]
        links, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        self.links_ = links
        per_window = [self._events(w) for w in windows]
        attacks = [self._attack_events(w, e) for w, e in zip(windows, per_window)]
        events, attack = np.concatenate(per_window), np.concatenate(attacks)
        self.rate_ = np.bincount(inverse, weights=events - attack, minlength=len(links)) / len(windows)
        self.attack_rate_ = np.bincount(inverse, weights=attack, minlength=len(links)) / len(windows)
        self.training_windows_ = len(windows)
        self.effective_rate_ = self._effective_rate()
        # The threshold is a quantile of normal history as normal traffic scores it: the entities
        # that carried no labeled attack, against the links' normal rates (what a link carried as
        # attacks is evidence about attackers, not about how far normal traffic strays).
        scores = [self._node_scores(w, look_up(links, self.rate_, k)) for w, k in zip(windows, keys)]
        normal = [~self._attacked_nodes(w, a) for w, a in zip(windows, attacks)]
        train_scores = np.concatenate([s[n] for s, n in zip(scores, normal)])
        if not len(train_scores):  # every entity of the history touched an attack: judge against all of them
            train_scores = np.concatenate(scores)
        self.threshold_ = self.threshold_from(train_scores)
        self.metrics_ = {"training_windows": len(windows), "links": int(len(links)),
                         "training_nodes": int(len(train_scores)), "unseen_link_score": float(-np.log(self.params.prior)),
                         "attack_links": int((self.attack_rate_ > 0).sum()), "attack_events": int(attack.sum())}
        return self

    def _effective_rate(self) -> np.ndarray:
        """Per link, the rate r whose surprisal -log(r + prior) is the link's score: the normal
        rate, lowered below 0 by the attacks it carried (see the module docstring)."""
        prior, normal, attack = self.params.prior, self.rate_, self.attack_rate_
        known_bad = attack > 0
        effective = normal.copy()
        effective[known_bad] = (normal[known_bad] + prior) * prior / (attack[known_bad] + prior) - prior
        return effective

    @staticmethod
    def _attacked_nodes(window: GraphWindow, attacks: np.ndarray) -> np.ndarray:
        """The entities of a window that have a link carrying a labeled attack."""
        touched = np.zeros(window.num_nodes, dtype=bool)
        src, dst = window.edge_index
        touched[src[attacks > 0]] = True
        touched[dst[attacks > 0]] = True
        return touched

    def _surprisal(self, window: GraphWindow, rates: np.ndarray | None = None,
                   edges: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, events, training rate) per edge of a window (or of `edges` only); `rates`
        when already looked up."""
        if rates is None:
            rates = look_up(self.links_, self.effective_rate_, self._keys(window, edges))
        events = self._events(window)
        return -np.log(rates + self.params.prior), events if edges is None else events[edges], rates

    def score_edges(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        """Per edge: -log(normal training events per window on its link + prior), raised by the
        labeled attacks it carried."""
        self.check_fitted()
        return [self._surprisal(w)[0] for w in windows]

    def score(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        self.check_fitted()
        return [self._node_scores(w) for w in windows]

    def _node_scores(self, window: GraphWindow, rates: np.ndarray | None = None) -> np.ndarray:
        """Per entity: the event-weighted mean surprisal of its links (`traffic`), or the sum
        over its distinct links of their surprisal above 0 (`links`)."""
        surprisal, events, _ = self._surprisal(window, rates)
        src, dst = window.edge_index
        n = window.num_nodes
        if self.params.entity_score == "links":
            if "events" not in window.edge_feature_names:  # one edge per event (`temporal`): each link once
                _, first = np.unique(src.astype(np.int64) * n + dst, return_index=True)
                src, dst, surprisal = src[first], dst[first], surprisal[first]
            rare = np.maximum(surprisal, 0.0)
            return np.bincount(src, rare, n) + np.bincount(dst, rare, n)
        weight = np.bincount(src, events, n) + np.bincount(dst, events, n)
        total = np.bincount(src, events * surprisal, n) + np.bincount(dst, events * surprisal, n)
        return np.divide(total, weight, out=np.zeros(n), where=weight > 0)

    # ------------------------------------------------------------------ the link table, shardable
    def baseline_table(self) -> tuple[np.ndarray, np.ndarray]:
        self.check_fitted()
        return self.links_, self.effective_rate_

    def baseline_entity(self, keys: np.ndarray) -> np.ndarray:
        """A link's source entity: all links of a source go to one shard."""
        return np.char.partition(keys.astype(str), SEPARATOR)[:, 0] if len(keys) else keys.astype(str)

    def baseline_keys(self, window: GraphWindow) -> np.ndarray:
        return self._keys(window)

    def score_from_baseline(self, window: GraphWindow, values: np.ndarray) -> np.ndarray:
        return self._node_scores(window, values)

    # ------------------------------------------------------------------ explanation
    def explain(self, window: GraphWindow, item: int, top_k: int = 5) -> Explanation:
        self.check_fitted()
        edges = window.node_edges(item)
        keys = self._keys(window, edges)
        normal, attack = look_up(self.links_, self.rate_, keys), look_up(self.links_, self.attack_rate_, keys)
        surprisal, events, _ = self._surprisal(window, look_up(self.links_, self.effective_rate_, keys), edges)
        order = np.lexsort((-events, -surprisal))[:top_k]  # rarest first, then busiest
        contributors = []
        for e, n, rate, bad, weight in zip(edges[order], events[order], normal[order], attack[order], surprisal[order]):
            src, dst = window.edge_index[:, e]
            other = dst if src == item else src
            contributor = {"name": "link", "value": f"{'->' if src == item else '<-'} "
                           f"{next(iter(window.entity(int(other)).values()))}",
                           "events": int(round(n)), "typical": round(float(rate), 3), "weight": round(float(weight), 3)}
            if bad > 0:
                contributor["attacks_per_window"] = round(float(bad), 3)
            contributors.append(contributor)
        never = (normal == 0) & (attack == 0)
        unseen, known_bad = int(never.sum()), int((attack > 0).sum())
        share = float(events[never].sum() / max(events.sum(), 1e-12))
        evidence, _ = window.edge_evidence(edges[order])
        _, count = window.node_evidence(item)
        entity = window.entity(item)
        field, value = next(iter(entity.items()))
        summary = (f"{field} {value}: {unseen} of its {len(edges)} links never seen in "
                   f"{self.training_windows_} training windows, carrying {share:.0%} of its events")
        if known_bad:
            summary += f"; {known_bad} carried labeled attacks in training"
        if contributors:
            top = contributors[0]
            noun = "event" if top["events"] == 1 else "events"
            summary += f"; rarest: {top['value']} ({top['events']} {noun}, typical {top['typical']} per window)"
        return Explanation(entity, contributors, evidence, count, summary=summary,
                           extra={"unseen_links": unseen, "unseen_event_share": round(share, 3),
                                  "known_attack_links": known_bad})

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, Any]:
        import torch

        return {"links": [str(k) for k in self.links_], "rate": torch.from_numpy(self.rate_),
                "attack_rate": torch.from_numpy(self.attack_rate_), "training_windows": int(self.training_windows_)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.links_ = np.array(state["links"], dtype=str)
        self.rate_ = state["rate"].numpy()
        # models saved before labeled history: no link carried a known attack
        self.attack_rate_ = state["attack_rate"].numpy() if "attack_rate" in state else np.zeros_like(self.rate_)
        self.training_windows_ = int(state["training_windows"])
        self.effective_rate_ = self._effective_rate()
