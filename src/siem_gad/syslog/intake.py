"""What every syslog input shares: a thread with a stop event that spools what it receives."""

from __future__ import annotations

import threading
import time
from datetime import tzinfo

from .headers import HeaderError, event_time
from .spool import HEADER_OK, NO_HEADER, OVERSIZE, Spool


class Oversize(bytes):
    """The first `max_message_bytes` of a longer message. It is spooled like any line, so that a
    pass quarantines it with its origin (and RELP's acknowledgement of it stands for something),
    but never parsed: a cut message would make a wrong event."""


def header_time(line: bytes, received: float, zone: tzinfo, reference: float | None = None) -> tuple[float, bool]:
    """(event time, header parsed) for spooling; the receive time when the header is unusable."""
    from datetime import datetime, timezone

    try:
        text = line[:512].decode("utf-8", errors="replace")
        ref = datetime.fromtimestamp(reference if reference is not None else received, tz=timezone.utc)
        return event_time(text, ref, zone), True
    except (HeaderError, ValueError, OverflowError):
        return received, False


class Input(threading.Thread):
    """Base of the input threads: a stop event and failure isolation."""

    def __init__(self, name: str, spool: Spool, zone: tzinfo, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.spool, self.zone, self.stop_event = spool, zone, stop
        self.ready = threading.Event()

    def spool_lines(self, lines: list[bytes], origin: str, file_offset=None, reference: float | None = None,
                    digests: list[bytes] | None = None) -> None:
        """Commit lines to the spool (with the `received` counter, in one transaction); when this
        returns they survive a crash. `digests` are remembered for RELP's duplicate check."""
        received = time.time()
        rows = []
        for line in lines:
            t, ok = header_time(line, received, self.zone, reference)
            state = OVERSIZE if isinstance(line, Oversize) else HEADER_OK if ok else NO_HEADER
            rows.append((t, received, origin, bytes(line), state))
        self.spool.append(rows, file_offset, digests=digests, counts={"received": len(rows)})
