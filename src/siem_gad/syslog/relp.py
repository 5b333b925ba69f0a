"""RELP input: the Reliable Event Logging Protocol that rsyslog's `omrelp` speaks.

A RELP frame is `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. The client opens a session
(`open`, offering `relp_version` and `commands`), sends `syslog` frames, each answered by a
`rsp` frame carrying the same transaction number, and ends with `close`. The client keeps every
frame not yet answered and sends it again after a reconnect. So the guarantee rests on one
rule, kept here: a `syslog` frame is answered `200 OK` only after its message is committed
to the spool (SQLite, WAL: a killed process loses no committed transaction). A crash loses
nothing that the sender was told was delivered.

Retransmission makes delivery at-least-once; to make it exactly once, the spool remembers a
digest of the last messages of each sender address (`Spool.recent_digests`): at the start of a
new session, frames whose message was already committed are answered `200 OK` and not stored
again (`duplicates` counter), until the first new message ends that check.

Frames larger than `max_message_bytes` are read whole without being held in memory, counted
as `oversize`, committed as an `Oversize` holding their first `max_message_bytes` (quarantined
by the next pass, not parsed) and answered `200 OK` (they would be refused again on every
retry); a frame that breaks the protocol ends the session with a `serverclose`, as the protocol
prescribes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import ssl

from .connections import Connection, ConnectionServer
from .intake import Oversize

log = logging.getLogger(__name__)
SOFTWARE = "siem-gad,1,https://github.com/siem-gad"
HEADER = re.compile(rb"(\d{1,9}) ([a-z]{1,32}) (\d{1,9})([ \n])")
MAX_HEADER = 9 + 1 + 32 + 1 + 9 + 1
OFFER_ROOM = 4096  # an `open` offer may be longer than a small message limit

Frame = tuple[int, str, bytes]  # (txnr, command, data); an Oversize: the first bytes of a frame too large


class RelpError(ValueError):
    """The peer broke the protocol; the session ends."""


def digest(message: bytes) -> bytes:
    return hashlib.blake2b(message, digest_size=16).digest()


def response(txnr: int, code: int = 200, text: str = "OK", data: bytes = b"") -> bytes:
    body = f"{code} {text}".encode() + (b"\n" + data if data else b"")
    return b"%d rsp %d %s\n" % (txnr, len(body), body)


class RelpParser:
    """Bytes in, RELP frames out. Frames over the size limit are read past without being held
    in memory; they come out (so that they can be answered) with an `Oversize` of their first
    `max_bytes` as data."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.limit = max_bytes + OFFER_ROOM
        self.buffer = b""
        self._skip_left = 0  # bytes of an oversize frame (with its trailer) still to read past
        self._skipped: tuple[int, str] | None = None  # that frame's txnr and command
        self._head = b""  # and its first max_bytes, kept

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames: list[Frame] = []
        while True:
            if self._skip_left:
                taken = min(self._skip_left, len(self.buffer))
                if len(self._head) < self.max_bytes:
                    self._head += self.buffer[:min(taken, self.max_bytes - len(self._head))]
                self.buffer, self._skip_left = self.buffer[taken:], self._skip_left - taken
                if self._skip_left:
                    return frames
                assert self._skipped is not None
                frames.append((*self._skipped, Oversize(self._head)))
                self._skipped, self._head = None, b""
                continue
            frame = self._next()
            if frame is None:
                return frames
            if self._skipped is None:
                frames.append(frame)

    def _next(self) -> Frame | None:
        match = HEADER.match(self.buffer)
        if match is None:
            if len(self.buffer) >= MAX_HEADER or b"\n" in self.buffer:
                raise RelpError(f"bad frame header {self.buffer[:40]!r}")
            return None  # the header is not complete yet
        txnr, command, length = int(match[1]), match[2].decode(), int(match[3])
        start = match.end()
        if length == 0:
            if match[4] != b"\n":
                raise RelpError(f"frame {txnr} {command}: data length 0 must end the frame")
            self.buffer = self.buffer[start:]
            return txnr, command, b""
        if match[4] != b" ":
            raise RelpError(f"frame {txnr} {command}: no data after length {length}")
        if length > self.limit:
            self.buffer, self._skip_left, self._skipped = self.buffer[start:], length + 1, (txnr, command)
            return txnr, command, b""  # held back by feed: reported once the frame is read past
        if len(self.buffer) < start + length + 1:
            return None
        if self.buffer[start + length:start + length + 1] != b"\n":
            raise RelpError(f"frame {txnr} {command}: data not followed by its LF trailer (length {length} wrong?)")
        data = self.buffer[start:start + length]
        self.buffer = self.buffer[start + length + 1:]
        return txnr, command, data


