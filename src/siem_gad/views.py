"""Plain-text views of what the commands report (job status, a stored alert, the plugins), so
the CLI only prints them and other front ends can reuse them."""

from __future__ import annotations

from typing import Any


def status_lines(report: list[dict[str, Any]]) -> list[str]:
    """`siem-gad status`: per job its checkpoint, lag, counters, models and recent passes."""
    lines = []
    for job in report:
        lag = f"{job['lag_seconds'] / 3600:.1f} h behind now" if job["lag_seconds"] is not None else "not started"
        lines.append(f"job {job['job']} (source {job['source']}): checkpoint {job['checkpoint'] or '-'} ({lag})")
        if job["source_counters"]:
            lines.append("  source: " + " ".join(f"{k}={v}" for k, v in job["source_counters"].items()))
        if job["waiting"]:
            lines.append(f"  WAITING: {job['waiting']}")
        if job["dead_letters"]:
            lines.append(f"  DEAD-LETTERED: {job['dead_letters']} alert(s) rejected by a sink; see `siem-gad deadletter list`")
        for model in job["models"]:
            version = f"v{model['version']}" if model["version"] else "-"
            trained = f", trained on {model['trained_on']}" if model["trained_on"] else ""
            lines.append(f"  detector {model['detector']} ({model['type']}): {version} {model['state']}{trained}")
        for p in job["passes"]:
            window = f"{p['window_start']} .. {p['window_end']}" if p["window_start"] else "-"
            lines.append(f"  pass {p['started']} {p['status']:<8} {window} events={p['events']} alerts={p['alerts']} "
                         f"quarantined={p['quarantined']} {p['seconds']:.2f}s {p['message']}")
    return lines


def alert_lines(alert_id: str, alert: dict[str, Any]) -> list[str]:
    """`siem-gad explain`: why a stored alert fired, in the words of its fields."""
    from .alerts import get_dotted

    g = lambda key, default="": get_dotted(alert, key, default)  # noqa: E731
    ids = g("siem_gad.evidence.event_ids", [])
    return [
        f"alert {alert_id}: {g('rule.name')} ({g('siem_gad.severity')}, risk {g('event.risk_score')})",
        g("message"),
        f"window   {g('siem_gad.window.start')} .. {g('siem_gad.window.end')}",
        f"detector {g('siem_gad.job')}/{g('siem_gad.detector')} ({g('siem_gad.detector_type')}, model "
        f"v{g('siem_gad.model_version')}): score {g('siem_gad.score')} >= threshold {g('siem_gad.threshold')}",
        f"entity   {g('siem_gad.entity.field')} = {g('siem_gad.entity.value')}",
        f"why      {g('siem_gad.summary')}",
        f"top features ({g('siem_gad.details.explained_by') or 'contribution'}):",
        *(f"  {item['name']:<24} value {item['value']:<14} weight {item['weight']:+.4f}"
          for item in g("siem_gad.explanation", [])),
        f"evidence {g('siem_gad.evidence.count', 0)} event(s): {', '.join(ids[:10])}" + (" ..." if len(ids) > 10 else ""),
    ]


def plugin_lines(described: list[dict[str, Any]]) -> list[str]:
    """`siem-gad plugins`: one line per plugin (name, status, origin, what it provides)."""
    lines = []
    for plugin in described:
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in plugin["components"].items())
        hooks = ", ".join(h for h in plugin["hooks"] if not h.startswith("register_") or h == "register_commands")
        line = f"{plugin['name']:<40} {plugin['status']:<8} {plugin['origin']:<12} {provides}"
        lines.append(line + (f" hooks: {hooks}" if hooks else ""))
        if plugin["error"]:
            lines.append(f"    error: {plugin['error']}  ({plugin['location']})")
    return lines
