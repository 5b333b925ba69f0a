"""The syslog source: headers, message parsers, listeners, file tails, spool, on real logs.

Real clients and real logs: util-linux `logger` sends over UDP and TCP; the loghub OpenSSH and
Linux samples and the Ubuntu EC2 auth.log (../shared/data) are replayed through file tails and
through the listeners, and their parsed counts are compared with direct counts of the lines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from conftest import SHARED_DATA, read_alerts, siem_gad, wait_for
from siem_gad.sources.syslog import SyslogSource
from siem_gad.state import StateStore
from siem_gad.syslog.headers import HeaderError, parse_line
from siem_gad.syslog.framing import Framer
from siem_gad.syslog.intake import Oversize
from siem_gad.syslog.inputs import TcpInput

OPENSSH = SHARED_DATA / "loghub" / "OpenSSH" / "OpenSSH_2k.log"
LINUX = SHARED_DATA / "loghub" / "Linux" / "Linux_2k.log"
EC2 = SHARED_DATA / "authlog-ec2" / "auth.log"
UTC = timezone.utc


def count_lines(path: Path, pattern: str) -> int:
    regex = re.compile(pattern)
    return sum(1 for line in path.read_text(errors="replace").splitlines() if regex.search(line))


# ---------------------------------------------------------------------------- headers
def test_rfc5424_header_with_structured_data_and_bom():
    record = parse_line('<38>1 2026-11-23T06:10:00.123456+01:00 web1 sshd 4242 ID47 [exampleSDID@32473 iut="3" '
                        'eventSource="Ap\\]p"][x@1 a="b"] \ufeffFailed password for root from 10.0.0.1 port 22 ssh2',
                        datetime(2026, 11, 23, tzinfo=UTC), UTC)
    assert record.timestamp == datetime(2026, 11, 23, 5, 10, 0, 123456, tzinfo=UTC)
    assert (record.host, record.program, record.pid, record.facility, record.severity) == ("web1", "sshd", 4242, 4, 6)
    assert record.message == "Failed password for root from 10.0.0.1 port 22 ssh2"


def test_rfc3164_year_inference_and_zone():
    berlin = ZoneInfo("Europe/Berlin")
    # December lines read in early January belong to the year before.
    record = parse_line("<13>Dec 31 23:59:58 host cron[1]: tick", datetime(2027, 1, 1, 0, 5, tzinfo=UTC), berlin)
    assert record.timestamp == datetime(2026, 12, 31, 22, 59, 58, tzinfo=UTC)
    record = parse_line("Mar  3 04:05:06 ip-10-0-0-1 sshd(pam_unix)[77]: check pass", datetime(2026, 6, 1, tzinfo=UTC), UTC)
    assert record.timestamp.year == 2026 and record.program == "sshd(pam_unix)" and record.pid == 77
    with pytest.raises(HeaderError):
        parse_line("no header at all", datetime(2026, 6, 1, tzinfo=UTC), UTC)
    with pytest.raises(HeaderError):
        parse_line("<999>Mar  3 04:05:06 h p: x", datetime(2026, 6, 1, tzinfo=UTC), UTC)


def test_framer_handles_octet_counting_newlines_oversize_and_truncation():
    counts: dict[str, int] = {}
    framer = Framer(64, lambda name, n: counts.__setitem__(name, counts.get(name, 0) + n))
    out = framer.feed(b"11 <13>hello a\n12 <13>hel")
    out += framer.feed(b"lo bb<13>plain line\n" + b"x" * 100 + b"\n<13>after\n")
    out += framer.feed(b"999 <" + b"y" * 30)  # a count that lies: a line break and a header come first
    out += framer.feed(b"\n<13>tail without end")
    # an oversize message comes out as its first 64 bytes, marked to be quarantined, not parsed
    assert out == [b"<13>hello a", b"<13>hello bb", b"<13>plain line", b"x" * 64, b"<13>after", b"<" + b"y" * 30]
    assert [isinstance(line, Oversize) for line in out] == [False] * 3 + [True, False, False]
    assert framer.close() == [b"<13>tail without end"]  # the peer closed: its last line still counts
    # an oversize octet frame is read past to its counted end: the frames after it still come
    out = framer.feed(b"100 <" + b"z" * 99 + b"11 <13>hello c")
    assert out == [b"<" + b"z" * 63, b"<13>hello c"] and isinstance(out[0], Oversize)
    out = framer.feed(b"20 <13>cut short")
    assert framer.close() == [b"20 <13>cut short"]  # the rest of the frame never came: kept as a line
    assert counts == {"oversize": 2, "truncated": 1, "frame_mismatch": 1}


# ---------------------------------------------------------------------------- real logs, files
def source(tmp_path: Path, **params) -> SyslogSource:
    return SyslogSource(**params).bind("syslog", StateStore(tmp_path / "state"))


def read_files_once(src: SyslogSource):
    """Start a `follow: false` source (reads its files), read every event; return (events, counters)."""
    src.start()
    try:
        return read_all(src), src.counters()
    finally:
        src.close()


def read_all(src: SyslogSource, live: bool = False):
    """Every event in the spool; `live`: including those newer than the source's horizon."""
    from datetime import timedelta

    first, horizon = src.bounds(None)
    end = datetime.now(UTC) + timedelta(minutes=1) if live else horizon
    return src.read(first.replace(minute=0, second=0, microsecond=0), end, None).events


