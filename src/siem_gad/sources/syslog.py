"""The `syslog` source: UDP/TCP listeners and file tails, parsed into ECS events.

Inputs (see `siem_gad.syslog.inputs`) append every line to an on-disk spool
(`siem_gad.syslog.spool`) with its header time; a pass reads the lines of its windows from the
spool, parses the message with the log parsers (the `register_log_parsers` hook) and returns
ECS events. Processed lines are kept `retain` long (retraining reads them again), then deleted
once the checkpoint has moved past them. Lines that cannot be used are counted and quarantined
(`<state_dir>/quarantine/<source>.jsonl`): no syslog header, binary content, or lines that came
after their window had been processed (raise `query_delay` if that happens).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator, model_validator

from ..components import Params
from ..config import Duration
from ..events import empty_events, finalize_events
from ..linefiles import append_durably, json_lines, repair_tail
from ..syslog.headers import HeaderError, parse_line
from ..syslog.connections import Limits
from ..syslog.inputs import FileInput, TcpInput, UdpInput
from ..syslog.intake import Input
from ..syslog.relp import RelpInput
from ..syslog.parsers import BUILTIN_PARSERS, ParserSet
from ..syslog.spool import Spool
from ..timeutil import utcnow
from . import Cursor, ReadResult, Source

log = logging.getLogger(__name__)


class Listen(BaseModel):
    model_config = {"extra": "forbid"}
    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 only on purpose")
    port: int = Field(..., ge=0, le=65535, description="0 picks a free port (tests)")


class TlsConfig(BaseModel):
    model_config = {"extra": "forbid"}
    cert_file: Path
    key_file: Path
    ca_file: Path | None = Field(None, description="require client certificates signed by this CA")


class TcpListen(Listen):
    tls: TlsConfig | None = Field(None, description="serve TLS with this certificate")
    max_connections: int = Field(256, ge=1, description="open connections at most (all peers)")
    max_connections_per_peer: int = Field(32, ge=1, description="open connections at most from one address")
    idle_timeout: Duration = Field(timedelta(minutes=5), description="close a connection idle this long")
    pressure_idle_timeout: Duration = Field(timedelta(seconds=10),
                                            description="idle timeout once more than half the connections are taken")
    evict_after: Duration = Field(timedelta(seconds=1), description="when every connection is taken, the one idle "
                                  "longest is closed for a newcomer if idle at least this long")

    def limits(self) -> Limits:
        return Limits(self.max_connections, self.max_connections_per_peer, self.idle_timeout.total_seconds(),
                      self.pressure_idle_timeout.total_seconds(), self.evict_after.total_seconds())


class SyslogSource(Source):
    class Params(Params):
        udp: Listen | None = Field(None, description="plain UDP syslog: no acknowledgement, losses counted where seen")
        tcp: TcpListen | None = Field(None, description="plain TCP syslog (newline or octet-counted frames)")
        relp: TcpListen | None = Field(None, description="RELP (rsyslog omrelp): each message acknowledged once spooled")
        files: list[str] = Field(default_factory=list, description="paths or globs of log files to tail")
        start_at: Literal["beginning", "end"] = Field("beginning", description="where to start a file seen first")
        follow: bool = Field(True, description="keep tailing files; false reads them once (replays, backfills)")
        poll_interval: Duration = timedelta(seconds=1)
        timezone: str = Field("UTC", description="zone of RFC 3164 timestamps, which carry none")
        max_message_bytes: int = Field(8192, ge=256, le=1 << 20)
        max_spool_lines: int = Field(5_000_000, ge=1000, description="spool size that triggers back-pressure")
        query_delay: Duration = Field(timedelta(seconds=30), description="how long lines may take to arrive")
        retain: Duration = Field(timedelta(days=2), description="keep processed lines this long (retraining)")
        keep_original: bool = Field(False, description="keep the raw line as event.original")

        @field_validator("timezone")
        @classmethod
        def _zone(cls, value: str) -> str:
            ZoneInfo(value)
            return value

        @model_validator(mode="after")
        def _some_input(self) -> "SyslogSource.Params":
            if not (self.udp or self.tcp or self.relp or self.files):
                raise ValueError("configure at least one of udp, tcp, relp or files")
            return self

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.zone = ZoneInfo(self.params.timezone)
        self._spool: Spool | None = None
        self._stop = threading.Event()
        self.inputs: list[Input] = []
        self._parsers: ParserSet | None = None
        self._quarantined: set[int] | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def spool(self) -> Spool:
        if self._spool is None:
            assert self.state_dir is not None, "bind() the source to a state store first"
            self._spool = Spool(Path(self.state_dir) / "spool" / f"{self.name}.sqlite", self.params.max_spool_lines)
        return self._spool

    @property
    def listening(self) -> bool:
        return bool(self.params.udp or self.params.tcp or self.params.relp or (self.params.files and self.params.follow))

    def start(self) -> None:
        """Start the listeners and file tails; files read once (`follow: false`) are read now."""
        if self.inputs:
            return
        common = {"spool": self.spool, "zone": self.zone, "stop": self._stop}
        p = self.params
        if p.udp:
            self.inputs.append(UdpInput(p.udp.host, p.udp.port, p.max_message_bytes, **common))
        if p.tcp:
            self.inputs.append(TcpInput(p.tcp.host, p.tcp.port, p.max_message_bytes, p.tcp.limits(),
                                        _tls_context(p.tcp.tls), **common))
        if p.relp:
            self.inputs.append(RelpInput(p.relp.host, p.relp.port, p.max_message_bytes, p.relp.limits(),
                                         _tls_context(p.relp.tls), **common))
        if p.files:
            self.inputs.append(FileInput(p.files, p.start_at, p.follow, p.poll_interval.total_seconds(),
                                         p.max_message_bytes, **common))
        for item in self.inputs:
            item.start()
            item.ready.wait(5)
        for item in self.inputs:
            if isinstance(item, FileInput) and not p.follow:
                item.join()
        where = [f"{kind} {getattr(p, kind).host}:{port}" for kind, port in self.ports().items()]
        if p.files:
            where.append(f"files {', '.join(p.files)}")
        log.info("%s: receiving on %s", self.name, "; ".join(where))

    def close(self) -> None:
        self._stop.set()
        for item in self.inputs:
            item.join(5)
        self.inputs = []
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def ports(self) -> dict[str, int]:
        """{'udp': port, 'tcp': port, 'relp': port} of the running listeners (port 0 in the config picks one)."""
        kinds = (("udp", UdpInput), ("tcp", TcpInput), ("relp", RelpInput))
        return {kind: i.port for i in self.inputs for kind, cls in kinds if isinstance(i, cls)}

    def counters(self) -> dict[str, int]:
        return self.spool.counters()

    # ------------------------------------------------------------------ the contract
    def bounds(self, cursor: Cursor) -> tuple[datetime | None, datetime | None]:
        first, last = self.spool.time_range()
        if first is None:
            return None, None
        earliest = datetime.fromtimestamp(first, tz=timezone.utc)
        if self.is_finite():
            return earliest, datetime.fromtimestamp(last, tz=timezone.utc) + timedelta(microseconds=1)
        return earliest, utcnow() - self.params.query_delay

    def is_finite(self) -> bool:
        return not self.listening

    def read(self, start: datetime, end: datetime, cursor: Cursor) -> ReadResult:
        spool = self.spool
        retain = self.params.retain.total_seconds()
        if cursor:
            spool.release(cursor["until"] - retain, cursor["max_id"])
        max_id = spool.max_id()
        bad: list[tuple[Any, str]] = []
        if cursor:
            bad += [(line, "late: arrived after its window was processed") for line in
                    spool.late(start.timestamp(), cursor["max_id"], max_id)]
        rows: list[dict] = []
        counts = {"parsed": 0, "unparsed": 0, "invalid_utf8": 0, "quarantined": 0, "late": 0}
        first_reads: list[int] = []
        parsers = self.parsers
        for line in spool.lines(start.timestamp(), end.timestamp(), max_id):
            line_counts = counts if not line.counted else {k: 0 for k in counts}
            event = self._event(line, parsers, line_counts, bad)
            if event is not None:
                rows.append(event)
            if not line.counted:
                first_reads.append(line.id)
        self._quarantine(bad)
        fresh_bad = [(line, reason) for line, reason in bad if not line.counted]
        counts["quarantined"] = len(fresh_bad)
        counts["late"] = sum(1 for _, reason in fresh_bad if reason.startswith("late"))
        spool.mark_counted(first_reads + [line.id for line, reason in fresh_bad if reason.startswith("late")], counts)
        if rows or bad:
            totals = " ".join(f"{k}={v}" for k, v in spool.counters().items())
            log.info("%s: %d events (%d parsed, %d unparsed), %d quarantined; since the start: %s", self.name,
                     len(rows), counts["parsed"], counts["unparsed"], len(bad), totals)
        events = _frame(rows)
        events = finalize_events(events, self.name) if len(events) else empty_events()
        return ReadResult(events, {"until": end.timestamp(), "max_id": max_id},
                          {"read": len(rows), "quarantined": len(bad)})

    # ------------------------------------------------------------------ parsing
    @property
    def parsers(self) -> ParserSet:
        if self._parsers is None:
            registry = ({name: reg.cls for name, reg in self.host.components("log_parsers").items()}
                        if getattr(self, "host", None) is not None else BUILTIN_PARSERS)
            self._parsers = ParserSet(registry)
        return self._parsers

    def _event(self, line, parsers: ParserSet, counts: dict, bad: list) -> dict | None:
        raw = line.line
        if line.oversize:
            limit = self.params.max_message_bytes
            bad.append((line, f"longer than max_message_bytes ({limit}): its first {limit} bytes kept"))
            return None
        if b"\x00" in raw:
            bad.append((line, "binary content (NUL bytes)"))
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            counts["invalid_utf8"] += 1
            text = raw.decode("utf-8", errors="replace")
        if not line.header_ok:
            bad.append((line, "no RFC 5424 or RFC 3164 header"))
            return None
        try:
            record = parse_line(text, datetime.fromtimestamp(line.received, tz=timezone.utc), self.zone)
        except HeaderError as exc:
            bad.append((line, f"header: {exc}"))
            return None
        event: dict[str, Any] = {
            "@timestamp": line.t, "event.id": f"{self.name}-{line.id}", "host.name": record.host,
            "process.name": record.program, "process.pid": record.pid, "message": record.message,
            "log.syslog.facility.code": record.facility, "log.syslog.severity.code": record.severity,
            "log.source": line.origin,
        }
        if self.params.keep_original:
            event["event.original"] = text
        try:
            fields = parsers.parse(record)
        except Exception as exc:  # noqa: BLE001 - a broken parser plugin must not stop the source
            log.warning("%s: a log parser failed on %r: %s", self.name, record.message[:200], exc)
            fields = None
        if fields is None:
            counts["unparsed"] += 1
        else:
            counts["parsed"] += 1
            event.update(fields)
        return event

    def _quarantine(self, bad: list) -> int:
        """Append bad lines to the quarantine file once each (a repeated pass finds them again)."""
        if not bad:
            return 0
        path = Path(self.state_dir) / "quarantine" / f"{self.name}.jsonl"
        if self._quarantined is None:
            repair_tail(path)
            self._quarantined = {document["spool_id"] for _, _, document in json_lines(path, "quarantined line")
                                 if isinstance(document.get("spool_id"), int)}
        new = [(line, reason) for line, reason in bad if line.id not in self._quarantined]
        if new:
            append_durably(path, "".join(
                json.dumps({"spool_id": line.id, "origin": line.origin, "received": line.received, "reason": reason,
                            "line": line.line.decode("utf-8", "backslashreplace")}) + "\n" for line, reason in new))
            self._quarantined.update(line.id for line, _ in new)
        return len(new)


def _frame(rows: list[dict]) -> Any:
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame.from_records(rows)
    frame["@timestamp"] = pd.to_datetime(frame["@timestamp"], unit="s", utc=True)
    return frame


def _tls_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.ca_file:
        context.load_verify_locations(str(tls.ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
