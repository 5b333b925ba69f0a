"""Splitting a syslog TCP byte stream into messages (RFC 6587), robust to senders that lie.

Two framings share one stream, decided per frame:

- octet counting, `LEN SP MSG`, recognised only when the byte after the space opens a syslog
  header (`<`): a line such as `500 short frame` is a plain line, not a 500-byte frame;
- newline-terminated lines otherwise.

An octet count that does not match its frame (`500 <13>short` followed by ordinary lines) is
detected three ways: the bytes after the counted frame do not start a new frame, the counted
frame holds a line break followed by another syslog header, or the rest of the frame never
comes (`stale`, or the peer closes). Then the count is ignored and the bytes are read again as
lines, so the lines after a lying count are still received; each such event is counted as
`frame_mismatch`. An oversize message is counted and comes out as an `Oversize` holding its
first `max_bytes` (to be quarantined). The rest of an oversize line is skipped up to the next
newline; an oversize octet-counted frame is read past, never held, to its counted end, unless a
line break followed by a syslog header shows its count lied first: the frame then ends there.
"""

from __future__ import annotations

import re
import time
from typing import Callable

from .intake import Oversize

NEXT_HEADER = re.compile(rb"\n<\d{1,3}>")
FRAME_START = re.compile(rb"[<\r\n]|\d{1,10} <|\d{0,10} ?$")  # what may follow a frame (or is too short to tell)