def actions(events, action: str, outcome: str | None = None, method: str | None = None) -> int:
    mask = events["event.action"] == action
    if outcome:
        mask &= events["event.outcome"] == outcome
    if method:
        mask &= events["sshd.method"] == method
    return int(mask.sum())


@pytest.mark.needs_data("loghub", "authlog-ec2")
def test_real_auth_logs_through_file_tailing_match_direct_counts(tmp_path: Path):
    events, counters = read_files_once(source(tmp_path, files=[str(OPENSSH), str(EC2), str(LINUX)], follow=False))
    lines = sum(len(p.read_bytes().splitlines()) for p in (OPENSSH, EC2, LINUX))
    assert len(events) == lines == counters["received"]
    assert counters.get("quarantined", 0) == 0
    ssh, ec2, linux = (events[events["log.source"] == f"file:{p}"] for p in (OPENSSH, EC2, LINUX))
    assert actions(ssh, "ssh_login", "failure", "password") == count_lines(OPENSSH, "Failed password") == 520
    assert set(ssh.loc[ssh["event.action"] == "ssh_login", "source.ip"].dropna()) >= {
        "183.62.140.253", "187.141.143.180", "103.99.0.122"}
    assert actions(ec2, "ssh_login", "failure", "password") == count_lines(EC2, "Failed password")
    assert actions(ec2, "ssh_login", "success") == count_lines(EC2, "Accepted (password|publickey)")
    assert actions(ec2, "invalid_user") == count_lines(EC2, r"sshd\[\d+\]: Invalid user")
    assert actions(ec2, "sudo") == count_lines(EC2, "COMMAND=")
    assert actions(ec2, "user_created") == count_lines(EC2, "useradd.*new user:")
    assert actions(ec2, "session_opened") == count_lines(EC2, "session opened for user|New session")
    assert actions(ec2, "su", "success") == count_lines(EC2, "Successful su for")
    assert actions(linux, "pam_authentication_failure") == count_lines(LINUX, "authentication failure") == 490
    brute = ec2[(ec2["source.ip"] == "24.151.103.17") & (ec2["event.action"] == "ssh_login")]
    assert (brute["event.outcome"] == "failure").sum() >= 147 and (brute["event.outcome"] == "success").sum() >= 47
    assert {"authentication", "network", "iam", "process", "session"} <= set(events["event.category"].dropna())
    assert (ec2["@timestamp"].dt.month.isin([3, 4])).all() and (ssh["@timestamp"].dt.month == 12).all()


