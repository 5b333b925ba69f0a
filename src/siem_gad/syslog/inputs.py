"""Where syslog lines come from: UDP and TCP listeners and file tails, all feeding the spool.

Each input runs in its own thread and never lets one bad client or line take it down:

- UDP: one datagram is one message. Oversize datagrams are counted and dropped; the kernel's
  own drops (socket buffer overflow) are counted from the socket's drop counter (see
  `UdpInput`).
- TCP: newline framing and RFC 6587 octet counting (`framing`), optional TLS, fair connection
  handling (`connections`); lines are spooled (committed) before more is read from the
  socket, so when the spool is full the kernel's receive window closes and the sender slows
  down (back-pressure) instead of anything being dropped.
- RELP (`relp`): acknowledged delivery, each frame acknowledged once it is in the spool.
- Files: globs, polled; rename rotation (the old file is read to its end first) and
  copytruncate (the file shrank) are followed; offsets are stored with the lines.
"""

from __future__ import annotations

import glob
import logging
import os
import socket
import ssl
import struct
import threading
import time
from typing import Callable

from .connections import Connection, ConnectionServer
from .framing import Framer
from .intake import Input, Oversize

log = logging.getLogger(__name__)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)


class UdpInput(Input):
    """UDP syslog: one datagram, one message.

    Loss accounting (`dropped_kernel`): the datagrams the kernel discarded because this
    socket's receive buffer was full. Two readings of the same per-socket counter: each
    datagram carries it (`SO_RXQ_OVFL`) as it was when the datagram was queued, and
    `/proc/net/udp` gives it now. The ancillary value alone misses the tail of every burst
    (the drops after the last queued datagram), so the counter is also read when the socket
    has been quiet for 0.2 s and when the input stops. Not covered, because nothing on this
    host can see it: datagrams lost before they reached the socket (the sender's host, the
    network, a firewall).
    """

    def __init__(self, host: str, port: int, max_message_bytes: int, **kw):
        super().__init__(f"syslog-udp-{port}", **kw)
        self.max_message_bytes = max_message_bytes
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        except OSError:
            pass  # /proc/net/udp still gives the count, when the input is quiet
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self._inode = os.fstat(self.sock.fileno()).st_ino
        self._dropped_seen = 0

    def run(self) -> None:
        self.ready.set()
        while not self.stop_event.is_set():
            batch: list[bytes] = []
            try:
                self._receive(batch)  # waits up to 0.2 s for the first datagram
                self.sock.setblocking(False)  # then takes what is queued, up to 50 ms or 2000
                deadline = time.monotonic() + 0.05
                while len(batch) < 2000 and time.monotonic() < deadline:
                    self._receive(batch)
            except TimeoutError:
                self._note_drops(socket_drops(self._inode))  # quiet: count the tail of the last burst
            except BlockingIOError:
                pass
            except OSError as exc:
                if self.stop_event.is_set():
                    break
                log.warning("%s: %s", self.name, exc)
            finally:
                self.sock.settimeout(0.2)
            if batch:
                self.spool_lines(batch, f"udp:{self.port}")
        self._note_drops(socket_drops(self._inode))
        self.sock.close()

    def _receive(self, batch: list[bytes]) -> None:
        data, ancillary, _flags, _peer = self.sock.recvmsg(self.max_message_bytes + 1, socket.CMSG_SPACE(4))
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                self._note_drops(struct.unpack("I", value[:4])[0])
        if self.spool.full():
            self.spool.count("dropped_spool_full")
        elif len(data) > self.max_message_bytes:
            self.spool.count("oversize")
            batch.append(Oversize(data[:self.max_message_bytes]))
        else:
            batch.extend(line for line in data.rstrip(b"\r\n\x00").split(b"\n") if line)

    def _note_drops(self, total: int | None) -> None:
        """Count the socket's cumulative kernel drops `total` (None: not readable) once."""
        if total is not None and total > self._dropped_seen:
            self.spool.count("dropped_kernel", total - self._dropped_seen)
            self._dropped_seen = total


def socket_drops(inode: int) -> int | None:
    """The kernel's drop counter of the UDP socket with `inode` (the last column of
    /proc/net/udp and udp6), or None where /proc does not show it."""
    wanted = str(inode)
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == wanted:
                        return int(fields[-1])
        except OSError:
            continue
    return None


class TcpInput(ConnectionServer):
    """Plain TCP syslog: newline or octet-counted framing (see `framing`), optional TLS.

    Lines are spooled (committed) before more is read from the socket, so when the spool is
    full the kernel's receive window closes and the sender slows down instead of anything being
    dropped here. What the kernel already accepted for a peer is lost if the process is killed:
    plain TCP has no acknowledgement (use RELP for that).
    """

    kind = "tcp"

    def serve(self, conn: Connection, stream: socket.socket) -> None:
        origin = f"tcp:{conn.peer}"
        framer = Framer(self.max_message_bytes, self.spool.count)
        drain_until = None
        while True:
            if self.stop_event.is_set() and drain_until is None:
                # Shutting down: take in what the peer already sent (at most 2 s), then close.
                drain_until = time.monotonic() + 2.0
                stream.settimeout(0.1)
            if drain_until is not None and time.monotonic() > drain_until:
                break
            if drain_until is None:
                self.spool.wait_for_room(self.stop_event)  # back-pressure: stop reading while full
            try:
                data = stream.recv(65536)
            except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
                stale = framer.flush_stale()
                if stale:
                    self.spool_lines(stale, origin)
                if drain_until is not None or self.should_close(conn):
                    break
                continue
            if not data:
                break
            conn.touch()
            lines = framer.feed(data)
            if lines:
                self.spool_lines(lines, origin)
        rest = framer.close()
        if rest:
            self.spool_lines(rest, origin)