class Framer:
    """Feed bytes in, get complete messages out; `count(name, n)` receives the counters."""

    def __init__(self, max_bytes: int, count: Callable[[str, int], None], stale_seconds: float = 2.0):
        self.max_bytes, self.count, self.stale_seconds = max_bytes, count, stale_seconds
        self.buffer = b""
        self.skipping = False  # inside an oversize line, up to the next newline
        self._frame_left = 0  # bytes of an oversize octet-counted frame still to read past
        self._frame_read = 0  # bytes of it read past so far
        self._head = b""  # and its first max_bytes, kept
        self._seen_tail = b""  # its last bytes read past, to find a next header split across reads
        self.waiting_since: float | None = None  # an octet-counted frame waits for its rest since
        self._distrust = 0  # bytes at the buffer's start to read as lines: their count lied

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        out = self._split()
        return [line for line in out if line]

    def flush_stale(self, now: float | None = None) -> list[bytes]:
        """Lines of an octet-counted frame whose rest has not come for `stale_seconds`: its
        count was wrong, and the lines after it must not wait for bytes that never come."""
        now = time.monotonic() if now is None else now
        if self.waiting_since is None or now - self.waiting_since < self.stale_seconds or b"\n" not in self.buffer:
            return []
        self.count("frame_mismatch", 1)
        self._distrust = self.buffer.rfind(b"\n") + 1
        return [line for line in self._split() if line]

    def close(self) -> list[bytes]:
        """The peer went away: what is left is read as lines (an unterminated last line too)."""
        if self.waiting_since is not None or self._frame_left:
            self.count("truncated", 1)  # an octet-counted frame whose rest never came
        lines = [self._kept_head()] if self._frame_left else []
        if not self.skipping and self.buffer.strip():
            self._distrust = len(self.buffer) + 1
            lines = self._split()
            rest = self.buffer.rstrip(b"\r\n")
            if rest and len(rest) <= self.max_bytes:
                lines.append(rest)
            elif rest:
                lines.append(self._oversize(rest))
        self.buffer, self.skipping, self.waiting_since, self._distrust = b"", False, None, 0
        return [line for line in lines if line]

    # ------------------------------------------------------------------ internals
    def _oversize(self, message: bytes) -> Oversize:
        self.count("oversize", 1)
        return Oversize(message[:self.max_bytes])

    def _kept_head(self) -> bytes:
        """The octet frame announced as oversize, now read past: its kept start as an `Oversize`,
        or, when it turned out no longer than `max_bytes` (its count lied, or the peer left),
        the message itself. Its state is reset."""
        head, read = self._head.rstrip(b"\r\n"), self._frame_read
        self._frame_left, self._frame_read, self._head, self._seen_tail = 0, 0, b"", b""
        if read <= self.max_bytes:
            return head
        self.count("oversize", 1)
        return Oversize(head) if head else b""

    def _read_past_frame(self) -> bool:
        """Read the buffer past the oversize octet frame; True once it has ended."""
        chunk = self.buffer[:self._frame_left]
        seen = self._seen_tail + chunk
        lie = NEXT_HEADER.search(seen)
        if lie:  # a line break and a new header inside the counted length: the count lied
            self.count("frame_mismatch", 1)
            end = lie.start() - len(self._seen_tail)  # the frame ends at that line break
            if end >= 0:
                self._head += chunk[:end][:self.max_bytes - len(self._head)]
                self._frame_read += end
                self._consume(end)
            else:  # it was in the bytes read past before: give back what followed it
                given = self._seen_tail[lie.start():]
                if len(self._head) == self._frame_read:
                    self._head = self._head[:len(self._head) - len(given)]
                self._frame_read -= len(given)
                self.buffer = given + self.buffer
            return True
        self._head += chunk[:self.max_bytes - len(self._head)]
        self._frame_read += len(chunk)
        self._consume(len(chunk))
        self._frame_left -= len(chunk)
        self._seen_tail = seen[-8:]
        return self._frame_left == 0

    def _split(self) -> list[bytes]:
        out: list[bytes] = []
        while self.buffer:
            if self._frame_left:
                if not self._read_past_frame():
                    break  # wait for the rest of the frame
                out.append(self._kept_head())
                continue
            if self.skipping:
                cut = self.buffer.find(b"\n")
                if cut < 0:
                    self._consume(len(self.buffer))
                    break
                self._consume(cut + 1)
                self.skipping = False
                continue
            if self._distrust <= 0 and self.buffer[:1].isdigit():
                frame = self._octet_frame()
                if frame is None:
                    break  # wait for the rest of the frame
                if frame is not False:
                    out.append(frame)
                    continue
            self.waiting_since = None
            cut = self.buffer.find(b"\n")
            if cut < 0:
                if len(self.buffer) > self.max_bytes:
                    out.append(self._oversize(self.buffer))
                    self._consume(len(self.buffer))
                    self.skipping = True
                break
            line = self.buffer[:cut].rstrip(b"\r")
            self._consume(cut + 1)
            if len(line) > self.max_bytes:
                out.append(self._oversize(line))
            elif line:
                out.append(line)
        return out

    def _octet_frame(self) -> bytes | None | bool:
        """The next octet-counted message; None to wait for more bytes; False when the buffer
        does not start with a trustworthy octet-counted frame (read it as a line)."""
        space = self.buffer.find(b" ", 0, 12)
        if space < 0 and len(self.buffer) <= 10 and self.buffer.isdigit():
            return None  # the length has not fully arrived
        if space <= 0 or not self.buffer[:space].isdigit():
            return False
        if len(self.buffer) < space + 2:
            return None if len(self.buffer) <= 12 else False
        if self.buffer[space + 1:space + 2] != b"<":
            return False  # `500 short frame`: a number starts the line, no header follows
        length = int(self.buffer[:space])
        if length > self.max_bytes:  # counted as oversize once read past (`_kept_head`): the count may lie
            self._consume(space + 1)
            self._frame_left = length  # read past it as it comes (`_read_past_frame`), keeping its head
            return b""
        end = space + 1 + length
        frame = self.buffer[space + 1:end]
        if NEXT_HEADER.search(frame):
            self.count("frame_mismatch", 1)  # the count ran over the next message
            self._consume(space + 1)  # drop the lying count; the message is read as a line
            return False
        if len(self.buffer) < end:
            if self.waiting_since is None:
                self.waiting_since = time.monotonic()
            return None
        self.waiting_since = None
        if end < len(self.buffer) and not FRAME_START.match(self.buffer, end, end + 13):
            self.count("frame_mismatch", 1)  # the count ended inside a message
            self._consume(space + 1)
            return False
        self._consume(end)
        while self.buffer[:1] in (b"\n", b"\r"):
            self._consume(1)
        return frame.rstrip(b"\r\n") or b""

    def _consume(self, n: int) -> None:
        self.buffer = self.buffer[n:]
        self._distrust -= n
