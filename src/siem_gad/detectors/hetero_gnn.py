"""The `hetero_gnn` detector: supervised flow classification on `host_flow` graphs.

A HeteroConv of SAGEConv layers passes messages host -> flow -> host, so a flow is judged with
the other flows of its sender and receiver in the same subgraph (see `graph_nets.HeteroFlowNet`).
It classifies each flow as benign or one of the attack classes of its training labels
(multi-class when they allow) and scores it by its probability of not being benign.

Alerts are per source host and window: the host's score is the highest score of the flows it
sent in the window (over all its subgraph copies); other nodes score NaN and never alert.
`target_scores()` gives the per-flow scores. An alert's explanation lists the host's flows over
the threshold, strongest first, with their receivers and event ids (the evidence an analyst's
verdict labels), and the flow and host features that pushed them towards 'attack' (gradient x
input on the standardized features).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from ..graphs import GraphWindow
from ..graphs.host_flow import FLOW, HOST, flow_receivers, flow_sender_values, flow_senders
from . import Explanation
from . import standardizer
from .supervised import SupervisedGraphDetector, SupervisedParams


class HeteroGnnDetector(SupervisedGraphDetector):
    scaling = ("host_mean_", "host_std_", "flow_mean_", "flow_std_")
    target_kind = FLOW
    novelty_groups = staticmethod(flow_sender_values)  # a flow's novelty counts with its sender's other flows

    class Params(SupervisedParams):
        # on by default here: bursts of flows unlike anything seen are what labels miss, and the
        # novelty half added no false positive on any IoT-23 capture (docs/benchmarks.md)
        novelty: bool = Field(True, description=SupervisedParams.model_fields["novelty"].description)

    # ------------------------------------------------------------------ tensors
    def _fit_scaling(self, windows: list[GraphWindow]) -> dict[str, int]:
        self.host_mean_, self.host_std_ = standardizer(np.concatenate([w.kind_x(HOST) for w in windows]))
        self.flow_mean_, self.flow_std_ = standardizer(np.concatenate([w.kind_x(FLOW) for w in windows]))
        return {"host": len(self.host_mean_), "flow": len(self.flow_mean_)}

    def _new_model(self, dims: dict[str, int], classes: int) -> Any:
        from .graph_nets import HeteroFlowNet

        p = self.params
        return HeteroFlowNet(dims["host"], dims["flow"], p.hidden, classes, p.layers, p.dropout)

    def _tensors(self, windows: list[GraphWindow]) -> dict[str, Any]:
        import torch

        from .graph_nets import hetero_edges

        hosts, flows, sends, reaches = [], [], [], []
        host_offset = flow_offset = 0
        for w in windows:
            local = w.kind_local()
            src, dst = w.edge_index
            from_host = w.node_kind[src] == HOST
            sends.append(np.vstack([local[src[from_host]] + host_offset, local[dst[from_host]] + flow_offset]))
            reaches.append(np.vstack([local[src[~from_host]] + flow_offset, local[dst[~from_host]] + host_offset]))
            hosts.append((w.kind_x(HOST) - self.host_mean_) / self.host_std_)
            flows.append((w.kind_x(FLOW) - self.flow_mean_) / self.flow_std_)
            host_offset += len(hosts[-1])
            flow_offset += len(flows[-1])
        return {"x_host": torch.from_numpy(np.concatenate(hosts).astype(np.float32)),
                "x_flow": torch.from_numpy(np.concatenate(flows).astype(np.float32)),
                "edges": hetero_edges(np.concatenate(sends, axis=1).astype(np.int64),
                                      np.concatenate(reaches, axis=1).astype(np.int64))}

    # ------------------------------------------------------------------ scores
    def _node_scores(self, window: GraphWindow, flow_scores: np.ndarray) -> np.ndarray:
        import pandas as pd

        scores = np.full(window.num_nodes, np.nan)
        if not len(flow_scores):
            return scores
        host_value = flow_sender_values(window)
        best = pd.Series(flow_scores).groupby(host_value.astype(str)).max()
        hosts = np.flatnonzero(window.node_kind == HOST)
        names = window.node_value[hosts].astype(str)
        first = ~pd.Series(names).duplicated().to_numpy()  # one scored copy per host and window
        scores[hosts[first]] = best.reindex(names[first]).to_numpy()
        return scores

    # ------------------------------------------------------------------ explanations
    def explain(self, window: GraphWindow, item: int, top_k: int = 5) -> Explanation:
        import torch

        self.check_fitted()
        flow_nodes = np.flatnonzero(window.node_kind == FLOW)
        probabilities = self.predict_proba([window])[0]
        flow_scores = self.scores_from(window, probabilities)
        novelty = self.novelty_ratios(window)
        rarest, training_share, novel_alone = (self.novelty_.rarest(window.kind_x(FLOW)) if self.novelty_ is not None
                                                else (None, None, None))
        senders = flow_senders(window)
        if window.node_kind[item] == FLOW:
            chosen = np.flatnonzero(flow_nodes == item)
        else:
            chosen = np.flatnonzero(window.node_value[senders].astype(str) == str(window.node_value[item]))
        chosen = chosen[np.argsort(-flow_scores[chosen], kind="stable")]
        alerted = chosen[flow_scores[chosen] >= self.threshold_]
        # the evidence is the flows that made the alert (what a verdict labels, triage/feedback.py);
        # a host under the threshold is explained by its strongest flows
        chosen = (alerted if len(alerted) else chosen)[:top_k]

        tensors = self._tensors([window])
        x_host = tensors["x_host"].requires_grad_(True)
        x_flow = tensors["x_flow"].requires_grad_(True)
        logits = self.model_.head(self.model_.flow_embedding(x_host, x_flow, tensors["edges"]))
        (1 - torch.softmax(logits, dim=-1)[:, 0])[torch.from_numpy(chosen)].sum().backward()
        flow_part = (x_flow.grad * x_flow).detach().numpy().sum(axis=0)
        host_part = (x_host.grad * x_host).detach().numpy().sum(axis=0)
        weights = np.concatenate([host_part, flow_part])
        labels = [f"sender {n}" for n in window.kind_feature_names(HOST)] + list(window.kind_feature_names(FLOW))
        host_rows = window.kind_x(HOST)
        flow_rows = window.kind_x(FLOW)[chosen]
        sender_local = window.kind_local()[senders[chosen]] if len(chosen) else np.zeros(0, np.int64)
        raw = np.concatenate([host_rows[sender_local].mean(axis=0) if len(chosen) else np.zeros(len(host_part)),
                              flow_rows.mean(axis=0) if len(chosen) else np.zeros(len(flow_part))])
        order = np.argsort(-np.abs(weights))[:top_k]
        contributors = [{"name": labels[i], "value": round(float(raw[i]), 3), "weight": round(float(weights[i]), 4)}
                        for i in order]

        receivers = flow_receivers(window)
        flows = [{"event.id": str(window.node_value[flow_nodes[f]]),
                  "receiver": str(window.node_value[receivers[flow_nodes[f]]]),
                  "score": round(float(flow_scores[f]), 4),
                  "class": self.classes_[int(np.argmax(probabilities[f]))],
                  **({"novelty": round(float(novelty[f]), 3), "rarest feature": rarest[f],
                      "training share": float(f"{training_share[f]:.3g}")} if novelty is not None else {})}
                 for f in chosen]
        entity = window.entity(item) if window.node_kind[item] == HOST else {window.node_fields[HOST]: str(
            window.node_value[senders[np.flatnonzero(flow_nodes == item)[0]]])}
        of_sender = window.node_value[senders].astype(str) == next(iter(entity.values()))
        sent = int(of_sender.sum())
        attack_classes = sorted({f["class"] for f in flows if f["class"] != self.classes_[0]})
        novel = novelty is not None and bool(flows) and flows[0].get("novelty", 0) >= 1
        kind = ", ".join(attack_classes) or ("nothing training saw" if novel else "attacks")
        note = (f", {flows[0]['novelty']:.1f}x the novelty threshold: {flows[0]['rarest feature']} as "
                f"{flows[0]['training share']:.2%} of training flows had it; {int(novel_alone[of_sender].sum())} "
                "novel flows from this host in the window" if novel else "")
        over = len(alerted) or len(flows)  # all the flows over the threshold, not only the ones listed
        summary = (f"{next(iter(entity.values()))}: {over} of its {sent} flows look like "
                   f"{kind} (top {flows[0]['score']:.3f} to {flows[0]['receiver']}{note})" if flows else "no flows")
        return Explanation(entity, contributors, [f["event.id"] for f in flows], sent, summary=summary,
                           extra={"flows": flows, "neighbors": sorted({f["receiver"] for f in flows})})
