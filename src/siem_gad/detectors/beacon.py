"""The `beacon` detector: connections that repeat like a clock (C&C beaconing).

Malware that has taken a host calls home on a timer: one small connection every minute, or
every five, with a little random jitter so the rhythm is less obvious. People and most
applications do not work like that: their connections come in bursts and pauses. For every
(source, destination) pair of a window with at least `min_events` timed events (the
`temporal` builder's `edge_time`), the detector takes the gaps between consecutive
connections (closer than `min_gap` seconds counts as one connection) and asks how many of them
lie within `tolerance` of the pair's median gap, its period:

    pair score = share of regular gaps x log2(connections) x popularity weight

A beacon of 60 connections an hour with a few seconds of jitter scores about 5.9; random
traffic of the same volume about 0.4, since random gaps rarely sit near their median.

Machines also poll on timers for good reasons. Infrastructure protocols that poll by design
(DNS, DHCP, NTP, NetBIOS, SSDP, mDNS, LLMNR: `ignore_ports`) are not judged: an IoT capture
with one device sees its NTP servers as regular as any C&C. Update and backup servers, and
internal pollers, are polled by many sources, which malware's C&C address is not, so a pair's
score is multiplied by exp(-(other sources) / `popular_sources`), with the number of other
sources that contacted the destination in the training windows (0 for a destination training
never saw: a new C&C address gets the full score). A destination every host polls scores ~0.

A source's score is the score of its most regular pair (targets and silent hosts score 0). The
threshold is fixed (`threshold`, default 2.0: e.g. 16 connections with every gap regular, or 64
with a third of them), not a percentile of the training scores: history is contaminated, and
malware that already beaconed while the model trained would otherwise set the bar above its
own rhythm (IoT-23 34-1, where the C&C heartbeat runs from the first hour). Training learns
only the destinations' popularity; a beacon in the history is still found.

Windows must be long enough to hold `min_events` connections of the slowest beacon to find: a
one-hour window sees a one-minute beacon 60 times and a ten-minute beacon 6 times.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..lazy import lazy_import
from ..graphs import GraphWindow
from . import BaseDetectorParams, Detector, Explanation

np = lazy_import("numpy")


# DNS, DHCP, NTP, NetBIOS, SSDP, mDNS, LLMNR: clients poll these on timers by design.
INFRASTRUCTURE_PORTS = (53, 67, 68, 123, 137, 138, 1900, 5353, 5355)


class BeaconDetector(Detector):
    level = "node"

    class Params(BaseDetectorParams):
        min_events: int = Field(8, ge=3, description="connections a pair needs in a window to be judged")
        min_gap: float = Field(1.0, ge=0, description="seconds: closer connections count as one (retries, bursts)")
        tolerance: float = Field(0.1, gt=0, lt=1, description="a gap is regular within this share of the period")
        popular_sources: float = Field(5.0, gt=0, description="other sources of a destination that divide its score by e")
        ignore_ports: list[int] = Field(default_factory=lambda: list(INFRASTRUCTURE_PORTS),
                                        description="destination ports of protocols that poll by design (DNS, DHCP, NTP ...)")
        threshold: float = Field(2.0, gt=0, description="alert threshold: share of regular gaps x log2(connections) x weight")

    # ------------------------------------------------------------------ pairs of a window
    @staticmethod
    def _check_window(window: GraphWindow) -> None:
        if window.edge_time is None:
            raise ValueError("beacon needs the time of every connection: use the `temporal` graph builder")

    def _pairs(self, window: GraphWindow) -> list[dict[str, Any]]:
        """Every (source, destination) pair with at least `min_events` connections: its edges
        in time order, gaps, period, regular share and score (before the popularity weight)."""
        self._check_window(window)
        p = self.params
        src, dst = window.edge_index
        judged = np.flatnonzero(~np.isin(window.edge_port, p.ignore_ports)) if window.edge_port is not None \
            else np.arange(len(src))
        if not len(judged):
            return []
        order = judged[np.lexsort((window.edge_time[judged], dst[judged], src[judged]))]
        pair_start = np.flatnonzero(np.r_[True, (src[order][1:] != src[order][:-1]) | (dst[order][1:] != dst[order][:-1])])
        pair_end = np.r_[pair_start[1:], len(order)]
        pairs = []
        for a, b in zip(pair_start, pair_end):
            if b - a < p.min_events:
                continue
            edges = order[a:b]
            times = window.edge_time[edges].astype(np.float64)
            keep = np.r_[True, np.diff(times) >= p.min_gap]
            times = times[keep]
            if len(times) < p.min_events:
                continue
            gaps = np.diff(times)
            period = float(np.median(gaps))
            regular = np.abs(gaps - period) <= max(p.tolerance * period, p.min_gap)
            share = float(regular.mean())
            pairs.append({"source": int(src[edges[0]]), "destination": int(dst[edges[0]]), "edges": edges,
                          "connections": len(times), "period": period,
                          "jitter": float(np.median(np.abs(gaps - period))), "regular_share": share,
                          "raw_score": share * float(np.log2(len(times)))})
        return pairs

    def destination_weight(self, destination: str) -> float:
        """The popularity weight of a destination: exp(-other sources in training / popular_sources)."""
        others = max(self.destination_sources_.get(destination, 0) - 1, 0)
        return float(np.exp(-others / self.params.popular_sources))

    def regular_pairs(self, window: GraphWindow) -> list[dict[str, Any]]:
        """The window's judged pairs (see `_pairs`) with their popularity `weight` and `score`."""
        pairs = self._pairs(window)
        for pair in pairs:
            pair["weight"] = self.destination_weight(str(window.node_value[pair["destination"]]))
            pair["score"] = pair["raw_score"] * pair["weight"]
        return pairs

    # ------------------------------------------------------------------ fit / score
    def fit(self, windows: list[GraphWindow], progress: bool = False) -> "BeaconDetector":
        if not windows:
            raise ValueError("beacon needs training windows")
        sources: dict[str, set[str]] = {}
        for window in windows:
            self._check_window(window)
            src, dst = window.edge_index
            values = window.node_value.astype(str).tolist()
            for s, d in set(zip(src.tolist(), dst.tolist())):
                sources.setdefault(values[d], set()).add(values[s])
        self.destination_sources_ = {d: len(s) for d, s in sources.items()}
        train_scores = np.concatenate([self._node_scores(w) for w in windows])
        self.threshold_ = float(self.params.threshold)
        self.remember_scores(train_scores)
        self.metrics_ = {"training_windows": len(windows), "destinations": len(sources),
                         "training_nodes": int(len(train_scores)),
                         "training_sources_above_threshold": int((train_scores > self.threshold_).sum())}
        return self

    def score(self, windows: list[GraphWindow]) -> list[np.ndarray]:
        self.check_fitted()
        return [self._node_scores(w) for w in windows]

    def _node_scores(self, window: GraphWindow) -> np.ndarray:
        scores = np.zeros(window.num_nodes)
        for pair in self.regular_pairs(window):
            scores[pair["source"]] = max(scores[pair["source"]], pair["score"])
        return scores

    # ------------------------------------------------------------------ explanation
    def explain(self, window: GraphWindow, item: int, top_k: int = 5) -> Explanation:
        self.check_fitted()
        pairs = sorted((p for p in self.regular_pairs(window) if p["source"] == item), key=lambda p: -p["score"])
        entity = window.entity(item)
        field, value = next(iter(entity.items()))
        if not pairs:
            return Explanation(entity, [], [], 0, summary=f"{field} {value}: no regular connections")
        contributors = [{"name": "beacon", "value": f"-> {window.node_value[p['destination']]}",
                         "period_s": round(p["period"], 1), "jitter_s": round(p["jitter"], 1),
                         "connections": p["connections"], "regular_share": round(p["regular_share"], 3),
                         "weight": round(p["score"], 3)} for p in pairs[:top_k]]
        top = pairs[0]
        evidence, _ = window.edge_evidence(top["edges"])
        summary = (f"{field} {value} connects to {window.node_value[top['destination']]} every "
                   f"{top['period']:.0f} s (median jitter {top['jitter']:.1f} s, {top['connections']} connections, "
                   f"{top['regular_share']:.0%} of gaps regular)")
        if top["weight"] < 0.5:
            summary += f"; a destination other sources also poll (weight {top['weight']:.2f})"
        return Explanation(entity, contributors, evidence, int(len(top["edges"])), summary=summary,
                           extra={"period_s": round(top["period"], 2), "jitter_s": round(top["jitter"], 2),
                                  "connections": top["connections"],
                                  "destination": str(window.node_value[top["destination"]])})

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, Any]:
        return {"destinations": list(self.destination_sources_), "sources": list(self.destination_sources_.values())}

    def set_state(self, state: dict[str, Any]) -> None:
        self.destination_sources_ = {str(d): int(n) for d, n in zip(state["destinations"], state["sources"])}
