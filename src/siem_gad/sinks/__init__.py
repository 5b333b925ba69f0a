"""Alert sinks: where alert documents go.

`write(alerts)` returns once every alert is stored (the acknowledgement the checkpoint waits
for) and raises when it cannot be. Sinks must be idempotent on `siem_gad.alert_id`: a pass
repeated after a crash hands them the same alerts again.

Besides alerts, a sink may keep incidents and status documents (`kinds`): `put(kind, docs)`
replaces whatever it holds under each document's id (`event.id`), so the newest version of an
incident wins and a repeat changes nothing. And a sink that can hold analysts' verdicts on its
alerts (`annotate`, `verdicts`) lets feedback travel both ways.

A sink whose server rejects a document for good (a mapping conflict, say) does not block the
job: it keeps the document in the state store's dead-letter queue (`self.state`) and counts it
as handled. `replay` writes such documents again once the cause is fixed
(`siem-gad deadletter replay`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..components import Component

Alert = dict[str, Any]


Rejected = list[tuple[dict[str, Any], "int | None", str]]  # (document, HTTP status, error)


def alert_id_of(alert: Alert) -> str:
    return alert["siem_gad"]["alert_id"]


def document_id(document: dict[str, Any]) -> str:
    """The id of any document siem-gad writes (alert, incident, status): its `event.id`."""
    return document["event"]["id"]


class Sink(Component, ABC):
    kinds: ClassVar[frozenset[str]] = frozenset()  # which of 'incident', 'status' `put` takes

    @abstractmethod
    def write(self, alerts: list[Alert]) -> int:
        """Store the alerts; return how many were new. Raise if they cannot be stored."""

    def find(self, alert_id: str) -> Alert | None:
        """The stored alert with this id, or None (`siem-gad explain`); sinks that cannot read
        back what they wrote keep the default."""
        return None

    def put(self, kind: str, documents: list[dict[str, Any]]) -> Rejected:
        """Store incident or status documents, each replacing what is stored under its id;
        return those the server rejected for good. Raise when they cannot be stored now."""
        raise NotImplementedError(f"{type(self).__name__} keeps no {kind} documents")

    def annotate(self, alert_id: str, fields: dict[str, Any]) -> bool:
        """Merge `fields` into the stored alert (an analyst's verdict); False when this sink
        cannot change what it stored."""
        return False

    def verdicts(self) -> list[Alert]:
        """Stored alerts on which an analyst set `siem_gad.feedback.verdict` in the SIEM."""
        return []

    def replay(self, alerts: list[Alert]) -> dict[str, str]:
        """Write dead-lettered alerts again; return {alert_id: error} for those still rejected.

        The default writes them and, for a sink that can read back (`find`), checks that each
        is stored; a write that raises rejects the whole batch with its error."""
        try:
            self.write(alerts)
        except Exception as exc:  # noqa: BLE001 - reported per alert, kept in the queue
            return {alert_id_of(a): f"{type(exc).__name__}: {exc}" for a in alerts}
        if type(self).find is Sink.find:
            return {}
        return {alert_id_of(a): "not found in the sink after the write" for a in alerts if self.find(alert_id_of(a)) is None}