def test_firewall_and_account_parsers(tmp_path: Path):
    log = tmp_path / "kern.log"
    log.write_text(
        "Nov 23 06:00:01 gw kernel: [12345.678] [UFW BLOCK] IN=eth0 OUT= MAC=00:11 SRC=203.0.113.9 DST=10.0.0.5 LEN=60 "
        "TOS=0x00 PREC=0x00 TTL=49 ID=1 DF PROTO=TCP SPT=51515 DPT=22 WINDOW=29200 RES=0x00 SYN URGP=0\n"
        "Nov 23 06:00:02 gw kernel: IPTABLES-ACCEPT IN=eth0 OUT= SRC=10.0.0.7 DST=10.0.0.5 LEN=52 PROTO=UDP SPT=5353 DPT=53\n"
        "Nov 23 06:00:03 gw usermod[9]: add 'mallory' to group 'sudo'\n"
        "Nov 23 06:00:04 gw passwd[10]: pam_unix(passwd:chauthtok): password changed for mallory\n"
        "Nov 23 06:00:05 gw CRON[11]: (root) CMD (run-parts /etc/cron.hourly)\n"
        "Nov 23 06:00:06 gw su[12]: FAILED su for root by mallory\n"
        "Nov 23 06:00:07 gw systemd-logind[13]: New session 42 of user mallory.\n")
    events = read_files_once(source(tmp_path, files=[str(log)], follow=False))[0].set_index("event.action")
    block = events.loc["firewall_block"]
    assert (block["source.ip"], block["destination.ip"], block["destination.port"], block["network.transport"],
            block["event.outcome"]) == ("203.0.113.9", "10.0.0.5", 22, "tcp", "failure")
    assert events.loc["firewall_log", "destination.port"] == 53
    assert events.loc["user_added_to_group", "group.name"] == "sudo"
    assert events.loc["password_changed", "user.name"] == "mallory"
    assert events.loc["cron_command", "process.command_line"] == "run-parts /etc/cron.hourly"
    assert (events.loc["su", "event.outcome"], events.loc["su", "user.target.name"]) == ("failure", "root")
    assert events.loc["session_opened", "user.name"] == "mallory"


def test_file_rotation_by_rename_and_copytruncate(tmp_path: Path):
    log = tmp_path / "auth.log"
    line = "Nov 23 06:00:{:02d} h sshd[1]: Failed password for root from 10.0.0.{} port 22 ssh2\n"
    log.write_text("".join(line.format(i, i) for i in range(3)))
    src = source(tmp_path, files=[str(tmp_path / "*.log")], poll_interval="1s")
    src.start()
    try:
        wait_for(lambda: src.counters().get("received", 0) == 3, "first lines")
        with log.open("a") as handle:  # written just before rotation: must not be lost
            handle.write(line.format(3, 3))
        log.rename(tmp_path / "auth.log.1")
        log.write_text(line.format(4, 4))
        wait_for(lambda: src.counters().get("received", 0) == 5, "rename rotation")
        with log.open("r+") as handle:  # copytruncate
            handle.truncate(0)
        log.write_text(line.format(5, 5) + line.format(6, 6))
        wait_for(lambda: src.counters().get("received", 0) == 7, "copytruncate")
    finally:
        src.close()


# ---------------------------------------------------------------------------- listeners
def listening_source(tmp_path: Path, **params) -> SyslogSource:
    src = source(tmp_path, udp={"port": 0}, tcp={"port": 0}, **params)
    src.start()
    return src


def logger(port: int, transport: str, message: str, *args: str) -> None:
    subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(port), transport, "-t", "sshd", "--id=4242", *args, message],
                   check=True)


def test_logger_messages_over_udp_and_tcp_arrive_parsed_in_order(tmp_path: Path):
    src = listening_source(tmp_path, query_delay="1s")
    ports = src.ports()
    sent = []
    try:
        for i in range(20):
            transport, fmt = [("-d", "--rfc3164"), ("-T", "--rfc5424"), ("-T", "--rfc3164"), ("-d", "--rfc5424")][i % 4]
            port = ports["udp"] if transport == "-d" else ports["tcp"]
            extra = ["--octet-count"] if i % 8 == 2 else []
            message = f"Failed password for user{i} from 10.1.0.{i} port {4000 + i} ssh2"
            logger(port, transport, message, fmt, *extra)
            sent.append(message)
            time.sleep(0.002)
        wait_for(lambda: src.counters().get("received", 0) == len(sent), "every message")
        events = read_all(src, live=True)
    finally:
        src.close()
    assert sorted(events["message"]) == sorted(sent), "every message arrived once"
    # Events are ordered by time; RFC 3164 stamps have whole seconds, RFC 5424 microseconds,
    # so the order is checked per format.
    for fmt in range(4):
        numbers = [int(u[4:]) for u in events["user.name"] if int(u[4:]) % 4 == fmt]
        assert numbers == sorted(numbers) and len(numbers) == 5
    assert (events["event.action"] == "ssh_login").all() and (events["event.outcome"] == "failure").all()
    by_user = events.set_index("user.name")
    assert all(by_user.loc[f"user{i}", "source.ip"] == f"10.1.0.{i}" for i in range(20))
    assert all(by_user.loc[f"user{i}", "source.port"] == 4000 + i for i in range(20))
    assert set(events["process.pid"]) == {4242} and set(events["process.name"]) == {"sshd"}


