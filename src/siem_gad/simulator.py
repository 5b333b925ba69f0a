"""A deterministic synthetic enterprise with injected, labeled attacks.

The simulator is stateless per hour: the events of hour `h` depend only on the seed, the
enterprise size and `h`, so any time range can be generated again with identical events and
ids (which is what lets the `simulate` source behave like a replayable log store).

Benign activity: workstations (one user each) browse external sites, use internal servers
(file, web, database, mail, DNS), log on to their own machine and to servers; admins SSH to
servers in business hours; a backup account logs on to servers at night; internet scanners
probe the SSH server now and then. Activity follows a diurnal and weekly cycle.

Attacks (field `labels.attack`, 'benign' otherwise), placed at fixed fractions of the run:
ssh_bruteforce, port_scan, lateral_movement, exfiltration and beaconing (C&C). `ATTACK_ENTITIES`
gives, for each attack, the entity values that an analyst would expect to see in an alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING

from .lazy import lazy_import

np = lazy_import("numpy")

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

DEFAULT_START = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
HOUR = timedelta(hours=1)
LABEL_FIELD = "labels.attack"
BENIGN = "benign"

SERVERS = {  # role: (host name, ip, ports)
    "dc": ("dc01", "10.0.0.10", (53, 88, 389, 445)),
    "file": ("fs01", "10.0.0.20", (445,)),
    "web": ("web01", "10.0.0.30", (80, 443)),
    "db": ("db01", "10.0.0.40", (5432,)),
    "mail": ("mail01", "10.0.0.50", (25, 993)),
    "ssh": ("ssh01", "10.0.0.60", (22,)),
}
FIRST_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
               "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda")
ADMINS = ("adm_ops1", "adm_ops2", "adm_dba")
BACKUP_USER = "svc_backup"
GUESSED_USERS = tuple(["root", "admin", "oracle", "test", "ubuntu", "guest", "postgres", "user", "git", "pi"])

# Attack name -> (fraction of the run where it happens, fraction where it ends (beaconing only)).
ATTACK_SCHEDULE = {
    "ssh_bruteforce": (0.70, None),
    "port_scan": (0.75, None),
    "lateral_movement": (0.80, None),
    "exfiltration": (0.86, None),
    "beaconing": (0.72, 0.97),
}
BRUTEFORCE_IP = "203.0.113.45"
EXFIL_IP = "198.51.100.77"
BEACON_IP = "192.0.2.200"
COLUMNS = ("@timestamp", "event.id", "event.action", "event.category", "event.outcome", "source.ip",
           "destination.ip", "destination.port", "network.transport", "network.bytes", "user.name",
           "host.name", LABEL_FIELD)


@dataclass(frozen=True)
class Enterprise:
    seed: int = 7
    hosts: int = 40
    start: datetime = DEFAULT_START
    hours: int = 72
    attacks: bool = True
    rate: float = 30.0  # mean events per workstation per busy hour

    # ------------------------------------------------------------------ entities
    @cached_property
    def ws_names(self) -> np.ndarray:
        return np.array([f"ws-{i:03d}" for i in range(self.hosts)], dtype=object)

    @cached_property
    def ws_ips(self) -> np.ndarray:
        return np.array([f"10.1.{i // 200}.{i % 200 + 10}" for i in range(self.hosts)], dtype=object)

    @cached_property
    def users(self) -> np.ndarray:
        return np.array([f"{FIRST_NAMES[i % len(FIRST_NAMES)]}{i // len(FIRST_NAMES) or ''}" for i in range(self.hosts)], dtype=object)

    @cached_property
    def externals(self) -> np.ndarray:
        return np.array([f"198.18.{i // 250}.{i % 250 + 1}" for i in range(max(60, self.hosts))], dtype=object)

    @cached_property
    def activity(self) -> np.ndarray:
        """Per-workstation activity level, fixed for the enterprise."""
        return np.random.default_rng([self.seed, 1]).lognormal(0.0, 0.5, self.hosts)

    def victim(self, slot: int) -> int:
        """The workstation index used by an attack, stable for a given size."""
        return (7 + 10 * slot) % self.hosts

    @property
    def end(self) -> datetime:
        return self.start + self.hours * HOUR

    def attack_hours(self) -> dict[str, tuple[int, int]]:
        """Attack name -> (first hour index, last hour index) within the run."""
        if not self.attacks:
            return {}
        hours = {}
        for name, (begin, finish) in ATTACK_SCHEDULE.items():
            first = int(begin * self.hours)
            last = int(finish * self.hours) if finish else first
            hours[name] = (first, last)
        return hours

    def attack_entities(self) -> dict[str, dict[str, str]]:
        """The entity values an alert about each attack should name."""
        return {
            "ssh_bruteforce": {"source.ip": BRUTEFORCE_IP},
            "port_scan": {"source.ip": self.ws_ips[self.victim(1)]},
            "lateral_movement": {"user.name": self.users[self.victim(2)], "source.ip": self.ws_ips[self.victim(2)]},
            "exfiltration": {"source.ip": self.ws_ips[self.victim(3)], "destination.ip": EXFIL_IP},
            "beaconing": {"source.ip": self.ws_ips[self.victim(0)], "destination.ip": BEACON_IP},
        }

    # ------------------------------------------------------------------ generation
    def hour_index(self, moment: datetime) -> int:
        return int((moment - self.start) // HOUR)

    def events(self, start: datetime, end: datetime) -> "pd.DataFrame":
        """All events with start <= @timestamp < end, sorted by time."""
        import pandas as pd

        first = max(0, self.hour_index(start))
        last = min(self.hours - 1, self.hour_index(end - timedelta(microseconds=1)))
        frames = [self.hour(h) for h in range(first, last + 1)]
        if not frames:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS}).astype({"@timestamp": "datetime64[ns, UTC]"})
        events = pd.concat(frames, ignore_index=True)
        mask = (events["@timestamp"] >= start) & (events["@timestamp"] < end)
        return events.loc[mask].reset_index(drop=True)

    def write_csv(self, path: "Path") -> int:
        """Write every hour to a CSV file (ISO timestamps, a header row) an hour at a time, so
        memory stays flat however long the run; return the number of events."""
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        total = 0
        with path.open("w", encoding="utf-8", newline="") as handle:
            for h in range(self.hours):
                frame = self.hour(h)
                frame["@timestamp"] = frame["@timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                frame.to_csv(handle, index=False, header=(h == 0))
                total += len(frame)
        return total

    def hour(self, h: int) -> "pd.DataFrame":
        import pandas as pd

        rng = np.random.default_rng([self.seed, 2, h])
        moment = self.start + h * HOUR
        parts = [self._benign(rng, moment), self._admins(rng, moment), self._backup(rng, moment),
                 self._scanners(rng, moment)]
        for name, (first, last) in self.attack_hours().items():
            if first <= h <= last:
                parts.append(getattr(self, f"_attack_{name}")(rng, h))
        columns = {c: np.concatenate([p[c] for p in parts]) for c in COLUMNS if c != "@timestamp" and c != "event.id"}
        offsets = np.concatenate([p["offset"] for p in parts])
        order = np.argsort(offsets, kind="stable")
        frame = pd.DataFrame({c: v[order] for c, v in columns.items()})
        base = pd.Timestamp(moment).value
        frame.insert(0, "@timestamp", pd.to_datetime(base + (offsets[order] * 1e9).astype(np.int64), utc=True))
        frame.insert(1, "event.id", [f"sim{self.seed}-{h:06d}-{i:06d}" for i in range(len(frame))])
        frame["destination.port"] = frame["destination.port"].astype("int64")
        frame["network.bytes"] = frame["network.bytes"].astype("int64")
        return frame

    def _load(self, moment: datetime) -> float:
        """Diurnal and weekly activity factor in (0, 1]."""
        hour = moment.hour + 0.5
        day = 0.08 + 0.92 * np.exp(-(((hour - 13.5) / 3.8) ** 2))
        return float(day * (0.35 if moment.weekday() >= 5 else 1.0))

    def _benign(self, rng: np.random.Generator, moment: datetime) -> dict[str, np.ndarray]:
        counts = rng.poisson(self.rate * self._load(moment) * self.activity)
        src = np.repeat(np.arange(self.hosts), counts)
        n = len(src)
        kind = rng.choice(5, size=n, p=[0.45, 0.22, 0.15, 0.12, 0.06])
        dst = np.empty(n, dtype=object)
        port = np.zeros(n, dtype=np.int64)
        nbytes = np.zeros(n, dtype=np.int64)
        action = np.full(n, "connection", dtype=object)
        category = np.full(n, "network", dtype=object)
        outcome = np.full(n, "success", dtype=object)
        transport = np.full(n, "tcp", dtype=object)
        user = np.full(n, None, dtype=object)
        host = np.full(n, None, dtype=object)
        # 0: web browsing to external sites (Zipf-like popularity)
        web = kind == 0
        popularity = 1.0 / np.arange(1, len(self.externals) + 1) ** 1.1
        dst[web] = rng.choice(self.externals, size=web.sum(), p=popularity / popularity.sum())
        port[web] = np.where(rng.random(web.sum()) < 0.9, 443, 80)
        nbytes[web] = rng.lognormal(9.5, 1.3, web.sum())
        # 1: internal services (file server mostly, intranet web, database for a third of hosts)
        internal = kind == 1
        role = rng.choice(3, size=internal.sum(), p=[0.6, 0.3, 0.1])
        role = np.where((role == 2) & (src[internal] % 3 != 0), 0, role)
        names = np.array(["file", "web", "db"])[role]
        dst[internal] = [SERVERS[r][1] for r in names]
        port[internal] = np.select([role == 0, role == 1], [445, 443], 5432)
        nbytes[internal] = rng.lognormal(10.0, 1.5, internal.sum())
        # 2: DNS to the domain controller
        dns = kind == 2
        dst[dns], port[dns], transport[dns] = SERVERS["dc"][1], 53, "udp"
        nbytes[dns] = rng.integers(60, 300, dns.sum())
        # 3: logons of the workstation's user: own machine, file server, mail server
        auth = kind == 3
        target = rng.choice(3, size=auth.sum(), p=[0.6, 0.28, 0.12])
        own = src[auth]
        host[auth] = np.where(target == 0, self.ws_names[own], np.where(target == 1, "fs01", "mail01"))
        dst[auth] = np.where(target == 0, self.ws_ips[own], np.where(target == 1, SERVERS["file"][1], SERVERS["mail"][1]))
        port[auth] = 445
        user[auth] = self.users[own]
        action[auth], category[auth] = "logon", "authentication"
        outcome[auth] = np.where(rng.random(auth.sum()) < 0.03, "failure", "success")
        nbytes[auth] = rng.integers(800, 4000, auth.sum())
        # 4: mail
        mail = kind == 4
        dst[mail], port[mail] = SERVERS["mail"][1], 993
        nbytes[mail] = rng.lognormal(9.0, 1.0, mail.sum())
        return {
            "offset": np.sort(rng.random(n)) * 3600, "source.ip": self.ws_ips[src], "destination.ip": dst,
            "destination.port": port, "network.bytes": nbytes, "event.action": action, "event.category": category,
            "event.outcome": outcome, "network.transport": transport, "user.name": user, "host.name": host,
            LABEL_FIELD: np.full(n, BENIGN, dtype=object),
        }

    @staticmethod
    def _records(offset, src, dst, port, nbytes, action, outcome, user, host, label, category="network") -> dict[str, np.ndarray]:
        n = len(offset)

        def column(value, dtype=object):
            return np.asarray(value, dtype=dtype) if np.ndim(value) else np.full(n, value, dtype=dtype)

        return {
            "offset": np.asarray(offset, dtype=float), "source.ip": column(src), "destination.ip": column(dst),
            "destination.port": column(port, np.int64), "network.bytes": column(nbytes, np.int64),
            "event.action": column(action), "event.category": column(category), "event.outcome": column(outcome),
            "network.transport": column("tcp"), "user.name": column(user), "host.name": column(host),
            LABEL_FIELD: column(label),
        }

    def _admins(self, rng: np.random.Generator, moment: datetime) -> dict[str, np.ndarray]:
        business = 8 <= moment.hour < 18 and moment.weekday() < 5
        counts = rng.poisson(4.0 if business else 0.2, len(ADMINS))
        who = np.repeat(np.arange(len(ADMINS)), counts)
        servers = [SERVERS[r] for r in ("ssh", "db", "web", "file")]
        pick = rng.integers(0, len(servers), len(who))
        return self._records(
            rng.random(len(who)) * 3600, self.ws_ips[who % self.hosts], [servers[p][1] for p in pick], 22,
            rng.integers(2000, 60000, len(who)), "ssh_login", "success", np.array(ADMINS, dtype=object)[who],
            [servers[p][0] for p in pick], BENIGN, "authentication")

    def _backup(self, rng: np.random.Generator, moment: datetime) -> dict[str, np.ndarray]:
        if moment.hour not in (1, 2):
            return self._records([], [], [], [], [], [], [], [], [], [])
        targets = [SERVERS[r] for r in ("file", "db", "mail")]
        offset = np.sort(rng.random(len(targets)) * 3600)
        return self._records(offset, SERVERS["file"][1], [t[1] for t in targets], 445,
                             rng.integers(10**6, 10**7, len(targets)), "logon", "success", BACKUP_USER,
                             [t[0] for t in targets], BENIGN, "authentication")

    def _scanners(self, rng: np.random.Generator, moment: datetime) -> dict[str, np.ndarray]:
        """Background internet noise: a few random IPs try a handful of SSH logins."""
        n_ips = rng.poisson(1.5)
        tries = rng.integers(1, 6, n_ips)
        ips = np.array([f"198.19.{rng.integers(0, 250)}.{rng.integers(1, 250)}" for _ in range(n_ips)], dtype=object)
        who = np.repeat(np.arange(n_ips), tries)
        return self._records(rng.random(len(who)) * 3600, ips[who], SERVERS["ssh"][1], 22, rng.integers(200, 900, len(who)),
                             "ssh_login", "failure", rng.choice(np.array(GUESSED_USERS, dtype=object), len(who)), "ssh01", BENIGN,
                             "authentication")

    # ------------------------------------------------------------------ attacks
    def _attack_ssh_bruteforce(self, rng: np.random.Generator, h: int) -> dict[str, np.ndarray]:
        n = 420
        return self._records(np.linspace(30, 3500, n), BRUTEFORCE_IP, SERVERS["ssh"][1], 22, rng.integers(200, 900, n),
                             "ssh_login", "failure", rng.choice(np.array(GUESSED_USERS, dtype=object), n), "ssh01", "ssh_bruteforce",
                             "authentication")

    def _attack_port_scan(self, rng: np.random.Generator, h: int) -> dict[str, np.ndarray]:
        src = self.ws_ips[self.victim(1)]
        targets = np.concatenate([self.ws_ips[: min(self.hosts, 40)], [s[1] for s in SERVERS.values()]])
        ports = np.array([21, 22, 23, 25, 80, 110, 135, 139, 143, 443, 445, 1433, 3306, 3389, 5432, 5900, 8080, 8443], dtype=np.int64)
        dst = np.repeat(targets, len(ports))
        port = np.tile(ports, len(targets))
        n = len(dst)
        return self._records(np.sort(rng.random(n)) * 900 + 600, src, dst, port, rng.integers(40, 80, n),
                             "connection", np.where(rng.random(n) < 0.9, "failure", "success"), None, None, "port_scan")

    def _attack_lateral_movement(self, rng: np.random.Generator, h: int) -> dict[str, np.ndarray]:
        who = self.victim(2)
        hosts = [i for i in range(min(self.hosts, 30)) if i != who][:22]
        names = np.concatenate([self.ws_names[hosts], ["fs01", "db01", "dc01"]])
        ips = np.concatenate([self.ws_ips[hosts], [SERVERS["file"][1], SERVERS["db"][1], SERVERS["dc"][1]]])
        n = len(names)
        return self._records(np.sort(rng.random(n)) * 2400 + 300, self.ws_ips[who], ips, 445, rng.integers(3000, 9000, n),
                             "logon", "success", self.users[who], names, "lateral_movement", "authentication")

    def _attack_exfiltration(self, rng: np.random.Generator, h: int) -> dict[str, np.ndarray]:
        n = 40
        return self._records(np.sort(rng.random(n)) * 3000 + 300, self.ws_ips[self.victim(3)], EXFIL_IP, 443,
                             rng.integers(5 * 10**7, 2 * 10**8, n), "connection", "success", None, None, "exfiltration")

    def _attack_beaconing(self, rng: np.random.Generator, h: int) -> dict[str, np.ndarray]:
        offset = np.arange(60) * 60.0 + 5 + rng.uniform(-3, 3, 60)
        return self._records(offset, self.ws_ips[self.victim(0)], BEACON_IP, 8443, rng.integers(300, 420, 60),
                             "connection", "success", None, None, "beaconing")
