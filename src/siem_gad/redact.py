"""Credentials never leave the process: `user:password@` in URLs is masked wherever text is
logged, raised, printed or stored.

A host such as `https://elastic:PASSWORD@es:9200` is a valid (if discouraged) way to configure a
cluster, and the URL travels into client errors, retry warnings, `setup` failures and pass
records. `redact` masks the password of every URL in a text; `RedactingFilter` applies it to
every log record (message, arguments and traceback) on the way out.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@")


def redact(text: str) -> str:
    """`text` with the password of every `scheme://user:password@` masked."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


class RedactingFilter(logging.Filter):
    """Masks credentials in a record's final message and in its traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if redact(text) != text:
                record.exc_text, record.exc_info = redact(text), None
        return True
