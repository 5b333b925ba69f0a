"""Benchmark: syslog lines/s over TCP and UDP on loopback, and the UDP loss at that rate.

Real lines (loghub OpenSSH_2k, cycled, with a `<38>` priority) are sent by a separate sender
process to the `syslog` source's listeners, which spool every line (SQLite) before anything
else. Measured in the same run:

- TCP: time until every line is spooled (zero loss is checked), as lines/s; next to a
  baseline receiver that only frames the lines and counts them (no spool), same sender.
- parse: reading the spooled lines back as ECS events (header + message parsers), lines/s.
- UDP: the sender paces datagrams at half the TCP rate measured above, at that rate, and at 2x; lines spooled
  vs sent gives the loss rate (with the kernel's own drop counter).

Usage: python bench/syslog_throughput.py [--lines 200000]
"""

from __future__ import annotations

import argparse
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPENSSH = ROOT.parent / "shared" / "data" / "loghub" / "OpenSSH" / "OpenSSH_2k.log"

SENDER = r"""
import socket, sys, time
kind, port, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
lines = [b"<38>" + l for l in open(sys.argv[5], "rb").read().splitlines()]
if kind == "tcp":
    sock = socket.create_connection(("127.0.0.1", port))
    chunk = []
    for i in range(count):
        chunk.append(lines[i % len(lines)])
        if len(chunk) == 500:
            sock.sendall(b"\n".join(chunk) + b"\n"); chunk = []
    if chunk:
        sock.sendall(b"\n".join(chunk) + b"\n")
    sock.close()
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    began = time.perf_counter()
    for i in range(count):
        sock.sendto(lines[i % len(lines)], ("127.0.0.1", port))
        if i % 100 == 99:
            ahead = (i + 1) / rate - (time.perf_counter() - began)
            if ahead > 0:
                time.sleep(ahead)
print(time.perf_counter())
"""


def send(kind: str, port: int, count: int, rate: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SENDER, kind, str(port), str(count), str(rate), str(OPENSSH)],
                            stdout=subprocess.PIPE, text=True)


def wait_received(source, target: int, idle: float = 2.0) -> int:
    last, last_change = -1, time.monotonic()
    while True:
        received = source.spool.counters().get("received", 0)
        if received >= target:
            return received
        if received != last:
            last, last_change = received, time.monotonic()
        elif time.monotonic() - last_change > idle:
            return received
        time.sleep(0.01)


def baseline_tcp(count: int) -> float:
    """Frame and count lines from one TCP connection, nothing else; return lines/s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    sender = send("tcp", port, count)
    conn, _ = server.accept()
    began, seen, rest = time.perf_counter(), 0, b""
    while True:
        data = conn.recv(65536)
        if not data:
            break
        rest += data
        cut = rest.rfind(b"\n")
        if cut >= 0:
            seen += rest[:cut].count(b"\n") + 1
            rest = rest[cut + 1:]
    seconds = time.perf_counter() - began
    sender.wait()
    server.close()
    assert seen == count, (seen, count)
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()

    from siem_gad.sources.syslog import SyslogSource
    from siem_gad.state import StateStore

    with tempfile.TemporaryDirectory() as state:
        source = SyslogSource(tcp={"port": 0}, udp={"port": 0}).bind("bench", StateStore(Path(state)))
        source.start()
        ports = source.ports()

        began = time.perf_counter()
        sender = send("tcp", ports["tcp"], args.lines)
        received = wait_received(source, args.lines)
        tcp_seconds = time.perf_counter() - began
        sender.wait()
        tcp_rate = received / tcp_seconds
        assert received == args.lines, f"TCP lost lines: {received} of {args.lines}"
        raw_rate = baseline_tcp(args.lines)

        began = time.perf_counter()
        first, _ = source.bounds(None)
        result = source.read(first - timedelta(days=1), datetime.now(timezone.utc) + timedelta(days=1), None)
        parse_seconds = time.perf_counter() - began
        parsed = len(result.events)

        udp = []
        for factor in (0.5, 1.0, 2.0):
            before = source.spool.counters()
            rate = tcp_rate * factor
            sender = send("udp", ports["udp"], args.lines, rate)
            sender.wait()
            after_received = wait_received(source, before.get("received", 0) + args.lines) - before.get("received", 0)
            drops = source.spool.counters().get("dropped_kernel", 0) - before.get("dropped_kernel", 0)
            udp.append((rate, after_received, drops))
        source.close()

    print(f"machine: {platform.machine()}, Python {platform.python_version()}; {args.lines:,} real OpenSSH lines per run")
    print("\n| path | lines/s | notes |\n|---|---|---|")
    print(f"| TCP -> spool (`syslog` source) | {tcp_rate:,.0f} | {received:,} of {args.lines:,} spooled: zero loss |")
    print(f"| TCP, frame and count only (baseline) | {raw_rate:,.0f} | the source takes {raw_rate / tcp_rate:.1f}x the baseline's time |")
    print(f"| spool -> ECS events (header + message parsers) | {parsed / parse_seconds:,.0f} | {parsed:,} events |")
    for rate, got, drops in udp:
        loss = 1 - got / args.lines
        print(f"| UDP sent at {rate:,.0f}/s -> spool | {got / (args.lines / rate):,.0f} | loss {loss:.2%} "
              f"({args.lines - got:,} lines; kernel counted {drops:,} drops) |")


if __name__ == "__main__":
    main()