def test_an_oversize_octet_counted_message_keeps_the_messages_after_it_on_the_connection(tmp_path: Path):
    """util-linux `logger --octet-count` sends stdin's lines as octet-counted frames on one TCP
    connection, without line breaks. A frame over `max_message_bytes` used to be skipped to the
    next line break, which never came: every later message of the connection was lost."""
    src = listening_source(tmp_path, query_delay="1s", max_message_bytes=1024)
    lines = [f"Failed password for user{i} from 10.1.0.{i} port 4000 ssh2" for i in range(4)]
    lines.insert(1, "Failed password for " + "x" * 3000)
    try:
        subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(src.ports()["tcp"]), "-T", "--octet-count",
                        "--rfc5424", "--size", "8192", "-t", "sshd"], input="\n".join(lines) + "\n", text=True,
                       check=True)
        wait_for(lambda: src.counters().get("received", 0) == 5, "every message, the oversize one's head too")
        events = read_all(src, live=True)
        counters = src.counters()
    finally:
        src.close()
    assert sorted(events["user.name"].dropna()) == ["user0", "user1", "user2", "user3"]
    assert counters["oversize"] == 1 and counters["quarantined"] == 1 and "frame_mismatch" not in counters
    quarantined = [json.loads(x) for x in (tmp_path / "state" / "quarantine" / "syslog.jsonl").read_text().splitlines()]
    assert len(quarantined) == 1 and len(quarantined[0]["line"]) == 1024 and quarantined[0]["line"].startswith("<13>1 ")


def _send_tcp(port: int, payload: bytes, close_early: bool = False) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(payload)
        if close_early:
            conn.shutdown(socket.SHUT_RDWR)


def _send_udp(port: int, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, ("127.0.0.1", port))


def test_garbage_is_counted_and_quarantined_and_the_listener_stays_up(tmp_path: Path):
    src = listening_source(tmp_path, max_message_bytes=1024, query_delay="1s")
    ports = src.ports()
    good = b"<38>Nov 23 06:00:00 h sshd[1]: Failed password for root from 10.9.9.9 port 22 ssh2"
    try:
        _send_udp(ports["udp"], b"\x00\x01\x02\xff\xfe binary \x00 junk")
        _send_udp(ports["udp"], b"<38>" + b"A" * 5000)  # oversize datagram
        _send_udp(ports["udp"], b"no header here")
        _send_tcp(ports["tcp"], b"<38>Nov 23 06:00:00 h sshd[1]: caf\xc3\xa9 \xff\xfe invalid utf-8\n")
        _send_tcp(ports["tcp"], b"<38>" + b"B" * 4000 + b"\n")  # oversize line
        _send_tcp(ports["tcp"], b"120 <38>Nov 23 06:00:00 h sshd[1]: cut short", close_early=True)  # truncated frame
        for _ in range(20):  # clients that connect and vanish
            socket.create_connection(("127.0.0.1", ports["tcp"])).close()
        _send_tcp(ports["tcp"], good + b"\n")
        _send_udp(ports["udp"], good)
        message = good.decode().split(": ", 1)[1]
        # UDP and TCP are separate threads: wait for both good lines, not for a count of lines
        def good_lines() -> int:  # before the first good line arrives, the spool holds no `message` column
            if src.bounds(None)[0] is None:
                return 0  # nothing spooled yet: the garbage before them is all quarantined
            events = read_all(src, live=True)
            return int((events["message"] == message).sum()) if "message" in events.columns else 0

        wait_for(lambda: good_lines() == 2, "the good lines after the garbage")
        wait_for(lambda: src.counters().get("truncated", 0) == 1, "the truncated frame to be counted")
        events = read_all(src, live=True)
        counters = src.counters()
    finally:
        src.close()
    assert (events["message"] == good.decode().split(": ", 1)[1]).sum() == 2, "still listening after the garbage"
    assert counters["oversize"] == 2 and counters["truncated"] == 1 and counters["invalid_utf8"] == 1
    # the binary datagram, the line without a header, the truncated frame's bytes, and the first
    # 1024 bytes of each oversize message (kept, not lost)
    assert counters["quarantined"] == 5
    quarantine = [json.loads(x) for x in (tmp_path / "state" / "quarantine" / "syslog.jsonl").read_text().splitlines()]
    oversize = "longer than max_message_bytes (1024): its first 1024 bytes kept"
    assert sorted((q["reason"], q["origin"][:4]) for q in quarantine) == [
        ("binary content (NUL bytes)", "udp:"), (oversize, "tcp:"), (oversize, "udp:"),
        ("no RFC 5424 or RFC 3164 header", "tcp:"), ("no RFC 5424 or RFC 3164 header", "udp:")]
    assert any(q["line"].startswith("120 <38>") for q in quarantine)
    assert sorted(q["line"] for q in quarantine if q["reason"] == oversize) == ["<38>" + "A" * 1020, "<38>" + "B" * 1020]


