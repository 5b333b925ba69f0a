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
`frame_mismatch`. An oversize message is counted, comes out as an `Oversize` holding its first
`max_bytes` (to be quarantined), and the rest of it is skipped up to the next newline.
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
        self.skipping = False  # inside an oversize message, up to the next newline
        self._head: bytes | None = None  # an oversize octet frame's bytes up to there, kept
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
        if self.waiting_since is not None:
            self.count("truncated", 1)  # an octet-counted frame whose rest never came
        lines = [self._kept_head()] if self.skipping else []
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
        """The kept start of the oversize octet frame just read past (b"" when there is none)."""
        head, self._head = self._head, None
        return Oversize(head.rstrip(b"\r")) if head and head.rstrip(b"\r") else b""

    def _split(self) -> list[bytes]:
        out: list[bytes] = []
        while self.buffer:
            if self.skipping:
                cut = self.buffer.find(b"\n")
                if self._head is not None and len(self._head) < self.max_bytes:
                    self._head += self.buffer[:cut if cut >= 0 else len(self.buffer)][:self.max_bytes - len(self._head)]
                if cut < 0:
                    self._consume(len(self.buffer))
                    break
                self._consume(cut + 1)
                self.skipping = False
                out.append(self._kept_head())
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
        if length > self.max_bytes:
            self.count("oversize", 1)
            self._consume(space + 1)
            self.skipping = True  # resynchronise at the next newline (the count may lie) ...
            self._head = b""  # ... keeping the bytes up to it
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
