"""The `stdout` sink: alerts on standard output, as one-line text or JSON (for piping)."""

from __future__ import annotations

import json
import sys
from typing import Literal

from ..components import Params
from . import Alert, Sink, alert_id_of


class StdoutSink(Sink):
    class Params(Params):
        format: Literal["text", "json"] = "text"

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._seen: set[str] = set()

    def write(self, alerts: list[Alert]) -> int:
        new = [a for a in alerts if alert_id_of(a) not in self._seen]
        for alert in new:
            if self.params.format == "json":
                line = json.dumps(alert, sort_keys=True, default=str)
            else:
                line = f"[{alert['siem_gad']['severity'].upper():8}] {alert['@timestamp']} {alert['rule']['id']}: {alert['message']}"
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        self._seen.update(alert_id_of(a) for a in new)
        return len(new)
