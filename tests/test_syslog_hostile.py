"""Syslog listeners against hostile and broken senders (issue 17, defects 4, 5 and 9).

Attackers connect from other loopback addresses (127.0.0.2 ...), real senders from 127.0.0.1:
Linux routes the whole 127.0.0.0/8 range to the loopback interface.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from conftest import wait_for
from siem_gad.sources.syslog import SyslogSource
from siem_gad.state import StateStore

GOOD = b"<38>Nov 23 06:00:0%d h sshd[1]: Failed password for root from 10.9.9.9 port 22 ssh2 n=%d"


def source(tmp_path: Path, **params) -> SyslogSource:
    src = SyslogSource(**params).bind("syslog", StateStore(tmp_path / "state"))
    src.start()
    return src


def connect_from(address: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def real_senders(port: int, count: int, keep: list | None = None) -> int:
    """Connect `count` times from 127.0.0.1, send one line each; return how many were served.
    With `keep`, the connections stay open (each newcomer then needs a slot of its own)."""
    served = 0
    for n in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            conn.sendall(GOOD % (n % 10, n) + b"\n")
            conn.settimeout(0.2)
            try:
                conn.recv(1)  # a refused connection is closed by the server at once: b""
            except TimeoutError:
                served += 1  # still open: the listener is serving it
        except OSError:
            pass
        finally:
            keep.append(conn) if keep is not None else conn.close()
    return served


def test_idle_connections_from_one_address_cannot_lock_out_real_senders(tmp_path: Path):
    """Defect 17.4: 256 idle connections locked out every real sender for the idle timeout."""
    src = source(tmp_path, tcp={"port": 0})
    port = src.ports()["tcp"]
    idle = []
    try:
        for _ in range(256):
            try:
                idle.append(connect_from("127.0.0.2", port))
            except OSError:
                break
        wait_for(lambda: src.counters().get("rejected_connections", 0) >= 256 - 32, "the per-address limit")
        assert real_senders(port, 20) == 20
        wait_for(lambda: src.counters().get("received", 0) == 20, "every real sender's line")
    finally:
        for sock in idle:
            sock.close()
        src.close()


def test_idle_connections_from_many_addresses_are_evicted_for_real_senders(tmp_path: Path):
    """Defect 17.4 from many addresses: the oldest idle connection makes room for a newcomer."""
    src = source(tmp_path, tcp={"port": 0, "max_connections": 64, "evict_after": "1s"})
    port = src.ports()["tcp"]
    idle = []
    try:
        for host in range(2, 66):  # 64 addresses, one idle connection each: every slot taken
            idle.append(connect_from(f"127.0.0.{host}", port))
        tcp = src.inputs[0]
        wait_for(lambda: tcp.active_connections == 64, "every slot to be taken")
        time.sleep(1.1)
        assert real_senders(port, 20, keep=idle) == 20
        wait_for(lambda: src.counters().get("received", 0) == 20, "every real sender's line")
        assert src.counters()["evicted_connections"] == 20 and tcp.active_connections == 64
        # Under pressure (more than half the slots taken) idle peers time out sooner.
        assert tcp.idle_limit() == 10.0
    finally:
        for sock in idle:
            sock.close()
        src.close()


def test_an_octet_count_that_does_not_match_its_frame_swallows_no_good_line(tmp_path: Path):
    """Defect 17.5: `500 short frame` then 5 good lines swallowed 4 good lines and left a fragment."""
    src = source(tmp_path, tcp={"port": 0})
    port = src.ports()["tcp"]
    good = b"".join(GOOD % (n, n) + b"\n" for n in range(5))
    try:
        for lie in (b"500 short frame\n", b"500 <38>Nov 23 06:00:00 h sshd[1]: short frame\n"):
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(lie + good)
                time.sleep(3)  # the connection stays open: the lines must not wait for it to close
                delivered = src.spool.counters().get("received", 0)
                conn.close()
            assert delivered in (6, 12), f"{delivered} lines spooled while the connection was open"
        wait_for(lambda: src.counters().get("received", 0) == 12, "every line of both streams")
        counters = src.counters()
        assert counters.get("frame_mismatch", 0) == 1  # the second stream's count lied
        lines = [line.line for line in src.spool.lines(0, 2e9, src.spool.max_id())]
        assert sum(line.startswith(b"<38>Nov 23") and b"n=" in line for line in lines) == 10
        assert b"<38>Nov 23 06:00:00 h sshd[1]: short frame" in lines and b"500 short frame" in lines
    finally:
        src.close()


def test_drops_while_the_spool_is_full_reach_status_without_another_append(tmp_path: Path):
    """Defect 17.9: spool-full drops stayed invisible to `status` while the spool was full."""
    src = source(tmp_path, udp={"port": 0}, max_spool_lines=1000)
    port = src.ports()["udp"]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for n in range(1000):
                sock.sendto(GOOD % (n % 10, n), ("127.0.0.1", port))
            wait_for(lambda: len(src.spool) >= 1000, "the spool to fill")
            time.sleep(1.1)
            for n in range(50):
                sock.sendto(GOOD % (n % 10, n), ("127.0.0.1", port))
        # A second process, as `siem-gad status` is, reads the counters from the spool file.
        reader = SyslogSource(udp={"port": 0}).bind("syslog", StateStore(tmp_path / "state"))
        wait_for(lambda: reader.counters().get("dropped_spool_full", 0) + reader.counters().get("dropped_kernel", 0) >= 50,
                 "the drops to be visible", timeout=5)
    finally:
        src.close()


def test_udp_kernel_drops_at_the_end_of_a_burst_are_counted(tmp_path: Path):
    """Issue 19.4: the ancillary drop count travels with the next queued datagram, so drops
    after the last one of a burst were never counted (146,182 lost, 136,703 counted). Here a
    burst overflows the receive buffer before the input reads anything: every datagram the
    buffer held was queued before the first drop, so only /proc/net/udp tells the loss."""
    import threading
    from datetime import timezone

    from siem_gad.syslog.inputs import UdpInput
    from siem_gad.syslog.spool import Spool

    spool = Spool(tmp_path / "spool.db")
    stop = threading.Event()
    udp = UdpInput("127.0.0.1", 0, 2048, spool=spool, zone=timezone.utc, stop=stop)
    sent = 20_000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(sent):
            sock.sendto(GOOD % (n % 10, n), ("127.0.0.1", udp.port))
    udp.start()
    try:
        wait_for(lambda: spool.counters().get("received", 0) + spool.counters().get("dropped_kernel", 0) >= sent,
                 "every datagram to be received or counted as dropped", timeout=10)
        counters = spool.counters()
        assert counters["dropped_kernel"] > 0  # the burst did overflow the buffer
        assert counters["received"] + counters["dropped_kernel"] == sent
    finally:
        stop.set()
        udp.join(5)
        spool.close()