def test_an_oversize_line_in_a_followed_file_is_quarantined_once_by_its_head_and_the_next_line_is_read(
        tmp_path: Path):
    """An over-long file line used to be counted and dropped, and the part of a line over 1 MiB
    after its first MiB was read as a line of its own; now its first `max_message_bytes` are
    quarantined once, also when its end is written while the file is followed."""
    good = "Nov 23 06:00:0{} h sshd[1]: Failed password for root from 10.9.9.{} port 22 ssh2\n"
    log = tmp_path / "a.log"
    log.write_text(good.format(0, 1) + "Nov 23 06:00:01 h sshd[1]: " + "L" * 2000 + "\n"
                   + "Nov 23 06:00:02 h sshd[1]: " + "E" * (3 << 19))  # an enormous line, its end not written yet
    src = source(tmp_path, files=[str(log)], follow=True, poll_interval=timedelta(milliseconds=50),
                 max_message_bytes=1024)
    src.start()
    try:
        wait_for(lambda: src.counters().get("received", 0) == 2, "the first two lines")
        time.sleep(0.3)  # several polls over the unfinished enormous line: nothing of it is read yet
        assert src.counters().get("received", 0) == 2
        with log.open("a") as handle:
            handle.write("E" * 1000 + "\n" + good.format(3, 4))
        wait_for(lambda: src.counters().get("received", 0) == 4, "the enormous line's head and the line after it")
        time.sleep(0.3)
        events = read_all(src, live=True)
        counters = src.counters()
    finally:
        src.close()
    assert sorted(events["source.ip"]) == ["10.9.9.1", "10.9.9.4"]
    assert counters["oversize"] == 2 and counters["received"] == 4 and counters["quarantined"] == 2
    quarantine = [json.loads(x) for x in (tmp_path / "state" / "quarantine" / "syslog.jsonl").read_text().splitlines()]
    assert [q["line"][:27] + str(len(q["line"])) for q in quarantine] == [
        "Nov 23 06:00:01 h sshd[1]: 1024", "Nov 23 06:00:02 h sshd[1]: 1024"]


def test_late_lines_are_quarantined_and_processed_lines_released(tmp_path: Path):
    from datetime import timedelta

    log = tmp_path / "a.log"
    log.write_text("Nov 23 06:00:00 h sshd[1]: Connection closed by 10.0.0.1 port 1\n")
    src = source(tmp_path, files=[str(log)], retain="1s")
    src.start()
    try:
        wait_for(lambda: src.counters().get("received", 0) == 1, "the first line")
        first, _ = src.bounds(None)
        window = first.replace(minute=0, second=0)
        one = src.read(window, window + timedelta(hours=1), None)
        with log.open("a") as handle:  # a line for the window just processed
            handle.write("Nov 23 06:10:00 h sshd[1]: Connection closed by 10.0.0.2 port 1\n")
        wait_for(lambda: src.counters().get("received", 0) == 2, "the late line")
        two = src.read(window + timedelta(hours=1), window + timedelta(hours=2), one.cursor)
        assert len(one.events) == 1 and len(two.events) == 0 and two.stats["quarantined"] == 1
        assert len(src.spool) == 1, "the line of the committed first read is released (retain: 1s), the late one not yet"
        src.read(window + timedelta(hours=2), window + timedelta(hours=3), two.cursor)
        assert len(src.spool) == 0 and src.spool.max_id() == 2
    finally:
        src.close()


# ---------------------------------------------------------------------------- siem-gad run
DUMP_PLUGIN = '''
import json, os
from siem_gad import hookimpl

@hookimpl
def enrich_events(events, job):
    with open(os.environ["SIEM_GAD_EVENT_DUMP"], "a") as out:
        for row in events[["event.id", "message"]].itertuples(index=False):
            out.write(json.dumps({"id": row[0], "message": row[1]}) + "\\n")
'''


