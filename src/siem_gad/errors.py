"""Errors that say the outside world failed, not siem-gad: reported in one line, never a traceback."""

from __future__ import annotations


class OperationalError(RuntimeError):
    """An expected failure outside the process (a cluster unreachable, a write refused after its
    retries): the pass is recorded as failed with this message and retried on the next schedule."""
