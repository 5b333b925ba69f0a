"""Replaying the dead-letter queue: documents a sink's server rejected for good (or, for
heartbeats and incidents, could not be reached for), sent again once the cause is fixed.
Stored documents leave the queue; the others stay with the new error."""

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
        errors: dict[str, str] = {}
        for kind in sorted({e.kind for e in batch}):
            errors.update(replay_kind(app.sink(name), kind, [e.document for e in batch if e.kind == kind]))
        state.mark_replayed([e.id for e in batch if e.alert_id not in errors])
        failed = [e for e in batch if e.alert_id in errors]
        for kind in sorted({e.kind for e in failed}):
            state.add_dead_letters(name, [(e.document, None, errors[e.alert_id]) for e in failed if e.kind == kind],
                                   kind=kind)
        results.append(ReplayResult(name, len(batch) - len(failed), len(failed),
                                    errors[failed[0].alert_id] if failed else ""))
    return results


def replay_kind(sink, kind: str, documents: list[dict]) -> dict[str, str]:
    """{document id: error} of the documents of `kind` the sink still rejects."""
    from . import document_id

    if kind == "alert":
        return sink.replay(documents)
    try:
        return {document_id(d): error for d, _, error in sink.put(kind, documents)}
    except Exception as exc:  # noqa: BLE001 - reported per document, kept in the queue
        return {document_id(d): f"{type(exc).__name__}: {exc}" for d in documents}