def syslog_config(directory: Path, source: dict, *, window: str = "2s", graph=("source.ip", "user.name"),
                  training: int = 2, rules: dict | None = None, dump: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if dump:
        (directory / "plugins").mkdir(exist_ok=True)
        (directory / "plugins" / "dump_events.py").write_text(DUMP_PLUGIN)
    config = {
        "state_dir": "state",
        "sources": {"syslog": {"type": "syslog", **source}},
        "sinks": {"alerts": {"type": "jsonl", "path": "state/alerts.jsonl"}},
        "jobs": {"ssh": {"source": "syslog", "window": window, "schedule": "1s", "batch_windows": 50,
                         "graph": {"type": "bipartite", "source_field": graph[0], "target_field": graph[1]},
                         "detectors": {"iforest": {"type": "iforest", "n_estimators": 100,
                                                   "training": {"windows": training}}}}},
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / "rules").mkdir(exist_ok=True)
    for rule_id, rule in (rules or {"ssh-outlier": {"name": "SSH outlier", "job": "ssh", "detector": "iforest",
                                                     "condition": {"threshold": 0}}}).items():
        (directory / "rules" / f"{rule_id}.yml").write_text(yaml.safe_dump(rule))
    return directory / "config.yaml"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dumped(path: Path) -> dict[str, str]:
    """event id -> message, across every read (a repeated read yields the same ids)."""
    seen: dict[str, str] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        item = json.loads(line)
        assert seen.setdefault(item["id"], item["message"]) == item["message"]
    return seen


def test_siem_gad_run_receives_logger_messages(tmp_path: Path):
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    config = syslog_config(tmp_path, {"udp": {"port": udp}, "tcp": {"port": tcp}, "query_delay": "1s"})
    dump = tmp_path / "events.jsonl"
    run = subprocess.Popen([sys.executable, "-m", "siem_gad", "run", "-c", str(config)], cwd=tmp_path,
                           env={**os.environ, "SIEM_GAD_EVENT_DUMP": str(dump)}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _port_open(tcp), "the listeners", 60)
        sent = []
        for i in range(12):
            message = f"Failed password for user{i % 3} from 10.2.0.{i} port {5000 + i} ssh2"
            logger(udp if i % 2 else tcp, "-d" if i % 2 else "-T", message, "--rfc5424" if i % 3 else "--rfc3164")
            sent.append(message)
            time.sleep(0.3)
        wait_for(lambda: set(sent) <= set(dumped(dump).values()), "every message processed", 60)
    finally:
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=60)[0]
    assert run.returncode == 0, output[-2000:]
    status = json.loads(siem_gad("status", "-c", str(config), "--json").stdout)[0]
    assert status["source_counters"]["received"] == 12 and status["source_counters"]["parsed"] >= 12


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.mark.needs_data("loghub", "authlog-ec2")
@pytest.mark.parametrize("log, window, attackers", [
    (OPENSSH, "15m", {"183.62.140.253", "187.141.143.180", "103.99.0.122"}),
    (EC2, "1h", {"24.151.103.17"}),
], ids=["openssh-2k", "ec2-auth-log"])
def test_known_brute_force_sources_rank_among_the_top_alerts(tmp_path: Path, log: Path, window: str, attackers: set):
    config = syslog_config(tmp_path, {"files": [str(log)], "follow": False}, window=window, training=8, dump=False,
                           rules={"ssh-outlier": {"name": "SSH source unlike the others", "job": "ssh",
                                                  "detector": "iforest", "condition": {"top_k": 3},
                                                  "threat": {"techniques": ["T1110"]}}})
    data = yaml.safe_load(config.read_text())
    data["jobs"]["ssh"]["detectors"]["iforest"]["entity_baseline"] = False
    config.write_text(yaml.safe_dump(data))
    siem_gad("run", "-c", str(config), "--once")
    alerts = read_alerts(tmp_path / "state" / "alerts.jsonl")
    ranked = []
    for alert in sorted(alerts, key=lambda a: -a["siem_gad"]["score"]):
        ip = alert.get("source", {}).get("ip")
        if ip and ip not in ranked:
            ranked.append(ip)
    assert attackers <= set(ranked[:10]), f"top sources: {ranked[:10]}"


