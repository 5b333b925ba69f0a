"""Graph detectors on real labeled traffic (issue: graph detectors from the research).

    python bench/graph_detectors.py iot23-flows   # hetero_gnn vs random forests, three protocols
    python bench/graph_detectors.py iot23-hosts   # cat_gnn vs its ablations, leave-one-capture-out
    python bench/graph_detectors.py iot23-labels  # what the other captures' labels say of each one's attacks
    python bench/graph_detectors.py iot23-loco-corrected   # leave-one-capture-out, C&C labels made consistent
    python bench/graph_detectors.py iot23-hosts-corrected  # the same for cat_gnn
    python bench/graph_detectors.py luflow        # graph_ae, gcn_hmm, iforest, rare_links unsupervised on LUFlow
    ... --quick                                   # the reduced version the test suite runs

Results go to bench/results/graph_detectors-<name>.json and print as the markdown tables of
docs/benchmarks.md (LUFlow's as JSON).
Data: IoT-23 (Garcia, Parmisano, Erquiaga, Stratosphere Lab, 2020, CC BY 4.0) and LUFlow
(Mills et al., Lancaster University), from ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_data import IOT23_CAPTURES, LUFLOW_DAYS, iot23, luflow  # noqa: E402

from siem_gad.graphs import GraphWindow, WindowGrid  # noqa: E402
from siem_gad.timeutil import align_down  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DUPLICATE_KEY = ["source.ip", "destination.ip", "destination.port", "network.transport", "network.protocol",
                 "event.duration", "source.bytes", "destination.bytes", "zeek.connection.state",
                 "zeek.connection.history", "source.packets", "destination.packets"]


def build(builder, events: pd.DataFrame, size: timedelta) -> list[GraphWindow]:
    """Non-empty windows of `size` over the events' own time span."""
    if events.empty:
        return []
    start = align_down(events["@timestamp"].min().to_pydatetime(warn=False), size)
    count = int((events["@timestamp"].max().to_pydatetime(warn=False) - start) / size) + 1
    return [w for w in builder.build(events, WindowGrid(start, size, count)) if w.num_nodes]


