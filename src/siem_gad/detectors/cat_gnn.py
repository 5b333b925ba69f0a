"""The `cat_gnn` detector: CaT-GNN (arXiv 2402.14708) on `temporal` host graphs.

Supervised node classification of hosts per window (a host is positive when it originates a
malicious flow there) with temporal graph attention: every event is an edge whose time, direction
and features are embedded into the neighbour's keys and values, so attention weighs *when* two
hosts talked as well as who they are. The causal inspector ranks nodes by the attention they
receive; the causal intervener mixes environment (low-importance) node representations with
causal ones during training, so the classifier leans on the neighbours that matter
(`graph_nets.CatGnnNet`). `intervene: false` and `attention: gat` are the paper's ablations.

The explanation of an alert is the attention: the host's neighbours and events ranked by the
attention the model paid to them, with their times and evidence ids, the causal importance of
those neighbours, and the host's own features by gradient x input.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..graphs import GraphWindow
from . import Explanation, readable
from . import standardizer
from .supervised import SupervisedGraphDetector, SupervisedParams


class CatGnnDetector(SupervisedGraphDetector):
    scaling = ("x_mean_", "x_std_", "e_mean_", "e_std_")
    target_kind = 0

    class Params(SupervisedParams):
        attention: Literal["temporal", "gat"] = Field("temporal", description="temporal attention, or a plain GAT (ablation)")
        heads: int = Field(4, ge=1, description="attention heads (hidden must be divisible by it)")
        time_dim: int = Field(16, ge=2, description="width of the learned time encoding")
        intervene: bool = Field(True, description="causal intervener during training (false: ablation)")
        causal_ratio: float = Field(0.3, gt=0, lt=1, description="share of each window's nodes treated as causal")
        mix: float = Field(0.5, gt=0, le=1, description="largest share of a causal representation mixed into environment nodes")

    # ------------------------------------------------------------------ tensors
    def _fit_scaling(self, windows: list[GraphWindow]) -> dict[str, int]:
        if self.params.hidden % self.params.heads:
            raise ValueError(f"cat_gnn: hidden ({self.params.hidden}) must be divisible by heads ({self.params.heads})")
        self.x_mean_, self.x_std_ = standardizer(np.concatenate([w.x for w in windows]))
        self.e_mean_, self.e_std_ = standardizer(np.concatenate([w.edge_attr for w in windows]))
        return {"node": len(self.x_mean_), "edge": len(self.e_mean_)}

    def _new_model(self, dims: dict[str, int], classes: int) -> Any:
        from .graph_nets import CatGnnNet

        p = self.params
        return CatGnnNet(dims["node"], dims["edge"], p.hidden, classes, p.layers, p.dropout, attention=p.attention,
                         heads=p.heads, time_dim=p.time_dim, intervene=p.intervene, causal_ratio=p.causal_ratio, mix=p.mix)

    def _tensors(self, windows: list[GraphWindow]) -> dict[str, Any]:
        """Both directions of every event edge, with direction +1 (sent) / -1 (received)."""
        import torch

        xs, edges, times, directions, attrs, graphs = [], [], [], [], [], []
        offset = 0
        for number, w in enumerate(windows):
            src, dst = w.edge_index
            edges.append(np.hstack([np.vstack([src, dst]), np.vstack([dst, src])]) + offset)
            if w.edge_time is None:
                raise ValueError("cat_gnn needs timed edges: use the `temporal` graph builder")
            t = w.edge_time / max((w.end - w.start).total_seconds(), 1.0)
            times.append(np.concatenate([t, t]))
            directions.append(np.concatenate([np.ones(w.num_edges), -np.ones(w.num_edges)]))
            a = (w.edge_attr - self.e_mean_) / self.e_std_
            attrs.append(np.vstack([a, a]))
            xs.append((w.x - self.x_mean_) / self.x_std_)
            graphs.append(np.full(w.num_nodes, number))
            offset += w.num_nodes
        as_float = lambda parts: torch.from_numpy(np.concatenate(parts).astype(np.float32))  # noqa: E731
        return {"x": as_float(xs), "edge_index": torch.from_numpy(np.concatenate(edges, axis=1).astype(np.int64)),
                "edge_time": as_float(times), "direction": as_float(directions), "edge_attr": as_float(attrs),
                "graph": torch.from_numpy(np.concatenate(graphs).astype(np.int64))}

    def _node_scores(self, window: GraphWindow, target_scores: np.ndarray) -> np.ndarray:
        return target_scores

    # ------------------------------------------------------------------ explanations
    def explain(self, window: GraphWindow, item: int, top_k: int = 5) -> Explanation:
        import torch

        self.check_fitted()
        tensors = self._tensors([window])
        x = tensors["x"].requires_grad_(True)
        tensors["x"] = x
        representation, attentions = self.model_.encode(tensors)
        probability = 1 - torch.softmax(self.model_.head(representation), dim=-1)[item, 0]
        probability.backward()
        saliency = (x.grad[item] * x[item]).detach().numpy()
        order = np.argsort(-np.abs(saliency))[:top_k]
        contributors = [{"name": window.feature_names[i], "value": readable(window, i, window.x[item, i]),
                         "weight": round(float(saliency[i]), 4)} for i in order]

        edge_index = tensors["edge_index"].numpy()
        attention = torch.stack(attentions).mean(dim=0).detach().numpy()
        importance = self.model_.importance(tensors, attentions[0]).numpy()
        incoming = np.flatnonzero(edge_index[1] == item)
        incoming = incoming[np.argsort(-attention[incoming], kind="stable")][:top_k]
        m = window.num_edges
        neighbors, edges = {}, []
        for e in incoming:
            other = int(edge_index[0, e])
            event = int(e % m) if m else 0
            ids, _ = window.edge_evidence(np.array([event]), limit=1)
            edges.append({"neighbor": str(window.node_value[other]), "direction": "received from" if e < m else "sent to",
                          "seconds_into_window": round(float(window.edge_time[event]), 1),
                          "attention": round(float(attention[e]), 4), "event.id": ids[0] if ids else None})
            neighbors.setdefault(str(window.node_value[other]), round(float(importance[other]), 4))
        evidence, count = window.node_evidence(item)
        host = str(window.node_value[item])
        top = edges[0] if edges else None
        ratios = self.novelty_ratios(window)
        novelty = None if ratios is None else float(ratios[self.target_position(window, item)])
        novel = f"; {novelty:.1f}x the novelty threshold" if novelty is not None and novelty >= 1 else ""
        summary = (f"{host} classified as attack with p={float(probability):.3f}{novel}; most attended: "
                   f"{top['direction']} {top['neighbor']} at +{top['seconds_into_window']}s" if top else
                   f"{host} classified as attack with p={float(probability):.3f}{novel}")
        extra = {"attention_edges": edges, "neighbor_importance": neighbors,
                 **({"novelty": round(novelty, 3)} if novelty is not None else {})}
        return Explanation(window.entity(item), contributors, [e["event.id"] for e in edges if e["event.id"]] or evidence,
                           count, summary=summary, extra=extra)
