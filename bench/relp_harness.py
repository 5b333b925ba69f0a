"""A real rsyslog forwarding over RELP to a siem-gad receiver that can be killed with -9.

Shared by `tests/test_relp.py` (100,000 lines, three kill -9 restarts) and the soak bench
`bench/syslog_soak.py` (a sustained rate for minutes, periodic kill -9):

- `Rsyslog` runs Debian's `rsyslogd` in the foreground with a private config (never the system
  service): `imfile` reads an input file, `omrelp` forwards each line, retrying forever with
  an in-memory action queue while the receiver is down.
- `Receiver` runs `python -m relp_harness receive STATE PORT`: a syslog source with only a RELP
  listener, spooling into `STATE`, until it is killed.
- `spooled_lines` reads what the receiver committed, straight from its spool.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
OMRELP = Path("/usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so")


def rsyslog_available() -> str | None:
    """None when rsyslogd with omrelp is installed, else what is missing."""
    if not Path(RSYSLOGD).exists():
        return "rsyslogd is not installed (apt-get install rsyslog rsyslog-relp)"
    modules = list(Path("/usr/lib").glob("*/rsyslog/omrelp.so")) + list(Path("/usr/lib/rsyslog").glob("omrelp.so"))
    if not modules:
        return "rsyslog's RELP output is not installed (apt-get install rsyslog-relp)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Rsyslog:
    """rsyslogd -n with a private config: imfile(`source`) -> omrelp(127.0.0.1:`port`)."""

    def __init__(self, workdir: Path, source: Path, port: int):
        self.workdir, self.source, self.port = workdir, source, port
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "rsyslog.conf"
        self.config.write_text(f"""
global(workDirectory="{workdir}")
module(load="imfile")
module(load="omrelp")
input(type="imfile" File="{source}" Tag="soak:" Severity="info" Facility="local0" freshStartTail="off")
action(type="omrelp" target="127.0.0.1" port="{port}" template="RSYSLOG_SyslogProtocol23Format" windowSize="1024"
       action.resumeRetryCount="-1" action.resumeInterval="1"
       queue.type="LinkedList" queue.size="1000000" queue.dequeueBatchSize="500")
""")
        self.process: subprocess.Popen | None = None

    def start(self) -> "Rsyslog":
        self.process = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.workdir / "pid")],
                                        stdout=subprocess.DEVNULL, stderr=open(self.workdir / "rsyslog.err", "wb"))
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Receiver:
    """A siem-gad RELP receiver in its own process (so that kill -9 is real)."""

    def __init__(self, state: Path, port: int, max_spool_lines: int = 5_000_000):
        self.state, self.port, self.max_spool_lines = state, port, max_spool_lines
        self.process: subprocess.Popen | None = None

    def start(self, max_spool_lines: int | None = None) -> "Receiver":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        limit = max_spool_lines or self.max_spool_lines
        self.process = subprocess.Popen([sys.executable, "-m", "relp_harness", "receive", str(self.state),
                                         str(self.port), str(limit)], env=env, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready" once the listener is bound
        if not line.startswith(b"ready"):
            raise RuntimeError(f"receiver did not start: {line!r}")
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def spooled_lines(state: Path) -> list[bytes]:
    """Every line the receiver committed, in arrival order."""
    path = state / "spool" / "relp.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [bytes(r[0]) for r in db.execute("SELECT line FROM lines ORDER BY id")]
    finally:
        db.close()


def spooled_count(state: Path) -> int:
    path = state / "spool" / "relp.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM lines").fetchone()[0]
    except sqlite3.OperationalError:  # the receiver has not created its tables yet
        return 0
    finally:
        db.close()


def spool_counters(state: Path) -> dict[str, int]:
    path = state / "spool" / "relp.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT name, value FROM counters").fetchall())
    finally:
        db.close()


def sequence_numbers(lines: list[bytes], marker: bytes = b"seq=") -> list[int]:
    """The `seq=N` numbers the lines carry."""
    out = []
    for line in lines:
        at = line.rfind(marker)
        if at >= 0:
            out.append(int(line[at + len(marker):].split()[0]))
    return out


def write_lines(path: Path, first: int, count: int) -> None:
    with path.open("a") as handle:
        handle.writelines(f"soak message seq={n}\n" for n in range(first, first + count))


def wait_until(condition, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def _receive(state: str, port: str, max_spool_lines: str) -> None:
    from siem_gad.sources.syslog import SyslogSource
    from siem_gad.state import StateStore

    source = SyslogSource(relp={"host": "127.0.0.1", "port": int(port)},
                          max_spool_lines=int(max_spool_lines)).bind("relp", StateStore(Path(state)))
    source.start()
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (source.close(), sys.exit(0)))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1] == "receive":
        _receive(*sys.argv[2:5])