def binary_metrics(is_attack: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    both = 0 < is_attack.sum() < len(is_attack)
    predicted = scores >= threshold
    return {"rows": int(len(is_attack)), "attacks": int(is_attack.sum()),
            "auc": float(roc_auc_score(is_attack, scores)) if both else None,
            "ap": float(average_precision_score(is_attack, scores)) if both else None,
            "f1": float(f1_score(is_attack, predicted, zero_division=0)) if is_attack.any() else None,
            "false_positive_rate": float(predicted[~is_attack].mean()) if (~is_attack).any() else None}


# ---------------------------------------------------------------------------- IoT-23 flows
def flow_sets(captures: dict[str, pd.DataFrame], protocol: str, seed: int, held: str | None = None):
    """(train events, test events) per capture for a protocol."""
    train, test = {}, {}
    for name, events in captures.items():
        if protocol == "loco":
            (test if name == held else train)[name] = events
        elif protocol == "time":
            cut = int(len(events) * 0.7)
            train[name], test[name] = events.iloc[:cut], events.iloc[cut:]
        else:  # stratified random split, exact duplicates of training flows removed from the test side
            from sklearn.model_selection import train_test_split

            counts = events["label.detailed"].value_counts()
            strata = events["label.detailed"].where(events["label.detailed"].map(counts) > 1, counts.index[0])
            tr, te = train_test_split(np.arange(len(events)), test_size=0.3, random_state=seed, stratify=strata)
            train[name], test[name] = events.iloc[np.sort(tr)], events.iloc[np.sort(te)]
    if protocol == "random":
        seen = set(_flow_hash(pd.concat(train.values())))
        test = {n: e[~_flow_hash(e).isin(seen)] for n, e in test.items()}
    return train, test


def _flow_hash(events: pd.DataFrame) -> pd.Series:
    """A hash of what makes two flows exact duplicates (all but time, id and client port)."""
    return pd.util.hash_pandas_object(events[DUPLICATE_KEY].astype(str), index=False)


def iot23_flows(quick: bool, seeds: int, protocols: tuple[str, ...] = ("random", "time", "loco"),
                corrected_labels: bool = False) -> dict:
    """`hetero_gnn` and two forests under each protocol; `corrected_labels`: see `flow_data.iot23`."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
    from siem_gad.graphs.host_flow import HostFlowGraphBuilder

    rows = 3000 if quick else None
    captures = {c: iot23(c, rows, corrected_labels) for c in IOT23_CAPTURES}
    size = timedelta(hours=1)
    labels = dict(label_field="label", class_field="label.detailed")
    plain = HostFlowGraphBuilder(flows_per_graph=256, **labels)
    ported = HostFlowGraphBuilder(flows_per_graph=256, port_field="destination.port", **labels)
    epochs = 5 if quick else 100
    results: dict = {"protocols": {}, "seeds": seeds, "labels": "corrected" if corrected_labels else "dataset"}

    def run(train_events, test_events, seed):
        train_w = [w for e in train_events.values() for w in build(plain, e, size)]
        test_w = [w for e in test_events.values() for w in build(plain, e, size)]
        began = time.perf_counter()
        model = HeteroGnnDetector(epochs=epochs, seed=seed).fit(train_w)
        seconds = time.perf_counter() - began
        truth = np.concatenate([w.node_label[w.node_kind == 1] for w in test_w]).astype(str)
        proba = np.concatenate(model.predict_proba(test_w))
        out = {"hetero_gnn": (truth, proba, list(model.classes_), model.threshold_,
                              seconds / max(model.metrics_["epochs_run"], 1))}
        for name, builder in (("forest", plain), ("forest + port", ported)):
            tr = [w for e in train_events.values() for w in build(builder, e, size)]
            te = [w for e in test_events.values() for w in build(builder, e, size)]
            x_tr, x_te = np.concatenate([w.kind_x(1) for w in tr]), np.concatenate([w.kind_x(1) for w in te])
            y_tr = np.concatenate([w.node_label[w.node_kind == 1] for w in tr]).astype(str)
            forest = RandomForestClassifier(n_estimators=20 if quick else 100, class_weight="balanced", random_state=seed,
                                            n_jobs=2)
            forest.fit(x_tr, y_tr)
            classes = list(forest.classes_)
            order = [classes.index("benign")] + [i for i, c in enumerate(classes) if c != "benign"]
            out[name] = (truth, forest.predict_proba(x_te)[:, order], [classes[i] for i in order], 0.5, None)
        return out

    def summarise(truth, proba, classes, threshold):
        attack = truth != "benign"
        score = 1 - proba[:, 0]
        summary = binary_metrics(attack, score, threshold)
        predicted = np.where(score >= threshold, np.asarray(classes, dtype=object)[1:][np.argmax(proba[:, 1:], axis=1)]
                             if len(classes) > 1 else "attack", "benign").astype(str)
        known = pd.Series(truth).value_counts()
        big = [c for c in known.index if known[c] >= (20 if quick else 100)]
        p, r, f, _ = precision_recall_fscore_support(truth, predicted, labels=big, zero_division=0)
        summary["macro_f1"] = float(np.mean(f)) if big else None
        summary["per_class"] = {c: {"precision": float(pp), "recall": float(rr), "rows": int(known[c])}
                                for c, pp, rr in zip(big, p, r)}
        summary["binary_f1_best"] = float(max(f1_score(attack, score >= t, zero_division=0)
                                              for t in np.unique(np.quantile(score, np.linspace(0, 1, 101)))))
        return summary

    for protocol in protocols:
        folds = (IOT23_CAPTURES[::3] if quick else IOT23_CAPTURES) if protocol == "loco" else [None]
        table: dict = {}
        for held in folds:
            for seed in range(seeds):
                train_events, test_events = flow_sets(captures, protocol, seed, held)
                for model, (truth, proba, classes, threshold, per_epoch) in run(train_events, test_events, seed).items():
                    entry = summarise(truth, proba, classes, threshold)
                    entry["seconds_per_epoch"] = per_epoch
                    table.setdefault(model, {}).setdefault(held or "all", []).append(entry)
        results["protocols"][protocol] = table
    return results


# ---------------------------------------------------------------------------- IoT-23 labels
SIGNATURE = ["network.transport", "zeek.connection.state", "zeek.connection.history"]


def iot23_labels(quick: bool, seeds: int) -> dict:
    """What the other captures teach about each held-out capture's attack flows (no model, no seeds).

    A flow's signature is its transport, Zeek connection state and history. Per held-out capture and
    attack class, its attack flows are counted by the share of training flows with the same signature
    that are labeled malicious: "benign only" (none), "mostly benign" (under half), "mostly attack",
    or "unseen" (no training flow has the signature). The first two are flows the training labels
    teach a model to pass.
    """
    rows = 3000 if quick else None
    results: dict = {"signature": SIGNATURE, "labels": {}}
    for labels in ("dataset", "corrected"):
        captures = {c: iot23(c, rows, corrected_labels=labels == "corrected") for c in IOT23_CAPTURES}
        table: dict = {}
        for held in (c for c in IOT23_CAPTURES if "Malware" in c):
            train = pd.concat([e for c, e in captures.items() if c != held], ignore_index=True)
            attack_share = (train["label"] != "benign").groupby([train[f] for f in SIGNATURE], dropna=False).mean()
            test = captures[held]
            attacks = test[test["label"] != "benign"]
            share = pd.MultiIndex.from_frame(attacks[SIGNATURE]).map(attack_share.to_dict().get).to_numpy(dtype=float)
            verdict = np.select([np.isnan(share), share == 0, share < 0.5], ["unseen", "benign only", "mostly benign"],
                                "mostly attack")
            counts = pd.crosstab(attacks["label.detailed"].to_numpy(), verdict)
            table[held] = {cls: {v: int(n) for v, n in row.items() if n} for cls, row in counts.iterrows()}
        results["labels"][labels] = table
    return results


# ---------------------------------------------------------------------------- IoT-23 hosts
def iot23_hosts(quick: bool, seeds: int, corrected_labels: bool = False) -> dict:
    """`cat_gnn` and its ablations, leave one capture out; `corrected_labels`: see `flow_data.iot23`."""
    from siem_gad.detectors.cat_gnn import CatGnnDetector
    from siem_gad.graphs.temporal import TemporalGraphBuilder

    rows = 4000 if quick else None
    builder = TemporalGraphBuilder(label_field="label", class_field="label.detailed")
    size = timedelta(minutes=10)
    graphs = {c: build(builder, iot23(c, rows, corrected_labels), size) for c in IOT23_CAPTURES}
    variants = {"cat_gnn": {}, "cat_gnn without intervener": {"intervene": False},
                "gat": {"attention": "gat", "intervene": False}}
    held_out = [c for c in IOT23_CAPTURES if "Malware" in c]  # honeypot captures have no positive host
    held_out = held_out[:1] if quick else held_out
    results: dict = {"window": "10m", "seeds": seeds, "variants": {},
                     "labels": "corrected" if corrected_labels else "dataset"}
    for name, extra in variants.items():
        for held in held_out:
            train = [w for c, ws in graphs.items() if c != held for w in ws]
            test = graphs[held]
            for seed in range(seeds):
                began = time.perf_counter()
                model = CatGnnDetector(epochs=5 if quick else 100, seed=seed, min_class_rows=10**9, **extra).fit(train)
                seconds = time.perf_counter() - began
                truth = np.concatenate([w.node_label for w in test]).astype(str) != "benign"
                entry = binary_metrics(truth, np.concatenate(model.target_scores(test)), model.threshold_)
                entry["seconds_per_epoch"] = seconds / max(model.metrics_["epochs_run"], 1)
                results["variants"].setdefault(name, {}).setdefault(held, []).append(entry)
    return results


# ---------------------------------------------------------------------------- LUFlow
def luflow_bench(quick: bool, seeds: int) -> dict:
    from sklearn.ensemble import IsolationForest

    from siem_gad.detectors.gcn_hmm import GcnHmmDetector
    from siem_gad.detectors.graph_ae import GraphAeDetector
    from siem_gad.detectors.iforest import IsolationForestDetector
    from siem_gad.detectors.rare_links import RareLinksDetector
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder

    rows = 20_000 if quick else None
    train_days, test_days = LUFLOW_DAYS[:2], LUFLOW_DAYS[2:]
    train = pd.concat([luflow(d, rows) for d in train_days], ignore_index=True)
    tests = {d: luflow(d, rows) for d in test_days}
    test = pd.concat(tests.values(), ignore_index=True)
    size = timedelta(minutes=10)
    builder = BipartiteGraphBuilder(bytes_field="source.bytes")
    train_w = build(builder, train, size)
    flow_fields = ["source.bytes", "destination.bytes", "source.packets", "destination.packets", "event.duration",
                   "flow.avg_ipt", "flow.entropy", "flow.total_entropy", "destination.port", "network.iana_number"]
    malicious = (test["label"] == "malicious").to_numpy()
    not_outlier = (test["label"] != "outlier").to_numpy()
    results: dict = {"train_days": train_days, "test_days": test_days, "window": "10m", "flow_level": {},
                     "edge_level": {}, "seconds_per_epoch": {}}

    def flow_entry(scores: np.ndarray) -> dict:
        return {"with outliers": binary_metrics(malicious, scores, np.inf),
                "without outliers": binary_metrics(malicious[not_outlier], scores[not_outlier], np.inf)}

    log = lambda frame: np.log1p(np.maximum(frame[flow_fields].to_numpy(dtype=np.float64), 0))  # noqa: E731
    forest = IsolationForest(n_estimators=200, random_state=0).fit(log(train))
    results["flow_level"]["flow isolation forest"] = flow_entry(-forest.score_samples(log(test)))

    detectors = {"graph_ae": lambda seed: GraphAeDetector(epochs=5 if quick else 100, seed=seed),
                 "gcn_hmm": lambda seed: GcnHmmDetector(epochs=5 if quick else 100, seed=seed),
                 "iforest": lambda seed: IsolationForestDetector(seed=seed, entity_baseline=False),
                 "rare_links": lambda seed: RareLinksDetector(seed=seed)}
    for name, make in detectors.items():
        flow_scores, edge_rows = [], []
        for seed in range(seeds):
            began = time.perf_counter()
            model = make(seed).fit(train_w)
            epochs = getattr(model.params, "epochs", 1)
            results["seconds_per_epoch"].setdefault(name, []).append((time.perf_counter() - began) / epochs)
            per_flow, per_edge = [], []
            for day, events in tests.items():
                windows = build(builder, events, size)
                scores = edge_scores(model, windows)
                per_flow.append(flows_from_edges(windows, scores, events, size))
                per_edge.append(edge_truth(windows, scores, events, size))
            flow_scores.append(np.concatenate(per_flow))
            edge_rows.append(pd.concat(per_edge, ignore_index=True))
        results["flow_level"][name] = [flow_entry(s) for s in flow_scores]
        results["edge_level"][name] = [binary_metrics(e["malicious"].to_numpy(), e["score"].to_numpy(), np.inf)
                                       for e in edge_rows]
    return results


def edge_scores(model, windows: list[GraphWindow]) -> list[np.ndarray]:
    """An edge score from any detector: its own, else the larger of its endpoints' (or the window's)."""
    if hasattr(model, "score_edges"):
        return model.score_edges(windows)
    out = []
    for window, scores in zip(windows, model.score(windows)):
        src, dst = window.edge_index
        out.append(np.full(window.num_edges, scores[0]) if model.level == "window" else np.maximum(scores[src], scores[dst]))
    return out


def _edge_keys(windows, scores) -> pd.Series:
    keys, values = [], []
    for window, s in zip(windows, scores):
        src, dst = window.edge_index
        stamp = window.start.isoformat()
        keys += [f"{stamp}|{a}|{b}" for a, b in zip(window.node_value[src], window.node_value[dst])]
        values.append(s)
    return pd.Series(np.concatenate(values) if values else np.zeros(0), index=keys)


def _flow_keys(events: pd.DataFrame, size: timedelta) -> pd.Series:
    starts = events["@timestamp"].dt.floor(pd.Timedelta(size)).map(lambda t: t.to_pydatetime().isoformat())
    return starts + "|" + events["source.ip"].astype(str) + "|" + events["destination.ip"].astype(str)


def flows_from_edges(windows, scores, events: pd.DataFrame, size: timedelta) -> np.ndarray:
    """Each flow gets the score of its (window, source, destination) edge."""
    lookup = _edge_keys(windows, scores)
    return lookup.reindex(_flow_keys(events, size)).fillna(lookup.min() if len(lookup) else 0).to_numpy()


def edge_truth(windows, scores, events: pd.DataFrame, size: timedelta) -> pd.DataFrame:
    """Edges with their score and whether any of their flows is malicious."""
    lookup = _edge_keys(windows, scores)
    bad = pd.Series((events["label"] == "malicious").to_numpy()).groupby(_flow_keys(events, size).to_numpy()).any()
    return pd.DataFrame({"score": lookup.to_numpy(), "malicious": bad.reindex(lookup.index).fillna(False).to_numpy()})


# ---------------------------------------------------------------------------- tables
FLOW_COLUMNS = {"macro_f1": "macro-F1", "f1": "binary F1 at training threshold", "binary_f1_best": "best binary F1",
                "auc": "ROC-AUC", "ap": "AP", "false_positive_rate": "FPR", "seconds_per_epoch": "s/epoch"}


def median_range(values: list) -> str:
    """A table cell: the median over seeds with its min-max."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{np.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def flow_tables(results: dict) -> str:
    """The `iot23-flows` results as the markdown tables of docs/benchmarks.md."""
    lines = []
    for protocol, table in results["protocols"].items():
        lines += ["", f"{protocol} ({results.get('labels', 'dataset')} labels)", "",
                  "| model | fold | rows | attacks | " + " | ".join(FLOW_COLUMNS.values()) + " |",
                  "|---" * (4 + len(FLOW_COLUMNS)) + "|"]
        for model, folds in table.items():
            for fold, entries in folds.items():
                first = entries[0]
                lines.append(f"| {model} | {fold} | {first['rows']} | {first['attacks']} | "
                             + " | ".join(median_range([e[key] for e in entries]) for key in FLOW_COLUMNS) + " |")
    return "\n".join(lines)


