"""A TCP listener that idle and slow peers cannot monopolise (shared by plain TCP and RELP).

Each connection is served by its own thread. Fairness rules, applied at accept time:

- at most `max_connections_per_peer` connections from one address (a flood from one host
  cannot take every slot);
- when all `max_connections` slots are taken, the connection idle longest is closed to make
  room, provided it has been idle at least `evict_after` seconds (counted as
  `evicted_connections`); only when every connection is busy is the newcomer refused
  (`rejected_connections`);
- once more than half the slots are taken, the idle timeout drops from `idle_timeout` to
  `pressure_idle_timeout`, so idle peers give their slots back sooner.

A TLS handshake happens in the connection's thread, bounded by `handshake_timeout`; a peer
stuck in it counts as idle and can be evicted.
"""

from __future__ import annotations

import logging
import socket
from abc import ABC, abstractmethod
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import tzinfo

from .intake import Input
from .spool import Spool

log = logging.getLogger(__name__)


@dataclass
class Limits:
    max_connections: int = 256
    max_connections_per_peer: int = 32
    idle_timeout: float = 300.0
    pressure_idle_timeout: float = 10.0
    evict_after: float = 1.0
    handshake_timeout: float = 10.0


@dataclass(eq=False)
class Connection:
    """One accepted peer; `active` is refreshed by the serving thread on every read."""

    sock: socket.socket
    peer: str
    active: float = field(default_factory=time.monotonic)
    closing: bool = False

    def touch(self) -> None:
        self.active = time.monotonic()

    def idle(self, now: float) -> float:
        return now - self.active


class ConnectionServer(Input, ABC):
    """Accepts connections and runs `serve(conn, stream)` for each in its own thread.

    Subclasses implement `serve`; it reads from `stream` (the socket, or its TLS wrapper),
    calls `conn.touch()` when data arrives and returns when the peer is done or
    `should_close(conn)` says so.
    """

    kind = "tcp"

    def __init__(self, host: str, port: int, max_message_bytes: int, limits: Limits,
                 tls: ssl.SSLContext | None = None, *, spool: Spool, zone: tzinfo, stop: threading.Event):
        super().__init__(f"syslog-{self.kind}-{port}", spool, zone, stop)
        self.max_message_bytes, self.limits, self.tls = max_message_bytes, limits, tls
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # A modest receive buffer (inherited by connections) bounds what the kernel holds for
        # a peer beyond what is spooled: back-pressure starts sooner, and less is in flight.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._connections: set[Connection] = set()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ accepting
    def run(self) -> None:
        self.ready.set()
        while not self.stop_event.is_set():
            try:
                raw, address = self.sock.accept()
            except (TimeoutError, BlockingIOError):
                continue
            except OSError as exc:
                if not self.stop_event.is_set():
                    log.warning("%s: accept failed: %s", self.name, exc)
                continue
            conn = self._admit(raw, address[0])
            if conn is None:
                raw.close()
                continue
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # acknowledgements go out at once
            worker = threading.Thread(target=self._serve, args=(conn,), name=f"{self.name}-{address[1]}", daemon=True)
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()
        self.sock.close()

    def _admit(self, raw: socket.socket, peer: str) -> Connection | None:
        limits = self.limits
        with self._lock:
            if sum(1 for c in self._connections if c.peer == peer) >= limits.max_connections_per_peer:
                self.spool.count("rejected_connections")
                log.debug("%s: %s has %d connections already; refused", self.name, peer, limits.max_connections_per_peer)
                return None
            if len(self._connections) >= limits.max_connections:
                now = time.monotonic()
                idlest = max((c for c in self._connections if not c.closing), key=lambda c: c.idle(now), default=None)
                if idlest is None or idlest.idle(now) < limits.evict_after:
                    self.spool.count("rejected_connections")
                    return None
                self._evict(idlest)
            conn = Connection(raw, peer)
            self._connections.add(conn)
            return conn

    def _evict(self, conn: Connection) -> None:
        conn.closing = True
        self._connections.discard(conn)
        self.spool.count("evicted_connections")
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)  # its thread sees the end of the stream and exits
        except OSError:
            pass

    # ------------------------------------------------------------------ serving
    def idle_limit(self) -> float:
        """The idle timeout now: shorter once more than half the slots are taken."""
        with self._lock:
            busy = len(self._connections)
        limits = self.limits
        if busy * 2 > limits.max_connections:
            return min(limits.idle_timeout, limits.pressure_idle_timeout)
        return limits.idle_timeout

    def should_close(self, conn: Connection) -> bool:
        return conn.closing or conn.idle(time.monotonic()) > self.idle_limit()

    def _serve(self, conn: Connection) -> None:
        stream = conn.sock
        try:
            if self.tls is not None:
                conn.sock.settimeout(self.limits.handshake_timeout)
                stream = self.tls.wrap_socket(conn.sock, server_side=True)
                conn.touch()
            stream.settimeout(0.5)
            self.serve(conn, stream)
        except (OSError, ssl.SSLError) as exc:
            if not conn.closing:
                self.spool.count("connection_errors")
            log.debug("%s: %s: %s", self.name, conn.peer, exc)
        finally:
            with self._lock:
                self._connections.discard(conn)
            try:
                stream.close()
            except OSError:
                pass

    @abstractmethod
    def serve(self, conn: Connection, stream: socket.socket) -> None:
        """Serve one connection until the peer is done or `should_close(conn)`."""

    def join(self, timeout: float | None = None) -> None:
        """Wait for the acceptor and for every connection to drain (after `stop`)."""
        super().join(timeout)
        for worker in list(self._workers):
            worker.join(timeout)

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._connections)
