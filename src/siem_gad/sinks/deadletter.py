"""Replaying the dead-letter queue: alerts a sink's server rejected for good, sent again once
the cause (a mapping, a field) is fixed. Stored alerts leave the queue; the others stay with
the new error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pipeline import App


@dataclass
class ReplayResult:
    sink: str
    replayed: int = 0
    still_rejected: int = 0
    first_error: str = ""
    skipped: bool = False  # the sink is no longer in the config: its entries are kept


def replay_dead_letters(app: "App", sink: str | None = None) -> list[ReplayResult]:
    """Send every pending dead-lettered alert (of `sink`, or of all sinks) to its sink again."""
    state = app.state
    entries = state.dead_letters(sink)
    results = []
    for name in sorted({e.sink for e in entries}):
        if name not in app.config.sinks:
            results.append(ReplayResult(name, skipped=True))
            continue
        batch = [e for e in entries if e.sink == name]
        errors = app.sink(name).replay([e.document for e in batch])
        state.mark_replayed([e.id for e in batch if e.alert_id not in errors])
        failed = [e for e in batch if e.alert_id in errors]
        if failed:
            state.add_dead_letters(name, [(e.document, None, errors[e.alert_id]) for e in failed])
        results.append(ReplayResult(name, len(batch) - len(failed), len(failed),
                                    errors[failed[0].alert_id] if failed else ""))
    return results