def test_kill_while_lines_arrive_over_tcp_then_restart_processes_each_line_once(tmp_path: Path):
    tcp = free_port(socket.SOCK_STREAM)
    config = syslog_config(tmp_path, {"tcp": {"port": tcp}, "query_delay": "1s"})
    dump = tmp_path / "events.jsonl"
    env = {**os.environ, "SIEM_GAD_EVENT_DUMP": str(dump)}

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "siem_gad", "run", "-c", str(config)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _port_open(tcp), "the TCP listener", 60)
        return proc

    def send(first: int, count: int) -> int:
        """Send lines first.. over one connection until done or the server goes away; return the next number."""
        number = first
        try:
            with socket.create_connection(("127.0.0.1", tcp)) as conn:
                while number < first + count:
                    conn.sendall(b"<38>%s h sshd[1]: Failed password for root from 10.3.%d.%d port 22 ssh2 seq=%d\n"
                                 % (datetime.now(UTC).strftime("%b %d %H:%M:%S").encode(), number // 250,
                                    number % 250, number))
                    number += 1
                    time.sleep(0.004)
        except OSError:
            pass
        return number

    run = start()
    killer = threading.Timer(3.0, lambda: run.send_signal(signal.SIGKILL))
    killer.start()
    sent_before_kill = send(0, 5000)
    run.wait(30)
    run = start()
    sent_total = send(sent_before_kill, 200)
    try:
        wait_for(lambda: len(dumped(dump)) >= _received(config) and _received(config) > 0, "the backlog", 60)
        time.sleep(4)  # two more windows: everything received is processed
        wait_for(lambda: len(dumped(dump)) == _received(config), "all received lines processed", 60)
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(60)
    seen = dumped(dump)
    numbers = [int(m.rsplit("seq=", 1)[1]) for m in seen.values()]
    assert len(numbers) == len(set(numbers)), "no line processed twice (under two ids)"
    received = _received(config)
    assert len(numbers) == received, "every line the listener took in was processed"
    lost = sorted(set(range(sent_total)) - set(numbers))
    # Plain TCP syslog has no application-level acknowledgement: what sat in the kernel's
    # receive buffer when the process was killed is gone. Nothing else may be.
    assert all(sent_before_kill - 400 <= n < sent_before_kill for n in lost), lost[:20]
    assert set(range(sent_before_kill, sent_total)) <= set(numbers), "nothing lost after the restart"


def _received(config: Path) -> int:
    status = siem_gad("status", "-c", str(config), "--json", check=False)
    if status.returncode:
        return 0
    return json.loads(status.stdout)[0]["source_counters"].get("received", 0)