def host_table(results: dict) -> str:
    """The `iot23-hosts` results as the markdown table of docs/benchmarks.md."""
    columns = {"auc": "ROC-AUC", "ap": "AP", "f1": "F1 at training threshold", "seconds_per_epoch": "s/epoch"}
    lines = ["| model | held-out capture | hosts x windows | positive | " + " | ".join(columns.values()) + " |",
             "|---" * (4 + len(columns)) + "|"]
    for model, folds in results["variants"].items():
        for held, entries in folds.items():
            lines.append(f"| {model} | {held} | {entries[0]['rows']} | {entries[0]['attacks']} | "
                         + " | ".join(median_range([e[key] for e in entries]) for key in columns) + " |")
    return "\n".join(lines)


def label_table(results: dict) -> str:
    """The `iot23-labels` audit as the markdown table of docs/benchmarks.md."""
    verdicts = ["benign only", "mostly benign", "mostly attack", "unseen"]
    lines = ["| labels | held-out capture | attack class | flows | " + " | ".join(verdicts) + " |",
             "|---" * (4 + len(verdicts)) + "|"]
    for labels, table in results["labels"].items():
        for held, classes in table.items():
            for name, counts in classes.items():
                lines.append(f"| {labels} | {held} | {name} | {sum(counts.values())} | "
                             + " | ".join(str(counts.get(v, 0)) for v in verdicts) + " |")
    return "\n".join(lines)


