"""Write an evaluation: `report.md`, `metrics.json` and PNG plots (matplotlib, no display)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..timeutil import isoformat
from .runner import DetectorEvaluation, Evaluation


def write_report(evaluation: Evaluation, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics": out / "metrics.json", "report": out / "report.md"}
    files["metrics"].write_text(json.dumps(metrics_document(evaluation), indent=2, default=str))
    files.update(_plots(evaluation, out))
    files["report"].write_text(_markdown(evaluation, files))
    return files


def _name(d: DetectorEvaluation) -> str:
    return f"{d.job}/{d.detector}"


def metrics_document(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "config": evaluation.config, "label_field": evaluation.label_field,
        "positive_values": evaluation.positives or "anything but benign/normal/-/0/false/empty",
        "data": evaluation.data,
        "detectors": [{
            "job": d.job, "detector": d.detector, "type": d.type, "level": d.level,
            "train": [isoformat(t) for t in d.train] if d.train else "stored model",
            "scored": [isoformat(t) for t in d.scored], **d.metrics, "rules": d.rules,
        } for d in evaluation.detectors],
    }


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _delay_text(delays: dict[str, float | None]) -> str:
    parts = [f"{k}: {'missed' if v is None else f'{v / 60:.0f} min'}" for k, v in delays.items()]
    return "; ".join(parts) or "-"


def _markdown(evaluation: Evaluation, files: dict[str, Path]) -> str:
    lines = ["# siem-gad evaluation", "",
             f"Config `{evaluation.config}`; labels from `{evaluation.label_field}` (positive: "
             f"{', '.join(evaluation.positives) if evaluation.positives else 'anything but benign/normal/-/0/false/empty'}).",
             "An item is positive when any of its events is (window; entity-window for node-level detectors; "
             "edge for edge-level ones).", "", "## Data and split", "",
             "| job | events | positive events | windows | range |", "|---|---|---|---|---|"]
    for job, data in evaluation.data.items():
        lines.append(f"| {job} | {data['events']:,} | {data['positive_events']:,} | {data['windows']} | "
                     f"{data['from']} .. {data['to']} |")
    lines += ["", "| detector | trained on | scored |", "|---|---|---|"]
    for d in evaluation.detectors:
        train = f"{isoformat(d.train[0])} .. {isoformat(d.train[1])}" if d.train else "stored model"
        lines.append(f"| {_name(d)} | {train} | {isoformat(d.scored[0])} .. {isoformat(d.scored[1])} |")
    lines += ["", "## Detectors", "",
              "| detector | level | items (positive) | ROC-AUC | AP | P@20 | P / R / F1 at threshold | "
              "best F1 (threshold) | flagged per day |",
              "|---|---|---|---|---|---|---|---|---|"]
    for d in evaluation.detectors:
        m, t, b = d.metrics, d.metrics["at_threshold"], d.metrics["at_best_f1"]
        lines.append(f"| {_name(d)} ({d.type}) | {d.level} | {m['items']:,} ({m['positives']:,}) | {_fmt(m['roc_auc'])} | "
                     f"{_fmt(m['average_precision'])} | {_fmt(m['precision_at_20'], 2)} | "
                     f"{_fmt(t['precision'], 2)} / {_fmt(t['recall'], 2)} / {_fmt(t['f1'], 2)} | "
                     f"{_fmt(b['f1'], 2)} ({b['threshold']:.4g}) | {m['alerts_per_day']:.1f} |")
    lines += ["", "## Per day (as deployed: threshold fixed at training, each day on its own)", "",
              "A day without attacks has no ROC-AUC (nothing to rank); its alerts are all false positives. "
              "Recall at k: the share of the day's attack items (entities) among its k highest scores, what "
              "an analyst who reads k alerts a day sees.", "",
              "| detector | day | items (positive) | attack entities | ROC-AUC | AP | alerts at threshold | "
              "recall @10 (entities) | recall @50 (entities) | P@10 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for d in evaluation.detectors:
        for day in d.metrics["per_day"]:
            lines.append(f"| {_name(d)} | {day['day']} | {day['items']:,} ({day['positives']:,}) | "
                         f"{day['attack_entities']} | {_fmt(day['roc_auc'])} | {_fmt(day['average_precision'])} | "
                         f"{day['alerts_at_threshold']} | {_fmt(day['recall_at_10'], 2)} "
                         f"({_fmt(day['entity_recall_at_10'], 2)}) | {_fmt(day['recall_at_50'], 2)} "
                         f"({_fmt(day['entity_recall_at_50'], 2)}) | {_fmt(day['precision_at_10'], 2)} |")
    lines += ["", "Detection delay at the detector's threshold (first flagged window end minus the incident's "
              "first labeled event):", ""]
    lines += [f"- {_name(d)}: {_delay_text(d.metrics['detection_delay_s'])}" for d in evaluation.detectors]
    lines += ["", "## Rules (after suppression: what analysts see)", "",
              "| rule | detector | alerts | true alerts | precision | with analysts' verdicts | incidents caught "
              "| alerts per day | delay |",
              "|---|---|---|---|---|---|---|---|---|"]
    for d in evaluation.detectors:
        for rule_id, r in d.rules.items():
            f = r["feedback"]
            with_feedback = (f"{f['alerts']} alerts, precision {_fmt(f['precision'], 2)} ({f['verdicts']} verdicts)"
                             if f["verdicts"] else "no verdicts")
            lines.append(f"| {rule_id} | {_name(d)} | {r['alerts']} | {r['true_alerts']} | {_fmt(r['precision'], 2)} | "
                         f"{with_feedback} | {len(r['incidents_detected'])} of {len(r['incidents'])} | "
                         f"{r['alerts_per_day']:.1f} | {_delay_text(r['detection_delay_s'])} |")
    lines += ["", "## Plots", ""]
    lines += [f"![{key}]({path.name})" for key, path in files.items() if path.suffix == ".png"]
    return "\n".join(lines) + "\n"


def _plots(evaluation: Evaluation, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    files: dict[str, Path] = {}
    curves = [d for d in evaluation.detectors if d.metrics["roc_auc"] is not None]
    for kind in ("roc", "pr"):
        figure, axis = plt.subplots(figsize=(6, 5))
        for d in curves:
            labels, scores = d.items["positive"].to_numpy(), np.nan_to_num(d.items["score"].to_numpy(), nan=-1e300)
            if kind == "roc":
                x, y, _ = roc_curve(labels, scores)
                axis.plot(x, y, label=f"{_name(d)} (AUC {d.metrics['roc_auc']:.3f})")
            else:
                y, x, _ = precision_recall_curve(labels, scores)
                axis.plot(x, y, label=f"{_name(d)} (AP {d.metrics['average_precision']:.3f})")
        if kind == "roc":
            axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
            axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        else:
            axis.set(xlabel="recall", ylabel="precision", title="Precision-recall")
        axis.legend(fontsize=8)
        files[kind] = out / f"{kind}.png"
        figure.tight_layout()
        figure.savefig(files[kind], dpi=110)
        plt.close(figure)

    count = max(1, len(evaluation.detectors))
    figure, axes = plt.subplots(count, 1, figsize=(10, 2.6 * count), squeeze=False)
    for axis, d in zip(axes[:, 0], evaluation.detectors):
        per_window = d.items.groupby("window_start").agg(score=("score", "max"), positive=("positive", "any"))
        axis.plot(per_window.index, per_window["score"], color="tab:blue", linewidth=1)
        axis.axhline(d.threshold, color="tab:red", linestyle="--", linewidth=1, label="threshold")
        values = per_window["score"].to_numpy()
        if len(values) and np.nanmin(values) > 0 and np.nanmax(values) > 20 * np.nanmedian(values):
            axis.set_yscale("log")  # a few huge scores would flatten the rest
        for moment in per_window.index[per_window["positive"].to_numpy()]:
            axis.axvspan(moment, moment + (d.scored[1] - d.scored[0]) / max(1, len(per_window)), color="orange",
                         alpha=0.25, linewidth=0)
        axis.set_title(f"{_name(d)}: highest score per window (labeled windows shaded)", fontsize=9)
        axis.legend(fontsize=7, loc="upper left")
    files["timeline"] = out / "timeline.png"
    figure.tight_layout()
    figure.savefig(files["timeline"], dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(8, 4))
    for d in evaluation.detectors:
        flagged = d.items[d.items["score"] >= d.threshold]
        per_day = flagged.groupby(flagged["window_start"].dt.floor("D") if len(flagged) else []).size()
        if len(per_day):
            axis.plot(per_day.index, per_day.to_numpy(), marker="o", label=_name(d))
    axis.set(title="Flagged items per day at the detector's threshold", ylabel="items")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)
    files["alerts_per_day"] = out / "alerts_per_day.png"
    figure.tight_layout()
    figure.savefig(files["alerts_per_day"], dpi=110)
    plt.close(figure)
    return files
