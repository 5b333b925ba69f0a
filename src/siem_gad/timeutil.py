"""Durations, timestamps and window alignment.

Kept free of pandas/numpy so that config validation stays fast; everything here works on
`datetime` (always timezone-aware UTC) and `timedelta`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """'90s', '15m', '1h', '2d', '1w' or a number of seconds -> timedelta (positive)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"expected a duration like '15m' or '1h', got {value!r}")
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration like '90s', '15m', '1h', '2d' or '1w', got {value!r}")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return timedelta(seconds=seconds)


def parse_time(value: str | datetime, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (naive means UTC), 'now', or a relative '-7d' -> aware UTC datetime."""
    if isinstance(value, datetime):
        return to_utc(value)
    text = str(value).strip()
    if text == "now":
        return now or utcnow()
    if text.startswith("-"):
        return (now or utcnow()) - parse_duration(text[1:])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time, 'now' or a relative time like '-7d', got {value!r}") from None
    return to_utc(parsed)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def align_down(moment: datetime, size: timedelta) -> datetime:
    """The start of the window of length `size` (aligned to the Unix epoch) holding `moment`."""
    step = int(size.total_seconds() * 1_000_000)
    offset = int((to_utc(moment) - EPOCH) / timedelta(microseconds=1))
    return EPOCH + timedelta(microseconds=(offset // step) * step)


def align_up(moment: datetime, size: timedelta) -> datetime:
    start = align_down(moment, size)
    return start if start == to_utc(moment) else start + size


def isoformat(moment: datetime) -> str:
    """Compact ISO form with a Z suffix, the form used in alert documents and ids."""
    text = to_utc(moment).isoformat()
    return text.replace("+00:00", "Z")
