"""Detection measured as a SOC deploys it: train on the past, score what follows, one day or
capture at a time, with the threshold fixed before the scored data is seen.

    python bench/deployment.py luflow                       # train on the earliest days, score each later day
    python bench/deployment.py luflow --protocol leave-one-out   # each day scored by a model of the others
    python bench/deployment.py iot23 --protocol leave-one-out    # leave-one-capture-out, C&C labels corrected
    python bench/deployment.py iot23 --protocol leave-one-out --labels dataset
    python bench/deployment.py luflow --quick               # the reduced versions the test suite runs

Protocols (`--protocol`), each a first-class option rather than a hand-written loop:

- `past` (default): train on the first `--train-days` days, score every later day on its own;
- `leave-one-out`: for each day or capture, train on all the others and score it (for days:
  more training data, but from the future too, an upper bound rather than a deployment; for
  IoT-23's captures, which are separate networks, the question of a new site).

Per scored day, for each detector and the baseline, in one run:

- flow-level ROC-AUC and AP of that day alone (a flow takes its edge's score);
- the alert budget a SOC sets: the day's sources ranked by their strongest edge, and the
  share of that day's malicious sources among the top 10 and top 50 (recall at 10 / 50
  alerts a day), with precision at 10; sources tied at the 10th or 50th score are averaged
  over their order (`evaluate.metrics.expected_hits_at_k`), since unseen links all score alike;
- alerts at the training threshold (fixed before the day is seen), and for the malicious
  sources alerted that way the detection delay from their first malicious flow.

Days without malicious flows are reported apart (alerts per benign day), never pooled into
an attack figure. Seeds: the median and range over `--seeds` for detectors with randomness.
Baseline: an isolation forest on the flows' own fields, trained on the same days.

LUFlow also runs `rare_links, labeled history`: the same detector trained on the same days with
the history's labels (the builder's `label_field`), so that the links the past attacks used do
not count as normal; next to it, the supervised reference a labeled history allows, gradient-
boosted trees on the flows' fields trained on the same labels (P(malicious) >= 0.5).
`--label-share S` keeps the labels of a random share S of the history's malicious sources only
(the others' attacks count as normal traffic, as unlabeled history does), a different draw per
seed: what partial labels (an analyst's verdicts, a threat feed) give.

`rare_links, 50 analyst verdicts a day` is the labels a SOC actually gets: the history is
replayed one day at a time; each day after the first is scored by a model of the days before
it (with the verdicts so far), an analyst reviews that day's 50 strongest alerts at the model's
threshold (one per source: a rule's 24-hour suppression), and the verdicts (true positive: the
source sent a malicious flow in that window) label the source in that window, as `siem-gad
feedback` does at the next training. The model that scores the later days is trained on the
whole history with those verdicts.

Data: LUFlow (Mills et al., Lancaster University), from ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from siem_gad.evaluate.metrics import expected_hits_at_k

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_data import IOT23_CAPTURES, LUFLOW_DAYS, iot23, luflow  # noqa: E402
from graph_detectors import binary_metrics, build, edge_scores, flows_from_edges, median_range  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WINDOW = timedelta(minutes=10)
BUDGETS = (10, 50)
FLOW_FIELDS = ["source.bytes", "destination.bytes", "source.packets", "destination.packets", "event.duration",
               "flow.avg_ipt", "flow.entropy", "flow.total_entropy", "destination.port", "network.iana_number"]


# ---------------------------------------------------------------------------- protocols
def past(days: list[str], train_days: int) -> Iterator[tuple[list[str], str]]:
    """Train on the first `train_days`, score each later day."""
    for day in days[train_days:]:
        yield days[:train_days], day


def leave_one_out(groups: list[str], train_days: int = 0) -> Iterator[tuple[list[str], str]]:
    """Each day or capture scored by a model of all the others."""
    for held in groups:
        yield [g for g in groups if g != held], held


PROTOCOLS: dict[str, Callable[[list[str], int], Iterator[tuple[list[str], str]]]] = {
    "past": past, "leave-one-out": leave_one_out}


# ---------------------------------------------------------------------------- metrics
def day_metrics(events: pd.DataFrame, flow_scores: np.ndarray, threshold: float) -> dict:
    """What a SOC reads of one scored day: flow ranking, the budgeted source alerts, and the
    alerts and delays at the threshold fixed in training."""
    malicious = (events["label"] == "malicious").to_numpy()
    out = {"flows": int(len(events)), "malicious_flows": int(malicious.sum())}
    flows = binary_metrics(malicious, flow_scores, threshold)
    out.update(auc=flows["auc"], ap=flows["ap"])
    frame = pd.DataFrame({"source": events["source.ip"].astype(str).to_numpy(), "score": flow_scores,
                          "malicious": malicious, "time": events["@timestamp"].to_numpy()})
    by_source = frame.groupby("source").agg(score=("score", "max"), malicious=("malicious", "any"))
    bad = int(by_source["malicious"].sum())
    out["sources"], out["malicious_sources"] = int(len(by_source)), bad
    for k in BUDGETS:  # sources tied at the k-th score (unseen links all score alike) averaged over their order
        hits = expected_hits_at_k(by_source["malicious"].to_numpy(), by_source["score"].to_numpy(), k)
        out[f"recall_at_{k}"] = hits / bad if bad else None
        out[f"precision_at_{k}"] = hits / min(k, len(by_source)) if len(by_source) else None
    alerted = by_source[by_source["score"] >= threshold]
    out["alerted_sources"] = int(len(alerted))
    out["alerted_malicious_sources"] = int(alerted["malicious"].sum())
    first_bad = frame[frame["malicious"]].groupby("source")["time"].min()
    first_alert = frame[frame["score"] >= threshold].groupby("source")["time"].min()
    delays = (first_alert.reindex(first_bad.index) - first_bad).dropna()
    out["median_delay_minutes"] = float(delays.dt.total_seconds().median() / 60) if len(delays) else None
    return out


# ---------------------------------------------------------------------------- detectors
def detectors() -> dict[str, Callable[[int], object]]:
    from siem_gad.detectors.iforest import IsolationForestDetector
    from siem_gad.detectors.rare_links import RareLinksDetector

    return {"rare_links": lambda seed: RareLinksDetector(seed=seed),
            "iforest": lambda seed: IsolationForestDetector(seed=seed, entity_baseline=False),
            "iforest, extrapolate": lambda seed: IsolationForestDetector(seed=seed, entity_baseline=False,
                                                                         extrapolate=True)}


class FlowForest:
    """The baseline: an isolation forest on the log of each flow's own fields."""

    def __init__(self, seed: int):
        from sklearn.ensemble import IsolationForest

        self.forest = IsolationForest(n_estimators=200, random_state=seed)

    @staticmethod
    def rows(events: pd.DataFrame) -> np.ndarray:
        return np.log1p(np.maximum(events[FLOW_FIELDS].to_numpy(dtype=np.float64), 0))

    def fit(self, events: pd.DataFrame, percentile: float = 95.0) -> "FlowForest":
        self.forest.fit(self.rows(events))
        self.threshold_ = float(np.percentile(self.score(events), percentile))
        return self

    def score(self, events: pd.DataFrame) -> np.ndarray:
        return -self.forest.score_samples(self.rows(events))