class RelpInput(ConnectionServer):
    """A RELP listener; see the module docstring for what it guarantees."""

    kind = "relp"

    def serve(self, conn: Connection, stream: socket.socket) -> None:
        origin = f"relp:{conn.peer}"
        parser = RelpParser(self.max_message_bytes)
        session = Session(self, origin)
        try:
            while not self.stop_event.is_set():
                self.spool.wait_for_room(self.stop_event)  # full spool: read nothing, answer nothing
                if self.stop_event.is_set():
                    break
                try:
                    data = stream.recv(256 << 10)
                except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
                    if self.should_close(conn):
                        break
                    continue
                if not data:
                    return
                conn.touch()
                replies, closed = session.handle(parser.feed(data))
                if replies:
                    stream.sendall(replies)
                if closed:
                    return
        except RelpError as exc:
            self.spool.count("relp_protocol_errors")
            log.warning("%s: %s broke the RELP protocol (%s); closing the session", self.name, conn.peer, exc)
        try:
            stream.sendall(b"0 serverclose 0\n")  # tell the client to resend what is unanswered
        except OSError:
            pass


class Session:
    """One RELP session: whether it is open, and the duplicate check at its start."""

    def __init__(self, server: RelpInput, origin: str):
        self.server, self.origin = server, origin
        self.opened = False
        self.checking_duplicates = True  # retransmissions come first in a new session
        self.recent: set[bytes] | None = None

    def handle(self, frames: list[Frame]) -> tuple[bytes, bool]:
        """Commit the batch's messages, then return (the replies in frame order, session closed)."""
        replies: list[bytes] = []
        messages: list[bytes] = []
        digests: list[bytes] = []
        closed = False
        spool = self.server.spool
        for txnr, command, data in frames:
            if command == "open":
                if isinstance(data, Oversize) or b"syslog" not in data:
                    raise RelpError("open without the syslog command offered")
                self.opened = True
                offer = f"relp_version=0\nrelp_software={SOFTWARE}\ncommands=syslog".encode()
                replies.append(response(txnr, data=offer))
            elif not self.opened:
                raise RelpError(f"{command!r} before open")
            elif command == "syslog":
                replies.append(response(txnr))
                message = data if isinstance(data, Oversize) else data.rstrip(b"\r\n")
                limit = self.server.max_message_bytes
                if isinstance(message, Oversize) or len(message) > limit:  # the latter within the offer's room
                    spool.count("oversize")
                    message = Oversize(message[:limit])
                if message:
                    key = digest(message)
                    if self.checking_duplicates and self._seen(key):
                        spool.count("duplicates")
                        continue
                    self.checking_duplicates = False
                    messages.append(message)
                    digests.append(key)
            elif command == "close":
                replies.append(b"%d rsp 0\n" % txnr)
                closed = True
            else:
                replies.append(response(txnr, 500, f"command {command} not supported"))
        if messages:
            self.server.spool_lines(messages, self.origin, digests=digests)
        return b"".join(replies), closed  # sent only now that the batch is committed

    def _seen(self, key: bytes) -> bool:
        if self.recent is None:
            self.recent = self.server.spool.recent_digests(self.origin)
        return key in self.recent