class FileInput(Input):
    """Tails files matching globs; follows rename and copytruncate rotation."""

    def __init__(self, patterns: list[str], start_at: str, follow: bool, poll_interval: float,
                 max_message_bytes: int, reference: Callable[[str], float] | None = None, **kw):
        super().__init__("syslog-files", **kw)
        self.patterns, self.start_at, self.follow = patterns, start_at, follow
        self.poll_interval, self.max_message_bytes = poll_interval, max_message_bytes
        self.offsets = {path: list(v) for path, v in self.spool.file_offsets().items()}  # path -> [dev, ino, offset]
        self.handles: dict[str, tuple] = {}  # path -> (open file, dev, ino): a renamed file stays readable
        self.heads: dict[str, bytes] = {}  # path -> the file's first bytes, to notice copytruncate
        self.scanned: dict[str, tuple[int, int]] = {}  # path -> (start, searched to) of an unfinished enormous line
        self.finished = threading.Event()

    def run(self) -> None:
        self.ready.set()
        while not self.stop_event.is_set():
            progressed = False
            for path in sorted({p for pattern in self.patterns for p in glob.glob(pattern)}):
                try:
                    progressed |= self._read(path)
                except OSError as exc:
                    log.warning("%s: %s", path, exc)
            if not self.follow and not progressed:
                self.close_files()
                self.finished.set()
                return
            if not progressed:
                self.stop_event.wait(self.poll_interval)
        self.close_files()

    def _read(self, path: str) -> bool:
        stat = os.stat(path)
        progressed = False
        current = self.handles.get(path)
        if current is not None and (current[1], current[2]) != (stat.st_dev, stat.st_ino):
            # Rotated by rename: finish the old file (still open) before the new one.
            progressed |= self._drain(path, current)
            current[0].close()
            del self.handles[path]
            self.heads.pop(path, None)
            self.scanned.pop(path, None)
            current = None
            self.offsets[path] = [stat.st_dev, stat.st_ino, 0]
            log.info("%s: rotated; reading the new file from the start", path)
        if current is None:
            known = self.offsets.get(path)
            if known is None:
                offset = stat.st_size if self.start_at == "end" else 0
            elif (known[0], known[1]) != (stat.st_dev, stat.st_ino):
                offset = 0  # replaced while we were not running
            else:
                offset = known[2]
            current = self.handles[path] = (open(path, "rb"), stat.st_dev, stat.st_ino)
            self.offsets[path] = [stat.st_dev, stat.st_ino, offset]
        if self._truncated(path, current[0]):
            log.info("%s: truncated (copytruncate); reading it from the start", path)
            self.offsets[path][2] = 0
            self.scanned.pop(path, None)
        return self._drain(path, current) or progressed

    def _truncated(self, path: str, handle) -> bool:
        """The file shrank below our offset, or its first bytes changed (truncated and refilled
        past the old offset between two polls)."""
        offset = self.offsets[path][2]
        if os.fstat(handle.fileno()).st_size < offset:
            return True
        head = self.heads.get(path)
        if offset == 0 or not head:
            return False
        return os.pread(handle.fileno(), len(head), 0) != head

    def _drain(self, path: str, current: tuple) -> bool:
        """Spool the complete lines after the stored offset of the open file."""
        handle, dev, ino = current
        offset = self.offsets[path][2]
        if path not in self.heads or offset == 0:
            self.heads[path] = os.pread(handle.fileno(), 64, 0)
        reference = os.fstat(handle.fileno()).st_mtime
        read_any = False
        while not self.stop_event.is_set():
            self.spool.wait_for_room(self.stop_event)
            handle.seek(offset)
            block = handle.read(1 << 20)
            cut = block.rfind(b"\n")
            consumed = cut + 1
            if cut < 0 and block and not self.follow and len(block) < (1 << 20):
                # The last line of a file read once may lack its newline.
                block, cut, consumed = block + b"\n", len(block), len(block)
            if cut < 0:
                if len(block) < (1 << 20):
                    break  # nothing, or a partial last line: wait for the rest
                end = self._line_end(handle, path, offset, offset + len(block))  # one enormous line
                if end is None:
                    break  # following the file: the line's end has not been written yet
                self.spool.count("oversize")
                offset = end
                self.spool_lines([Oversize(block[:self.max_message_bytes])], f"file:{path}", (path, dev, ino, offset),
                                 reference)
                read_any = True
                continue
            lines, oversize = [], 0
            for line in block[:cut].split(b"\n"):
                line = line.rstrip(b"\r")
                if len(line) > self.max_message_bytes:
                    oversize += 1
                    lines.append(Oversize(line[:self.max_message_bytes]))
                elif line:
                    lines.append(line)
            if oversize:
                self.spool.count("oversize", oversize)
            offset += consumed
            self.spool_lines(lines, f"file:{path}", (path, dev, ino, offset), reference)
            read_any = True
        self.offsets[path] = [dev, ino, offset]
        return read_any

    def _line_end(self, handle, path: str, start: int, position: int) -> int | None:
        """The offset after the newline that ends the line at `start`, searched from `position`;
        the file's end for a file read once; None while a followed file has not written it yet
        (the search resumes where it stopped)."""
        resume = self.scanned.get(path)
        if resume and resume[0] == start:
            position = max(position, resume[1])
        while True:
            handle.seek(position)
            block = handle.read(1 << 20)
            cut = block.find(b"\n")
            if cut >= 0:
                self.scanned.pop(path, None)
                return position + cut + 1
            position += len(block)
            if len(block) < (1 << 20):
                if not self.follow:
                    return position
                self.scanned[path] = (start, position)
                return None

    def close_files(self) -> None:
        for handle, _dev, _ino in self.handles.values():
            handle.close()
        self.handles.clear()
