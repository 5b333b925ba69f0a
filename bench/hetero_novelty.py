"""`hetero_gnn` with and without its novelty half, IoT-23 leave one capture out.

Every capture is scored by a `hetero_gnn` trained on the five others (C&C labels corrected as
the label audit does, unless `--labels dataset`; the first `--rows` flows of each capture,
10-minute windows of 128 flows), its threshold fixed on those five: best F1 on their held-out
flows. Its novelty half (on by default; `detectors/novelty.py`: feature values training
rarely saw, in bursts per sender) is combined as max(P, threshold x novelty / novelty
threshold); `novelty: false` is the labels alone. Figures per held-out capture: flow ROC-AUC,
F1 at the fixed threshold, and the false-positive rate on its benign flows. Median over
`--seeds` seeds (range).

    .venv/bin/python bench/hetero_novelty.py [--rows 20000] [--seeds 3] [--epochs 30] [--hidden 32] [--time-features both]
    .venv/bin/python bench/hetero_novelty.py --verdicts 20
    .venv/bin/python bench/hetero_novelty.py --labels dataset
    .venv/bin/python bench/hetero_novelty.py --timing
    .venv/bin/python bench/hetero_novelty.py --protocol past
    .venv/bin/python bench/hetero_novelty.py --port

`--labels dataset` keeps the dataset's own labels instead (42-1's C&C heartbeat benign there,
malicious in 34-1), as the label audit reports them beside the corrected ones.

`--time-features both` also trains on graphs whose flows carry the time of day and of week
(the `host_flow` builder's `time_features`), in the same run: what those features do on a
network the model never saw.

`--verdicts N` asks instead what an analyst's feedback does on the new network (the default
`hetero_gnn`, novelty half on). The held-out capture's windows are split in time: in the first
half an analyst reviews the N strongest alerts of the model trained on the other five (one per
sending host and window; a true positive when a flow the alert shows is an attack, else a
false positive). The first half's
windows, unlabeled but for those verdicts (`triage.feedback.label_windows`, as `siem-gad
feedback` labels the next training), join the training; the second half is scored by the model
without and with them, in the same run.

`--protocol past` asks what the same network's next days look like instead of a new network:
one model is trained on the first 70 % of every capture's windows (in time) and scores the
rest of each capture alone, with its thresholds fixed on the training part.

`--port` turns on the builder's `port_field` (the destination port's range and log as flow
features, off by default), as the flow-level bench's random forest has it.

`--timing` measures what the novelty half costs a scoring pass instead: the seconds of
`score` over each held-out capture's windows, by one model with its novelty half and with it
detached, under the product's thread policy (one thread), the median of 7 passes, idle and
with `--load` CPU-bound processes beside it (bench/cpu_load.py).

Data: ../shared/data/iot23. About 8 minutes here (2 cores; `--verdicts` and `--protocol past`
4-5). Prints Markdown.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import numpy as np

from flow_data import IOT23_CAPTURES, iot23
from graph_detectors import build


def figures(model, test: list, truth: np.ndarray) -> tuple[float, float, float]:
    from sklearn.metrics import f1_score, roc_auc_score

    scores = np.concatenate(model.target_scores(test))
    alerted = scores >= model.threshold_
    auc = roc_auc_score(truth, scores) if 0 < truth.sum() < len(truth) else float("nan")
    f1 = f1_score(truth, alerted) if truth.any() else float("nan")
    return auc, f1, float(alerted[~truth].mean())


def reviewed(model, windows: list, budget: int) -> tuple[list, int, int]:
    """Copies of `windows` with no labels but the verdicts on the model's `budget` strongest
    alerts (module docstring), and how many were true and false positives."""
    from dataclasses import replace

    from siem_gad.graphs.host_flow import FLOW
    from siem_gad.labeling import BENIGN
    from siem_gad.timeutil import isoformat
    from siem_gad.triage.feedback import Verdict, label_windows

    alerts = []  # (score, window position, host node)
    for position, (window, scores) in enumerate(zip(windows, model.score(windows))):
        over = np.flatnonzero(np.nan_to_num(scores, nan=-1) >= model.threshold_)
        alerts += [(float(scores[n]), position, int(n)) for n in over]
    verdicts, true_positives = [], 0
    for score, position, host in sorted(alerts, reverse=True)[:budget]:
        window = windows[position]
        shown = model.explain(window, host).evidence
        flows = (window.node_kind == FLOW) & np.isin(window.node_value.astype(str), shown)
        hit = bool((window.node_label[flows] != BENIGN).any())
        true_positives += hit
        alert = {"start": isoformat(window.start), "entity": window.entity(host), "evidence": shown}
        verdicts.append(Verdict(f"{position}/{host}", "true_positive" if hit else "false_positive", alerts=[alert]))
    copies = [replace(w, node_label=None) for w in windows]
    label_windows(copies, verdicts)
    return copies, true_positives, len(verdicts) - true_positives


def verdict_rows(windows: dict, budget: int, seeds: int, params: dict) -> None:
    """The `--verdicts` protocol (module docstring), one row per held-out capture and model."""
    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
    from siem_gad.graphs.host_flow import FLOW

    print("| held-out capture | attack flows / flows scored | verdicts (true / false positives) | model | ROC-AUC | "
          "F1 at the fixed threshold | false-positive rate |\n|---|---|---|---|---|---|---|")
    for held in IOT23_CAPTURES:
        ordered = sorted(windows[held], key=lambda w: w.start)
        first, second = ordered[: len(ordered) // 2], ordered[len(ordered) // 2:]
        train = [w for c in IOT23_CAPTURES if c != held for w in windows[c]]
        truth = np.concatenate([w.node_label[w.node_kind == FLOW] for w in second]) != "benign"
        plain, taught, counts = [], [], []
        for seed in range(1, seeds + 1):
            model = HeteroGnnDetector(**params, seed=seed).fit(train)
            labeled, tp, fp = reviewed(model, first, budget)
            plain.append(figures(model, second, truth))
            retrained = HeteroGnnDetector(**params, seed=seed).fit(train + labeled)
            taught.append(figures(retrained, second, truth))
            counts.append(f"{tp} / {fp}")
        for name, runs in (("`hetero_gnn`", plain), ("`hetero_gnn` + the first half's verdicts", taught)):
            auc, f1, fpr = (list(v) for v in zip(*runs))
            print(f"| {held} | {int(truth.sum())} / {len(truth)} | {', '.join(counts)} | {name} | {cell(auc)} | "
                  f"{cell(f1)} | {cell(fpr)} |", flush=True)


def timing_rows(windows: dict, params: dict, load: int) -> None:
    """The `--timing` protocol (module docstring), one row per held-out capture and load."""
    import time

    from cpu_load import cpu_load
    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
    from siem_gad.threads import decide

    decide("auto").apply()

    def seconds(model, test: list) -> float:
        runs = []
        for _ in range(7):
            began = time.perf_counter()
            model.score(test)
            runs.append(time.perf_counter() - began)
        return float(np.median(runs))

    print("| held-out capture | flows scored | machine | `score` without novelty (s) | with novelty (s) | ratio |\n"
          "|---|---|---|---|---|---|")
    for held in IOT23_CAPTURES:
        train = [w for c in IOT23_CAPTURES if c != held for w in windows[c]]
        model = HeteroGnnDetector(**params, seed=1).fit(train)
        half, test = model.novelty_, windows[held]
        flows = sum(int((w.node_kind == 1).sum()) for w in test)
        for burners in (0, load):
            with cpu_load(burners):
                model.novelty_ = None
                plain = seconds(model, test)
                model.novelty_ = half
                novel = seconds(model, test)
            machine = f"loaded ({burners} CPU-bound processes)" if burners else "idle"
            print(f"| {held} | {flows} | {machine} | {plain:.4f} | {novel:.4f} | {novel / plain:.2f} |", flush=True)


def past_rows(windows: dict, seeds: int, params: dict) -> None:
    """The `--protocol past` rows (module docstring): per capture, its later 30 % of windows."""
    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
    from siem_gad.graphs.host_flow import FLOW

    early, late = {}, {}
    for capture, ws in windows.items():
        ordered = sorted(ws, key=lambda w: w.start)
        cut = int(len(ordered) * 0.7)
        early[capture], late[capture] = ordered[:cut], ordered[cut:]
    train = [w for c in IOT23_CAPTURES for w in early[c]]
    models = {novelty: [HeteroGnnDetector(**params, seed=seed, novelty=novelty).fit(train)
                        for seed in range(1, seeds + 1)] for novelty in (False, True)}
    print("| capture, later 30 % | attack flows / flows | model | ROC-AUC | F1 at the fixed threshold | "
          "false-positive rate |\n|---|---|---|---|---|---|")
    for capture in IOT23_CAPTURES:
        truth = np.concatenate([w.node_label[w.node_kind == FLOW] for w in late[capture]]) != "benign"
        for novelty, fitted in models.items():
            auc, f1, fpr = (list(v) for v in zip(*(figures(m, late[capture], truth) for m in fitted)))
            name = "`hetero_gnn`, `novelty: true` (default)" if novelty else "`hetero_gnn`, `novelty: false`"
            print(f"| {capture} | {int(truth.sum())} / {len(truth)} | {name} | {cell(auc)} | {cell(f1)} | "
                  f"{cell(fpr)} |", flush=True)


def cell(values: list[float]) -> str:
    if all(np.isnan(values)):
        return "-"
    return f"{np.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main(argv: list[str] | None = None) -> None:
    from siem_gad.detectors.hetero_gnn import HeteroGnnDetector
    from siem_gad.graphs.host_flow import FLOW, HostFlowGraphBuilder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="flows read from the start of each capture")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=32,
                        help="hidden width (the bench's 32; the detector's default is 64, with 100 epochs)")
    parser.add_argument("--time-features", choices=["default", "both"], default="default",
                        help="both: also the builder with the time of day and of week as flow features")
    parser.add_argument("--port", action="store_true",
                        help="the builder's `port_field` on: the destination port's range as flow features")
    parser.add_argument("--labels", choices=["corrected", "dataset"], default="corrected",
                        help="corrected: every flow to or from the C&C network is C&C (the label audit)")
    parser.add_argument("--protocol", choices=["leave-one-out", "past"], default="leave-one-out",
                        help="past: train on every capture's first 70 %% of windows, score the rest (module docstring)")
    parser.add_argument("--timing", action="store_true",
                        help="what the novelty half costs a scoring pass, idle and loaded (module docstring)")
    parser.add_argument("--load", type=int, default=2, help="CPU-bound processes beside the loaded --timing rows")
    parser.add_argument("--verdicts", type=int, default=0,
                        help="the feedback protocol instead: verdicts on this many alerts of each held-out "
                             "capture's first half")
    args = parser.parse_args(argv)
    params = {"epochs": args.epochs, "hidden": args.hidden}
    variants = [False, True] if args.time_features == "both" else [HostFlowGraphBuilder().params.time_features]
    captures = {c: iot23(c, rows=args.rows, corrected_labels=args.labels == "corrected") for c in IOT23_CAPTURES}
    windows = {}
    for timed in variants:
        builder = HostFlowGraphBuilder(flows_per_graph=128, label_field="label", class_field="label.detailed",
                                       time_features=timed, port_field="destination.port" if args.port else None)
        windows[timed] = {c: build(builder, events, timedelta(minutes=10)) for c, events in captures.items()}
    if args.verdicts:
        verdict_rows(windows[variants[0]], args.verdicts, args.seeds, params)
        return
    if args.timing:
        timing_rows(windows[variants[0]], params, args.load)
        return
    if args.protocol == "past":
        past_rows(windows[variants[0]], args.seeds, params)
        return
    print("| held-out capture | attack flows / flows | model | ROC-AUC | F1 at the fixed threshold | "
          "false-positive rate |\n|---|---|---|---|---|---|")
    for held in IOT23_CAPTURES:
        for timed in variants:
            train = [w for c in IOT23_CAPTURES if c != held for w in windows[timed][c]]
            truth = np.concatenate([w.node_label[w.node_kind == FLOW] for w in windows[timed][held]]) != "benign"
            for novelty in (False, True):
                runs = [figures(HeteroGnnDetector(**params, seed=seed, novelty=novelty).fit(train),
                                windows[timed][held], truth) for seed in range(1, args.seeds + 1)]
                auc, f1, fpr = (list(v) for v in zip(*runs))
                name = "`hetero_gnn`, `novelty: true` (default)" if novelty else "`hetero_gnn`, `novelty: false`"
                if len(variants) > 1:
                    name += ", time features" if timed else ", no time features"
                print(f"| {held} | {int(truth.sum())} / {len(truth)} | {name} | {cell(auc)} | {cell(f1)} | "
                      f"{cell(fpr)} |", flush=True)


if __name__ == "__main__":
    main()
