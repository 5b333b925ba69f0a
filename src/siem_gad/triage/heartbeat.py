"""Heartbeat: one status document per pass, so the SIEM can tell when siem-gad stops.

A Kibana rule on the `siem-gad-status` index ("no document for job X in 15 minutes", "lag
above 2 hours", "errors > 0") monitors the monitor. Every pass writes one, whatever its
outcome (ok, idle, waiting, error): last pass, watermark, lag behind the clock, events,
alerts, errors, dead letters, and the model versions with their staleness. Its id is a hash of
the job and the pass's start, so it is written once. A sink that cannot take it keeps it in
the dead-letter queue and the pass goes on.
"""

from __future__ import annotations

import hashlib
import socket
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..timeutil import isoformat, utcnow

if TYPE_CHECKING:
    from ..pipeline import JobRunner, PassOutcome


def status_id(job: str, started: datetime) -> str:
    return hashlib.sha256(f"status|{job}|{isoformat(started)}".encode()).hexdigest()[:32]


def status_document(runner: "JobRunner", outcome: "PassOutcome", started: datetime, seconds: float) -> dict[str, Any]:
    """The status document of one pass of `runner`'s job."""
    now = utcnow()
    watermark = outcome.watermark
    if watermark is None:
        checkpoint = runner.app.state.checkpoint(runner.name)
        watermark = checkpoint.watermark if checkpoint else None
    models = []
    for name in runner.config.detectors:
        state, record = runner.models.state(name)
        models.append({
            "detector": name, "version": record.version if record else None, "state": state,
            "trained_until": isoformat(record.train_end) if record and record.train_end else None,
            "age_hours": round((now - record.created_at).total_seconds() / 3600, 2) if record else None,
        })
    errors = int(outcome.status == "error")
    identifier = status_id(runner.name, started)
    lag = round((now - watermark).total_seconds(), 1) if watermark else None
    return {
        "@timestamp": isoformat(now),
        "message": f"{runner.name}: {outcome.status}" + (f": {outcome.message}" if outcome.message else ""),
        "event": {"kind": "metric", "module": "siem_gad", "dataset": "siem_gad.status", "id": identifier,
                  "start": isoformat(started), "end": isoformat(now),
                  "outcome": "failure" if errors else "success"},
        "host": {"name": socket.gethostname()},
        "siem_gad": {"status": {
            "job": runner.name, "outcome": outcome.status, "reason": outcome.message, "started": isoformat(started),
            "seconds": round(seconds, 3), "watermark": isoformat(watermark) if watermark else None, "lag_seconds": lag,
            "windows": outcome.windows, "events": outcome.events, "alerts": outcome.alerts,
            "quarantined": outcome.quarantined, "stopped_by_feedback": outcome.stopped_by_feedback, "errors": errors,
            "dead_letters": runner.app.state.dead_letter_count(), "version": __version__, "models": models,
        }},
    }