def luflow_table(results: dict) -> str:
    """The `luflow` results as the markdown table of docs/benchmarks.md."""
    def auc_ap(entries: list[dict]) -> list[str]:
        return [median_range([e[metric] for e in entries]) for metric in ("auc", "ap")]

    lines = ["| model | flows: ROC-AUC | flows: AP | flows w/o outliers: ROC-AUC | AP | edges: ROC-AUC | edges: AP "
             "| s/epoch (fit) |", "|---" * 8 + "|"]
    for model, flows in results["flow_level"].items():
        flows = flows if isinstance(flows, list) else [flows]  # the flow forest has no seeds: one entry
        edges = results["edge_level"].get(model)
        speed = results["seconds_per_epoch"].get(model)
        lines.append(f"| {model} | " + " | ".join([*auc_ap([f["with outliers"] for f in flows]),
                                                  *auc_ap([f["without outliers"] for f in flows]),
                                                  *(auc_ap(edges) if edges else ["n/a", "n/a"]),
                                                  median_range(speed) if speed else "n/a"]) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
BENCHES = {"iot23-flows": iot23_flows, "iot23-labels": iot23_labels,
           "iot23-loco-corrected": partial(iot23_flows, protocols=("loco",), corrected_labels=True),
           "iot23-hosts": iot23_hosts, "iot23-hosts-corrected": partial(iot23_hosts, corrected_labels=True),
           "luflow": luflow_bench}
TABLES = {"iot23-flows": flow_tables, "iot23-loco-corrected": flow_tables, "iot23-labels": label_table,
          "iot23-hosts": host_table, "iot23-hosts-corrected": host_table, "luflow": luflow_table}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", choices=sorted(BENCHES))
    parser.add_argument("--quick", action="store_true", help="small slices and 5 epochs (the test suite's version)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results/...)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    began = time.perf_counter()
    results = BENCHES[args.bench](args.quick, args.seeds)
    results["seconds"] = round(time.perf_counter() - began, 1)
    out = args.out or RESULTS / f"graph_detectors-{args.bench}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    render = TABLES.get(args.bench)
    print(render(results) if render else json.dumps(results, indent=1, default=float)[:4000])
    return results


if __name__ == "__main__":
    main()