def test_a_parser_plugin_reads_a_device_format(tmp_path: Path):
    """A local plugin's `register_log_parsers` parser runs before the generic parsers."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "openvpn.py").write_text(
        "import re\n"
        "from siem_gad import hookimpl\n"
        "from siem_gad.syslog.parsers import LogParser\n\n"
        "class VpnParser(LogParser):\n"
        "    programs = ('openvpn',)\n"
        "    LOGIN = re.compile(r'^(?P<ip>[\\d.]+):\\d+ \\[(?P<user>[^\\]]+)\\] Peer Connection Initiated')\n\n"
        "    def parse(self, record):\n"
        "        match = self.LOGIN.match(record.message)\n"
        "        if match:\n"
        "            return {'event.category': 'authentication', 'event.action': 'vpn_login',\n"
        "                    'event.outcome': 'success', 'source.ip': match['ip'], 'user.name': match['user']}\n\n"
        "@hookimpl\n"
        "def register_log_parsers(register):\n"
        "    register('openvpn', VpnParser)\n")
    log = tmp_path / "vpn.log"
    log.write_text("Nov 23 06:00:00 gw openvpn[7]: 198.51.100.4:1194 [alice] Peer Connection Initiated with x\n"
                   "Nov 23 06:00:01 gw openvpn[7]: something else\n")
    from siem_gad.plugins import load_host

    host = load_host(plugins)
    assert "openvpn" in host.components("log_parsers") and "sshd" in host.components("log_parsers")
    events, counters = read_files_once(
        SyslogSource(files=[str(log)], follow=False).bind("vpn", StateStore(tmp_path / "state"), host))
    login = events.iloc[0]
    assert (login["event.action"], login["user.name"], login["source.ip"]) == ("vpn_login", "alice", "198.51.100.4")
    assert counters["parsed"] == 1 and counters["unparsed"] == 1
    listing = siem_gad("--plugins-dir", str(plugins), "plugins", "--json")
    described = {p["name"]: p for p in json.loads(listing.stdout)}
    assert any("openvpn" in p["components"].get("log_parsers", []) for p in described.values())


@pytest.mark.needs_data("loghub", "authlog-ec2")
def test_real_logs_replayed_through_the_listeners_match_direct_counts(tmp_path: Path):
    """OpenSSH_2k over TCP with octet counting, the EC2 auth.log over UDP, as a relay forwards them."""
    src = listening_source(tmp_path)
    ports = src.ports()
    ssh_lines = [b"<38>" + line for line in OPENSSH.read_bytes().splitlines()]
    ec2_lines = [b"<38>" + line for line in EC2.read_bytes().splitlines()]
    try:
        _send_tcp(ports["tcp"], b"".join(b"%d %s" % (len(line), line) for line in ssh_lines))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for number, line in enumerate(ec2_lines):
                sock.sendto(line, ("127.0.0.1", ports["udp"]))
                if number % 50 == 49:
                    time.sleep(0.002)  # a relay's pace; loss at full speed is measured in bench/
        wait_for(lambda: src.counters().get("received", 0) == len(ssh_lines) + len(ec2_lines), "every line")
        events = read_all(src, live=True)
        counters = src.counters()
    finally:
        src.close()
    assert counters.get("dropped_kernel", 0) == 0 and counters.get("quarantined", 0) == 0
    ssh = events[events["log.source"].str.startswith("tcp:")]
    ec2 = events[events["log.source"].str.startswith("udp:")]
    assert actions(ssh, "ssh_login", "failure", "password") == 520
    assert actions(ec2, "ssh_login", "failure", "password") == count_lines(EC2, "Failed password")
    assert actions(ec2, "sudo") == count_lines(EC2, "COMMAND=")
    assert set(ec2.loc[ec2["event.action"] == "ssh_login", "source.ip"]) >= {"24.151.103.17"}


def test_tcp_back_pressure_pauses_the_sender_instead_of_dropping(tmp_path: Path):
    src = source(tmp_path, tcp={"port": 0}, max_spool_lines=10_000, retain="1s")
    src.start()
    total = 100_000  # ~9 MB: more than the kernel buffers on both ends
    line = b"<38>Nov 23 06:00:00 h sshd[1]: Connection closed by 10.0.0.1 port 22 [preauth] %06d\n"
    sender = threading.Thread(target=_send_tcp, args=(src.ports()["tcp"], b"".join(line % i for i in range(total))))
    try:
        sender.start()
        wait_for(lambda: src.counters().get("received", 0) >= 10_000, "the spool to fill")
        time.sleep(1.0)
        held = src.counters()["received"]
        assert held < total and sender.is_alive(), "the sender waits while the spool is full"
        cursor, read = None, 0
        while read < total:  # passes consume the spool; the checkpointed lines are released
            first, _ = src.bounds(None)
            result = src.read(first.replace(second=0) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1), cursor)
            read += len(result.events)
            cursor = {**result.cursor, "until": result.cursor["until"] + 10 ** 9}  # as if later windows passed
        sender.join(30)
        counters = src.counters()
    finally:
        src.close()
    assert read == total == counters["received"] and "dropped_spool_full" not in counters


def test_tls_listener_and_connection_limit(tmp_path: Path):
    import ssl

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    src = source(tmp_path, tcp={"port": 0, "tls": {"cert_file": str(cert), "key_file": str(key)}, "max_connections": 2,
                                        "evict_after": "1h"},
                 query_delay="1s")
    src.start()
    port = src.ports()["tcp"]
    context = ssl.create_default_context(cafile=str(cert))
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"<38>Nov 23 06:00:00 h sshd[1]: Accepted publickey for alice from 10.0.0.8 port 22 ssh2\n")
            wait_for(lambda: src.counters().get("received", 0) == 1, "the line over TLS")
        tcp = next(i for i in src.inputs if isinstance(i, TcpInput))
        wait_for(lambda: tcp.active_connections == 0, "the closed TLS connection to be released")
        held = [context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
                for _ in range(2)]
        for n, conn in enumerate(held):  # both are served: a closed connection no longer counts
            conn.sendall(f"<38>Nov 23 06:00:0{n + 1} h sshd[1]: Accepted publickey for bob from 10.0.0.9 port 22 ssh2\n".encode())
        wait_for(lambda: src.counters().get("received", 0) == 3, "lines over both held connections")
        extra = socket.create_connection(("127.0.0.1", port))
        wait_for(lambda: src.counters().get("rejected_connections", 0) == 1, "the third connection to be refused")
        time.sleep(0.3)
        assert src.counters()["rejected_connections"] == 1 and tcp.active_connections == 2
        for conn in [*held, extra]:
            conn.close()
        events = read_all(src, live=True)
    finally:
        src.close()
    assert events.iloc[0]["user.name"] == "alice" and events.iloc[0]["event.outcome"] == "success"
