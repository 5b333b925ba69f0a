"""RELP end to end with a real rsyslog (`omrelp`) and kill -9 of the siem-gad receiver (issue 17).

rsyslog runs in the foreground with a private config (see bench/relp_harness.py), reads a file
of numbered lines with `imfile` and forwards them over RELP; the receiver is a separate process
killed with SIGKILL mid-stream. Every line must arrive exactly once.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from relp_harness import (Receiver, Rsyslog, free_port, rsyslog_available, sequence_numbers, spooled_count,
                          spooled_lines, wait_until, write_lines)
from siem_gad.syslog.intake import Oversize
from siem_gad.syslog.relp import RelpError, RelpParser, Session, response

MISSING = rsyslog_available()
needs_rsyslog = pytest.mark.skipif(MISSING is not None and os.environ.get("CI") != "true",
                                   reason=MISSING or "")


def _assert_exactly_once(state: Path, total: int) -> None:
    seqs = sequence_numbers(spooled_lines(state))
    counts = Counter(seqs)
    missing = sorted(set(range(total)) - set(counts))
    twice = sorted(n for n, c in counts.items() if c > 1)
    assert not missing and not twice, f"{len(missing)} lost (first {missing[:5]}), {len(twice)} twice ({twice[:5]})"
    assert len(seqs) == total


@needs_rsyslog
def test_relp_loses_and_duplicates_nothing_over_three_kill_9_restarts(tmp_path: Path):
    total = 100_000
    source = tmp_path / "in.log"
    source.touch()
    port = free_port()
    receiver = Receiver(tmp_path / "state", port).start()
    rsyslog = Rsyslog(tmp_path / "rsyslog", source, port).start()
    try:
        write_lines(source, 0, total)
        for cut in (25_000, 50_000, 75_000):
            assert wait_until(lambda: spooled_count(tmp_path / "state") >= cut, 120), f"stalled before {cut}"
            receiver.kill()
            time.sleep(1.5)  # rsyslog notices, suspends the action and keeps retrying
            receiver = Receiver(tmp_path / "state", port).start()
        assert wait_until(lambda: spooled_count(tmp_path / "state") >= total, 180), "the stream did not finish"
        time.sleep(2)  # a retransmission still under way would show up as a duplicate now
        _assert_exactly_once(tmp_path / "state", total)
    finally:
        rsyslog.stop()
        receiver.stop()


@needs_rsyslog
def test_kill_9_while_back_pressure_holds_the_spool_full_loses_nothing(tmp_path: Path):
    """Defect 17.6: over plain TCP, kill -9 while the spool was full lost 14,986 of 20,000 lines
    the sender had handed over. Over RELP nothing is acknowledged before it is spooled."""
    total = 20_000
    source = tmp_path / "in.log"
    source.touch()
    port = free_port()
    receiver = Receiver(tmp_path / "state", port, max_spool_lines=1000).start()
    rsyslog = Rsyslog(tmp_path / "rsyslog", source, port).start()
    try:
        write_lines(source, 0, total)
        assert wait_until(lambda: spooled_count(tmp_path / "state") >= 1000, 60)
        time.sleep(2)  # the spool is full: the receiver reads and acknowledges nothing more
        assert spooled_count(tmp_path / "state") < total
        receiver.kill()
        receiver = Receiver(tmp_path / "state", port, max_spool_lines=1_000_000).start()
        assert wait_until(lambda: spooled_count(tmp_path / "state") >= total, 120), "the stream did not finish"
        time.sleep(2)
        _assert_exactly_once(tmp_path / "state", total)
    finally:
        rsyslog.stop()
        receiver.stop()


# ---------------------------------------------------------------------------- the protocol alone
class _Spool:
    def __init__(self):
        self.counts: Counter = Counter()
        self.committed: list[bytes] = []
        self.digests: set[bytes] = set()

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def recent_digests(self, origin: str) -> set[bytes]:
        return set(self.digests)


class _Server:
    max_message_bytes = 1024

    def __init__(self, spool: _Spool):
        self.spool = spool

    def spool_lines(self, lines, origin, digests=None):
        self.spool.committed.extend(lines)
        self.spool.digests.update(digests or [])


OFFER = b"relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog"
OPEN = b"1 open %d %s\n" % (len(OFFER), OFFER)


def test_relp_session_answers_after_commit_and_drops_retransmitted_frames():
    spool = _Spool()
    parser, session = RelpParser(1024), Session(_Server(spool), "relp:127.0.0.1")
    replies, closed = session.handle(parser.feed(OPEN + b"2 syslog 5 <13>a\n3 syslog 5 <13>b\n"))
    assert replies.startswith(b"1 rsp ") and b"commands=syslog" in replies
    assert replies.endswith(response(2) + response(3)) and not closed
    assert spool.committed == [b"<13>a", b"<13>b"]
    # a new session retransmits what was not answered, then goes on
    session = Session(_Server(spool), "relp:127.0.0.1")
    replies, _ = session.handle(parser.feed(OPEN + b"2 syslog 5 <13>b\n3 syslog 5 <13>c\n4 close 0\n"))
    assert spool.committed == [b"<13>a", b"<13>b", b"<13>c"] and spool.counts["duplicates"] == 1
    assert replies.endswith(response(2) + response(3) + b"4 rsp 0\n")
    assert session.handle([])[1] is False


def test_relp_parser_reads_split_frames_keeps_the_head_of_oversize_ones_and_refuses_garbage():
    parser = RelpParser(16)
    big = b"x" * 10_000
    stream = b"7 syslog 9 <13>hello\n" + b"8 syslog %d " % len(big) + big + b"\n9 syslog 3 <1>\n"
    frames = []
    for at in range(0, len(stream), 7):  # any split of the byte stream
        frames += parser.feed(stream[at:at + 7])
    # the oversize frame is read past, not held: its first 16 bytes come out to be quarantined
    assert frames == [(7, "syslog", b"<13>hello"), (8, "syslog", b"x" * 16), (9, "syslog", b"<1>")]
    assert [isinstance(data, Oversize) for _, _, data in frames] == [False, True, False]
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"1 syslog 5 <13>abcdef\n", b"x" * 100):
        with pytest.raises(RelpError):
            RelpParser(1024).feed(garbage)
    with pytest.raises(RelpError):
        Session(_Server(_Spool()), "relp:x").handle([(1, "syslog", b"<13>a")])  # before open


def test_relp_over_tls_acknowledges_each_message_once_spooled(tmp_path: Path):
    """RELP with a configured certificate (the same listener code as TCP's TLS)."""
    import socket
    import ssl
    import subprocess

    from siem_gad.sources.syslog import SyslogSource
    from siem_gad.state import StateStore

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    src = SyslogSource(relp={"port": 0, "tls": {"cert_file": str(cert), "key_file": str(key)}}).bind(
        "relp", StateStore(tmp_path / "state"))
    src.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        with socket.create_connection(("127.0.0.1", src.ports()["relp"])) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            messages = [b"<38>1 2026-01-05T00:00:0%dZ h sshd 1 - - Accepted password for bob from 10.0.0.%d" % (n, n)
                        for n in range(3)]
            tls.sendall(OPEN + b"".join(b"%d syslog %d %s\n" % (n + 2, len(m), m) for n, m in enumerate(messages)))
            replies = b""
            while replies.count(b" rsp ") < 4:
                replies += tls.recv(4096)
            assert all(response(n + 2) in replies for n in range(3))
            # every acknowledged message is already committed
            assert [line.line for line in src.spool.lines(0, 2e9, src.spool.max_id())] == messages
            tls.sendall(b"5 close 0\n")
            assert tls.recv(4096).startswith(b"5 rsp 0\n")
    finally:
        src.close()