class FlowClassifier:
    """The supervised reference: gradient-boosted trees on the same flow fields, trained on the
    history's labels (malicious against the rest), alerting at P(malicious) >= 0.5."""

    threshold_ = 0.5

    def __init__(self, seed: int):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.model = HistGradientBoostingClassifier(random_state=seed)

    def fit(self, events: pd.DataFrame) -> "FlowClassifier":
        self.model.fit(FlowForest.rows(events), (events["label"] == "malicious").to_numpy())
        return self

    def score(self, events: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(FlowForest.rows(events))[:, 1]


def partly_labeled(events: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """The events with the labels of a random `share` of their malicious sources kept and the
    other malicious flows labeled benign (history nobody labeled counts as normal)."""
    if share >= 1:
        return events
    malicious = events["label"] == "malicious"
    sources = np.sort(events.loc[malicious, "source.ip"].astype(str).unique())
    kept = np.random.default_rng(seed).choice(sources, size=int(round(share * len(sources))), replace=False)
    out = events.copy()
    out.loc[malicious & ~events["source.ip"].astype(str).isin(kept), "label"] = "benign"
    return out


def with_analyst_verdicts(days: list[str], windows: dict, frames: dict, budget: int) -> tuple[list, int, int]:
    """The history's windows labeled by the verdicts an analyst reviewing `budget` alerts a day
    would have given (module docstring), through the labeling `siem-gad feedback` uses at the
    next training (`triage.feedback.label_windows`); and how many verdicts were true and false
    positives."""
    from dataclasses import replace

    from siem_gad.detectors.rare_links import RareLinksDetector
    from siem_gad.timeutil import isoformat
    from siem_gad.triage.feedback import Verdict, label_windows

    labeled, true_positives, false_positives = list(windows[days[0]]), 0, 0
    for day in days[1:]:
        model = RareLinksDetector().fit(labeled)
        day_windows = [replace(w) for w in windows[day]]  # labels go on copies: other rows use the plain windows
        bad = frames[day][frames[day]["label"] == "malicious"]
        truth = set(zip(bad["@timestamp"].dt.floor(WINDOW), bad["source.ip"].astype(str)))
        alerts = []  # (score, window, source node) of the day's sources over the threshold
        for window, scores in zip(day_windows, model.score(day_windows)):
            sources = np.flatnonzero((window.node_kind == 0) & (scores >= model.threshold_))
            alerts += [(float(scores[n]), window, int(n)) for n in sources]
        verdicts, seen = [], set()
        for _, window, node in sorted(alerts, key=lambda a: -a[0]):
            source = str(window.node_value[node])
            if source in seen:  # one alert per source and day: a rule's 24-hour suppression
                continue
            seen.add(source)
            hit = (pd.Timestamp(window.start), source) in truth
            true_positives, false_positives = true_positives + hit, false_positives + (not hit)
            verdicts.append(Verdict(f"{day}/{source}", "true_positive" if hit else "false_positive",
                                    alerts=[{"start": isoformat(window.start), "entity": window.entity(node)}]))
            if len(seen) == budget:
                break
        label_windows(day_windows, verdicts)
        labeled += day_windows
    return labeled, true_positives, false_positives


def luflow_deployment(protocol: str, train_days: int, quick: bool, seeds: int, history: str = "all",
                      label_share: float = 1.0) -> dict:
    """`history`: "all" trains on the training days as they are; "benign" on their benign
    flows only, which no deployment has (it needs every label of the past): the upper bound
    of what removing the attacks from the history could give. `label_share`: see the module
    docstring (`rare_links, labeled history`)."""
    from siem_gad.detectors.rare_links import RareLinksDetector
    from siem_gad.graphs.bipartite import BipartiteGraphBuilder

    rows = 20_000 if quick else None
    days = LUFLOW_DAYS
    frames = {d: luflow(d, rows) for d in days}
    builder = BipartiteGraphBuilder(bytes_field="source.bytes")
    windows = {d: build(builder, frames[d], WINDOW) for d in days}
    past_frames = frames if history == "all" else {
        d: f[f["label"] != "malicious"].reset_index(drop=True) for d, f in frames.items()}
    past_windows = windows if history == "all" else {d: build(builder, past_frames[d], WINDOW) for d in days}
    labeled_builder = BipartiteGraphBuilder(bytes_field="source.bytes", label_field="label",
                                            positive_values=["malicious"])
    results: dict = {"data": "luflow", "protocol": protocol, "window": "10m", "rows_per_day": rows, "history": history,
                     "label_share": label_share, "folds": []}
    for trained_on, day in PROTOCOLS[protocol](days, train_days):
        history_windows = [w for d in trained_on for w in past_windows[d]]
        history_events = pd.concat([past_frames[d] for d in trained_on], ignore_index=True)
        events = frames[day]
        fold = {"train": trained_on, "scored": day, "has_attacks": bool((events["label"] == "malicious").any()),
                "models": {}}
        for name, make in {**detectors(), "flow forest (baseline)": None}.items():
            entries = []
            for seed in range(seeds):
                if make is None:
                    model = FlowForest(seed).fit(history_events)
                    scores, threshold = model.score(events), model.threshold_
                else:
                    model = make(seed).fit(history_windows)
                    scores = flows_from_edges(windows[day], edge_scores(model, windows[day]), events, WINDOW)
                    threshold = float(model.threshold_)
                entries.append(day_metrics(events, scores, threshold))
                if name == "rare_links":
                    break  # no randomness: one seed is every seed
            fold["models"][name] = entries
        if history == "all":
            labeled_links, classifier = [], []
            for seed in range(seeds):
                history_labeled = {d: partly_labeled(frames[d], label_share, seed) for d in trained_on}
                if seed == 0 or label_share < 1:  # rare_links with all labels has no randomness
                    labeled = [w for d in trained_on for w in build(labeled_builder, history_labeled[d], WINDOW)]
                    model = RareLinksDetector(seed=seed).fit(labeled)
                    scores = flows_from_edges(windows[day], edge_scores(model, windows[day]), events, WINDOW)
                    labeled_links.append(day_metrics(events, scores, float(model.threshold_)))
                flows = FlowClassifier(seed).fit(pd.concat(history_labeled.values(), ignore_index=True))
                classifier.append(day_metrics(events, flows.score(events), flows.threshold_))
            fold["models"]["rare_links, labeled history"] = labeled_links
            fold["models"]["flow classifier, labeled history (supervised reference)"] = classifier
            if protocol == "past":
                reviewed, hits, misses = with_analyst_verdicts(trained_on, windows, frames, BUDGETS[-1])
                model = RareLinksDetector().fit(reviewed)
                scores = flows_from_edges(windows[day], edge_scores(model, windows[day]), events, WINDOW)
                entry = day_metrics(events, scores, float(model.threshold_))
                entry.update(verdicts_true=hits, verdicts_false=misses)
                fold["models"][f"rare_links, {BUDGETS[-1]} analyst verdicts a day"] = [entry]
        results["folds"].append(fold)
        print(f"{day}: trained on {', '.join(trained_on)}", file=sys.stderr)
    return results


# ---------------------------------------------------------------------------- IoT-23 captures
class SupervisedAndNovelty:
    """A flow classifier next to novelty scores, each with a threshold fixed on the training
    captures, and their combinations (an alert when either crosses its threshold).

    - supervised: a random forest on the `host_flow` flow features with the port, P(attack) >= 0.5;
    - novelty (isolation forest): fitted on half of the training captures' benign flows; its
      threshold is the `1 - contamination` quantile of the other half's scores;
    - novelty (rarity in bursts): `hetero_gnn`'s novelty half (`siem_gad.detectors.novelty`,
      its defaults: the rarest feature value against every training flow, the 99th percentile
      of the same held-out benign half, counting in bursts of 50 novel flows per sender and ten
      minutes);
    - combined: max(P(attack), 0.5 x novelty / novelty threshold), alert at 0.5.
    """

    def __init__(self, seed: int, contamination: float = 0.01):
        self.seed, self.contamination = seed, contamination

    def fit(self, x: np.ndarray, attack: np.ndarray, feature_names: tuple[str, ...]) -> "SupervisedAndNovelty":
        from sklearn.ensemble import IsolationForest, RandomForestClassifier

        from siem_gad.detectors.novelty import NoveltyHalf
        from siem_gad.detectors.supervised import SupervisedParams

        self.forest = RandomForestClassifier(n_estimators=100, class_weight="balanced", random_state=self.seed,
                                             n_jobs=2).fit(x, attack)
        benign_rows = np.flatnonzero(~attack)[np.random.default_rng(self.seed).permutation(int((~attack).sum()))]
        half = len(benign_rows) // 2
        benign = x[benign_rows]
        self.isolation = IsolationForest(n_estimators=200, random_state=self.seed).fit(benign[:half])
        self.novelty_threshold = float(np.quantile(-self.isolation.score_samples(benign[half:]), 1 - self.contamination))
        calibration = np.zeros(len(x), dtype=bool)
        calibration[benign_rows[half:]] = True
        defaults = SupervisedParams()
        self.rarity = NoveltyHalf.fit(x[~calibration], x[calibration], feature_names, defaults.novelty_percentile,
                                      defaults.novelty_burst, self.seed)
        return self

    def scores(self, windows: list) -> dict[str, np.ndarray]:
        from siem_gad.graphs.host_flow import FLOW, flow_sender_values

        x = np.concatenate([w.kind_x(FLOW) for w in windows])
        supervised = self.forest.predict_proba(x)[:, list(self.forest.classes_).index(True)]
        novelty = 0.5 * -self.isolation.score_samples(x) / self.novelty_threshold
        rarity = 0.5 * np.concatenate(self.rarity.window_ratios(windows, FLOW, flow_sender_values))
        return {"supervised (forest + port)": supervised, "novelty (isolation forest, benign flows)": novelty,
                "supervised + novelty": np.maximum(supervised, novelty),
                "novelty (rarity in bursts, as `hetero_gnn`)": rarity,
                "supervised + rarity novelty": np.maximum(supervised, rarity)}


def capture_metrics(attack: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict:
    out = binary_metrics(attack, score, threshold)
    alerted = score >= threshold
    out["false_positive_rate"] = float(alerted[~attack].mean()) if (~attack).any() else None
    out["alerts"] = int(alerted.sum())
    return out


def iot23_deployment(protocol: str, train_days: int, quick: bool, seeds: int, corrected: bool) -> dict:
    from siem_gad.graphs.host_flow import HostFlowGraphBuilder

    rows = 3000 if quick else None
    builder = HostFlowGraphBuilder(flows_per_graph=256, port_field="destination.port", label_field="label",
                                   class_field="label.detailed")
    flows = {}
    for capture in IOT23_CAPTURES:
        windows = build(builder, iot23(capture, rows, corrected), timedelta(hours=1))
        x = np.concatenate([w.kind_x(1) for w in windows])
        attack = np.concatenate([w.node_label[w.node_kind == 1] for w in windows]).astype(str) != "benign"
        flows[capture] = (x, attack, windows)
    names = next(w for ws in flows.values() for w in ws[2] if w.num_nodes).kind_feature_names(1)
    results: dict = {"data": "iot23", "protocol": protocol, "labels": "corrected" if corrected else "dataset",
                     "rows_per_capture": rows, "folds": []}
    for trained_on, held in PROTOCOLS[protocol](IOT23_CAPTURES, train_days):
        x = np.concatenate([flows[c][0] for c in trained_on])
        attack = np.concatenate([flows[c][1] for c in trained_on])
        fold = {"train": trained_on, "scored": held, "has_attacks": bool(flows[held][1].any()), "models": {}}
        for seed in range(seeds):
            model = SupervisedAndNovelty(seed).fit(x, attack, names)
            for name, score in model.scores(flows[held][2]).items():
                fold["models"].setdefault(name, []).append(capture_metrics(flows[held][1], score))
        results["folds"].append(fold)
        print(f"{held}: trained on the {len(trained_on)} other captures", file=sys.stderr)
    return results


CAPTURE_COLUMNS = {"f1": "F1 at the fixed threshold", "auc": "ROC-AUC", "ap": "AP",
                   "false_positive_rate": "false-positive rate", "alerts": "flows alerted"}


def capture_table(results: dict) -> str:
    lines = [f"IoT-23, {results['protocol']}, {results['labels']} labels:", "",
             "| held-out capture | flows (attack) | model | " + " | ".join(CAPTURE_COLUMNS.values()) + " |",
             "|---" * (3 + len(CAPTURE_COLUMNS)) + "|"]
    for fold in results["folds"]:
        for model, entries in fold["models"].items():
            first = entries[0]
            lines.append(f"| {fold['scored']} | {first['rows']:,} ({first['attacks']:,}) | {model} | "
                         + " | ".join(cell([e[key] for e in entries]) for key in CAPTURE_COLUMNS) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- tables
ATTACK_COLUMNS = {"auc": "ROC-AUC", "ap": "AP", "recall_at_10": "recall@10 sources", "recall_at_50": "recall@50 sources",
                  "precision_at_10": "precision@10", "alerted_sources": "alerts at training threshold",
                  "alerted_malicious_sources": "of them malicious", "median_delay_minutes": "median delay (min)"}


def cell(values: list) -> str:
    """Median (min-max) over seeds; counts as counts; one value alone."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1 or min(values) == max(values):
        value = values[0]
        return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"
    if all(isinstance(v, int) for v in values):
        return f"{int(np.median(values)):,} ({min(values):,}-{max(values):,})"
    return median_range(values)


def table(results: dict) -> str:
    lines = ["Attack days (each scored alone):", "",
             "| day | flows (malicious) | malicious sources | model | " + " | ".join(ATTACK_COLUMNS.values()) + " |",
             "|---" * (4 + len(ATTACK_COLUMNS)) + "|"]
    benign = ["", "Days without a malicious flow:", "", "| day | flows | sources | model | "
              "sources alerted at training threshold |", "|---" * 5 + "|"]
    for fold in results["folds"]:
        for model, entries in fold["models"].items():
            first = entries[0]
            if fold["has_attacks"]:
                lines.append(f"| {fold['scored']} | {first['flows']:,} ({first['malicious_flows']:,}) | "
                             f"{first['malicious_sources']} of {first['sources']} | {model} | "
                             + " | ".join(cell([e[key] for e in entries]) for key in ATTACK_COLUMNS) + " |")
            else:
                benign.append(f"| {fold['scored']} | {first['flows']:,} | {first['sources']} | {model} | "
                              f"{cell([e['alerted_sources'] for e in entries])} |")
    return "\n".join(lines + benign)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=["luflow", "iot23"])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="past")
    parser.add_argument("--train-days", type=int, default=2, help="for `past`: the earliest days to train on")
    parser.add_argument("--quick", action="store_true", help="20,000 flows a day (the test suite's version)")
    parser.add_argument("--labels", choices=["corrected", "dataset"], default="corrected",
                        help="IoT-23: the C&C labels made consistent across captures (flow_data.iot23), or as published")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--history", choices=["all", "benign"], default="all",
                        help="LUFlow: train on the history's benign flows only (an upper bound, not a deployment)")
    parser.add_argument("--label-share", type=float, default=1.0,
                        help="LUFlow: the share of the history's malicious sources whose labels `rare_links, labeled "
                             "history` keeps (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results/...)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    began = time.perf_counter()
    if args.data == "iot23":
        if args.protocol != "leave-one-out":
            parser.error("IoT-23's captures are separate networks, not a sequence of days: use --protocol leave-one-out")
        results = iot23_deployment(args.protocol, args.train_days, args.quick, args.seeds, args.labels == "corrected")
        name = f"deployment-iot23-{args.protocol}-{args.labels}"
    else:
        results = luflow_deployment(args.protocol, args.train_days, args.quick, args.seeds, args.history,
                                    args.label_share)
        name = f"deployment-luflow-{args.protocol}" + ("-benign-history" if args.history == "benign" else "") + (
            f"-labels-{args.label_share:g}" if args.label_share < 1 else "")
    results["seconds"] = round(time.perf_counter() - began, 1)
    out = args.out or RESULTS / f"{name}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    print(capture_table(results) if args.data == "iot23" else table(results))
    return results


if __name__ == "__main__":
    main()
