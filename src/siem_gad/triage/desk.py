"""The application's triage desk: incidents, verdicts and heartbeats for every job.

One per `App`. Jobs run in their own threads; the state store's transaction serialises the
incident updates, and one lock keeps two threads from sending the same incidents at once
(an older revision could otherwise land after a newer one).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from ..sinks import document_id
from .feedback import FeedbackBook, Verdict, verdict_for
from .incidents import IncidentBook, alert_record
from .related import Related
from .scorebook import ScorePoint, record_points

if TYPE_CHECKING:
    from ..pipeline import App, JobRunner, PassOutcome

log = logging.getLogger(__name__)


class TriageDesk:
    def __init__(self, app: "App"):
        self.app = app
        self.config = app.config
        self._sending = threading.Lock()

    # ------------------------------------------------------------------ where documents go
    def sinks_for(self, kind: str) -> list[str]:
        """The sinks that get `kind` documents: the section's `sinks`, else every sink that keeps them."""
        section = self.config.incidents if kind == "incident" else self.config.heartbeat
        if not section.enabled:
            return []
        names = section.sinks or list(self.config.sinks)
        return [n for n in names if kind in self.app.host.component("sinks", self.config.sinks[n].type).kinds]

    def put(self, kind: str, documents: list[dict[str, Any]], *, dead_letter_on_error: bool) -> bool:
        """Send documents to every sink of `kind`; what a server rejects goes to the dead-letter
        queue. A sink out of reach: its documents are dead-lettered too when
        `dead_letter_on_error`, else the call returns False so that they are sent again later."""
        complete = True
        for name in self.sinks_for(kind):
            try:
                rejected = self.app.sink(name).put(kind, documents)
            except Exception as exc:  # noqa: BLE001 - the pass goes on; nothing is dropped
                log.error("%s: %d %s document(s) not stored: %s", name, len(documents), kind, exc)
                if not dead_letter_on_error:
                    complete = False
                    continue
                rejected = [(d, None, f"{type(exc).__name__}: {exc}") for d in documents]
            if rejected:
                self.app.state.add_dead_letters(name, rejected, kind=kind)
            if kind == "incident":
                bad = {document_id(d) for d, _, _ in rejected}
                self.app.state.supersede_dead_letters(name, [document_id(d) for d in documents
                                                             if document_id(d) not in bad])
        return complete

    # ------------------------------------------------------------------ incidents
    def fold(self, alerts: list[dict[str, Any]], entities: dict[str, dict[str, str]],
             related: dict[str, list[Related]], scores: "list[ScorePoint] | None" = None
             ) -> Callable[[sqlite3.Connection], None] | None:
        """What the pass's commit does to the incidents and the entity score history
        (`StateStore.commit_pass(apply=...)`)."""
        incidents = bool(alerts) and self.config.incidents.enabled
        if not incidents and not scores:
            return None
        records = [alert_record(a, entities[a["siem_gad"]["alert_id"]], related[a["siem_gad"]["alert_id"]])
                   for a in alerts] if incidents else []
        def apply(db: sqlite3.Connection) -> None:
            if records:
                self.book(db).fold(records)
            if scores:
                record_points(db, scores)

        return apply

    def book(self, db: sqlite3.Connection) -> IncidentBook:
        return IncidentBook(db, self.config.incidents.horizon, self.config.incidents.open_at)

    def deliver_incidents(self) -> int:
        """Send every incident whose newest revision a sink does not have yet; return how many."""
        if not self.sinks_for("incident"):
            return 0
        with self._sending:
            with self.app.state.transaction() as db:
                pending = self.book(db).undelivered()
            if not pending:
                return 0
            if not self.put("incident", [doc for _, _, doc in pending], dead_letter_on_error=False):
                log.warning("%d incident update(s) kept for the next pass", len(pending))
                return 0
            with self.app.state.transaction() as db:
                self.book(db).mark_delivered({ident: revision for ident, revision, _ in pending})
            return len(pending)

    # ------------------------------------------------------------------ heartbeat
    def heartbeat(self, runner: "JobRunner", outcome: "PassOutcome", started: datetime, seconds: float) -> None:
        """Write the pass's status document; never raises (a heartbeat must not stop a pass)."""
        if not self.sinks_for("status"):
            return
        from .heartbeat import status_document

        try:
            self.put("status", [status_document(runner, outcome, started, seconds)], dead_letter_on_error=True)
        except Exception:  # noqa: BLE001 - the status document is best effort; the pass result stands
            log.exception("%s: could not write the status document", runner.name)

    # ------------------------------------------------------------------ feedback
    def verdicts(self) -> list[Verdict]:
        with self.app.state.transaction() as db:
            return FeedbackBook(db).verdicts()

    def targets(self, target: str) -> list[dict[str, Any]]:
        """The alert records a verdict on `target` (an alert or incident id) covers."""
        with self.app.state.transaction() as db:
            book = self.book(db)
            alert = book.alert(target)
            if alert is not None:
                return [alert]
            incident = book.find(target)
            while incident is not None and incident["siem_gad"]["incident"]["status"] == "merged":
                incident = book.find(incident["siem_gad"]["incident"]["merged_into"])
            return book.members(incident["event"]["id"]) if incident else []

    def record(self, verdict: Verdict, *, annotate: bool = True) -> int:
        """Keep a verdict, mark it on the alert documents (and incident); return how many
        alert documents a sink changed."""
        fields = verdict.document_fields()
        with self.app.state.transaction() as db:
            FeedbackBook(db).record(verdict)
            self.book(db).set_feedback(verdict.target, fields)
        changed = 0
        if annotate:
            for name in self.config.sinks:
                sink = self.app.sink(name)
                for alert in verdict.alerts:
                    changed += bool(sink.annotate(alert["alert_id"], {"siem_gad": {"feedback": fields}}))
        self.deliver_incidents()
        return changed

    def sync_verdicts(self) -> int:
        """Take over verdicts an analyst set on alert documents in the SIEM; return how many are new."""
        from ..timeutil import parse_time

        known = {v.target: v for v in self.verdicts()}
        taken = 0
        for name in self.config.sinks:
            try:
                documents = self.app.sink(name).verdicts()
            except Exception as exc:  # noqa: BLE001 - the SIEM being away must not stop the pass
                log.warning("%s: could not read analysts' verdicts: %s", name, exc)
                continue
            for document in documents:
                fields = document["siem_gad"]["feedback"]
                target = document["siem_gad"]["alert_id"]
                old = known.get(target)
                if old is not None and (old.verdict, old.scope) == (fields.get("verdict"), fields.get("scope") or old.scope):
                    continue
                records = self.targets(target) or [alert_record(document, {document["siem_gad"]["entity"]["field"]:
                                                                           document["siem_gad"]["entity"]["value"]}, [])]
                try:
                    verdict = verdict_for(target, records, str(fields.get("verdict")), fields.get("scope") or "entity+rule",
                                          parse_time(fields["until"]) if fields.get("until") else None,
                                          fields.get("note") or "", fields.get("by") or "kibana", origin="siem")
                except ValueError as exc:
                    log.warning("%s: alert %s: ignored siem_gad.feedback: %s", name, target, exc)
                    continue
                self.record(verdict, annotate=False)
                known[target] = verdict
                taken += 1
        if taken:
            log.info("took over %d analyst verdict(s) from the SIEM", taken)
        return taken
