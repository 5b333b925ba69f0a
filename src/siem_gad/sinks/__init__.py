"""Alert sinks: where alert documents go.

`write(alerts)` returns once every alert is durably stored (the acknowledgement the checkpoint
waits for) and raises when it cannot be. Sinks must be idempotent on `siem_gad.alert_id`: a
pass repeated after a crash hands them the same alerts again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..components import Component

Alert = dict[str, Any]


def alert_id_of(alert: Alert) -> str:
    return alert["siem_gad"]["alert_id"]


class Sink(Component, ABC):
    @abstractmethod
    def write(self, alerts: list[Alert]) -> int:
        """Store the alerts; return how many were new. Raise if they cannot be stored."""
