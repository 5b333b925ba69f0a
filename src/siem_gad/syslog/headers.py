"""Syslog headers: RFC 5424, RFC 3164 (BSD) and the plain file form rsyslog writes.

    <34>1 2026-11-23T06:10:00.123456+00:00 web1 sshd 4242 - - Failed password for ...   (RFC 5424)
    <38>Nov 23 06:10:00 web1 sshd[4242]: Failed password for ...                        (RFC 3164)
    Nov 23 06:10:00 web1 sshd[4242]: Failed password for ...                            (a log file)
    2026-11-23T06:10:00.123456+00:00 web1 sshd[4242]: Failed password for ...           (rsyslog, precise)

RFC 3164 times have neither year nor zone: the zone is configured, and the year is the one that
puts the time closest before the reference time (the time the line was received, or the file's
modification time), so December lines read in January land in the previous year.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_PRI = re.compile(r"<(\d{1,3})>")
_5424 = re.compile(r"1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_3164_TIME = re.compile(r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.\d+)? ")
_ISO_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) ")
# TAG[PID]: or TAG: ; TAG may hold "(pam_unix)" or dots/slashes (postfix/smtpd).
_TAG = re.compile(r"([^\s\[\]:]+(?:\([^)\s]*\))?)(?:\[(\d+)\])?: ?")


@dataclass
class SyslogRecord:
    timestamp: datetime
    host: str | None
    program: str | None
    pid: int | None
    message: str
    facility: int | None = None
    severity: int | None = None


class HeaderError(ValueError):
    """The line has no syslog header that can be parsed."""


_TIME_TOKEN = re.compile(r"(?:<(\d{1,3})>)?(?:1 (\S+) |([A-Z][a-z]{2}  ?\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?) |"
                         r"(\d{4}-\d\d-\d\dT\S+) )")
_time_cache: dict[tuple, float] = {}
_time_cache_lock = threading.Lock()  # the listener threads share the cache


def event_time(line: str, reference: datetime, zone: tzinfo) -> float:
    """Just the event time of a line (epoch seconds), for the spool: the same rules as
    `parse_line`, without the rest of the header, and cached per timestamp text and day, since
    a busy sender repeats the same second many times. Raises HeaderError."""
    match = _TIME_TOKEN.match(line)
    if not match:
        raise HeaderError("no RFC 5424 or RFC 3164 timestamp")
    token = match.group(2) or match.group(3) or match.group(4)
    key = (token, reference.date(), zone)
    cached = _time_cache.get(key)
    if cached is None:
        cached = parse_line(line, reference, zone).timestamp.timestamp()
        with _time_cache_lock:
            if len(_time_cache) > 50_000:
                _time_cache.clear()
            _time_cache[key] = cached
    return cached


def parse_line(line: str, reference: datetime, zone: tzinfo) -> SyslogRecord:
    """Parse one syslog line; raise HeaderError when it has no recognisable header."""
    facility = severity = None
    rest = line
    match = _PRI.match(rest)
    if match:
        pri = int(match.group(1))
        if pri > 191:
            raise HeaderError(f"priority {pri} out of range")
        facility, severity = divmod(pri, 8)
        rest = rest[match.end():]
    match = _5424.match(rest)
    if match:
        return _rfc5424(match, rest, facility, severity)
    match = _3164_TIME.match(rest)
    if match:
        timestamp = _bsd_time(match, reference, zone)
    else:
        match = _ISO_TIME.match(rest)
        if not match:
            raise HeaderError("no RFC 5424 or RFC 3164 timestamp")
        timestamp = _iso(match.group(1), zone)
    rest = rest[match.end():]
    host, _, rest = rest.partition(" ")
    tag = _TAG.match(rest)
    program = pid = None
    if tag:
        program, pid = tag.group(1), int(tag.group(2)) if tag.group(2) else None
        rest = rest[tag.end():]
    return SyslogRecord(timestamp, host or None, program, pid, rest.rstrip("\r\n"), facility, severity)


def _rfc5424(match: re.Match, text: str, facility: int | None, severity: int | None) -> SyslogRecord:
    stamp, host, app, procid, _msgid = match.groups()
    if stamp == "-":
        raise HeaderError("RFC 5424 line without a timestamp")
    rest = text[match.end():]
    rest = _skip_structured_data(rest)
    if rest.startswith("\ufeff"):
        rest = rest[1:]
    return SyslogRecord(_iso(stamp, None), None if host == "-" else host, None if app == "-" else app,
                        int(procid) if procid.isdigit() else None, rest.rstrip("\r\n"), facility, severity)


def _skip_structured_data(text: str) -> str:
    if text.startswith("- "):
        return text[2:]
    if text == "-":
        return ""
    position = 0
    while position < len(text) and text[position] == "[":
        escaped = False
        position += 1
        while position < len(text):
            char = text[position]
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "]":
                break
            position += 1
        position += 1
    return text[position:].lstrip(" ")


def _iso(text: str, zone: tzinfo | None) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HeaderError(f"bad timestamp {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def _bsd_time(match: re.Match, reference: datetime, zone: tzinfo) -> datetime:
    month = MONTHS.get(match.group(1))
    if month is None:
        raise HeaderError(f"bad month {match.group(1)!r}")
    day, hour, minute, second = (int(g) for g in match.groups()[1:])
    local_reference = reference.astimezone(zone)
    for year in (local_reference.year, local_reference.year - 1):
        try:
            moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        except ValueError:  # Feb 29 in a year without it
            continue
        if moment <= reference + timedelta(days=1):
            return moment
    raise HeaderError(f"impossible date {match.group(0).strip()!r}")
