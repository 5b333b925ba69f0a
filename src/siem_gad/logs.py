"""Logging: readable text by default, one JSON object per line on request."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "@timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat().replace("+00:00", "Z"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["error.stack_trace"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["error.stack_trace"] = record.exc_text
        doc.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        return json.dumps(doc, default=str)


# Client libraries that log every failed request, with a full traceback, at WARNING: the
# client wrapper already logs each retry in one line, so they speak only at DEBUG.
CHATTY_LIBRARIES = ("opensearch", "elastic_transport", "elasticsearch", "urllib3")


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    from .redact import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    for noisy in CHATTY_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.ERROR)
