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
        """All events with start <= @timestamp < end, sorted by time, in the form
        `siem_gad.events.finalize_events` gives (entity and label columns as Categoricals)."""
        first = max(0, self.hour_index(start))
        last = min(self.hours - 1, self.hour_index(end - timedelta(microseconds=1)))
        events = self.hours_frame(range(first, last + 1))
        stamps = events["@timestamp"]
        if len(events) and (stamps.iloc[0] < start or stamps.iloc[-1] >= end):
            events = events.loc[(stamps >= start) & (stamps < end)].reset_index(drop=True)
            for name in events.columns[events.dtypes == "category"]:
                events[name] = events[name].cat.remove_unused_categories()
        return events

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
        return self.hours_frame(range(h, h + 1))

    def hours_frame(self, hours: range) -> "pd.DataFrame":
        """The events of these hours as one frame, built column by column.

        Every hour draws from its own generator (`[seed, 2, h]`), so an hour's events do not
        depend on which other hours are generated with it. String columns are kept as codes into
        small vocabularies until the end (`Coded`): a million events make no million Python
        strings, except their ids.
        """
        import pandas as pd

        parts, part_hours = [], []
        for h in hours:
            rng = np.random.default_rng([self.seed, 2, h])
            moment = self.start + h * HOUR
            hour_parts = [self._benign(rng, moment), self._admins(rng, moment), self._backup(rng, moment),
                          self._scanners(rng, moment)]
            for name, (first, last) in self.attack_hours().items():
                if first <= h <= last:
                    hour_parts.append(getattr(self, f"_attack_{name}")(rng, h))
            parts += hour_parts
            part_hours += [h] * len(hour_parts)
        sizes = np.array([len(p["offset"]) for p in parts], dtype=np.int64)
        hour_of_row = np.repeat(np.array(part_hours, dtype=np.int64), sizes)
        offsets = np.concatenate([p["offset"] for p in parts]) if parts else np.zeros(0)
        order = np.empty(len(offsets), dtype=np.int64)  # by hour, then time within it; ties keep part order
        bounds = np.searchsorted(hour_of_row, np.arange(hours.start, hours.stop + 1))
        for first, last in zip(bounds[:-1], bounds[1:]):
            order[first:last] = first + np.argsort(offsets[first:last], kind="stable")
        offsets, hour_of_row = offsets[order], hour_of_row[order]
        base = pd.Timestamp(self.start).value + hour_of_row * (3600 * 10**9)
        columns: dict[str, object] = {
            "@timestamp": pd.to_datetime((base + (offsets * 1e9).astype(np.int64)).view("M8[ns]"), utc=True),
            # object: the builders read Python strings
            "event.id": pd.Series(self._event_ids(hour_of_row), dtype=object),
        }
        for name in COLUMNS[2:]:
            if name in NUMBER_COLUMNS:
                values = np.concatenate([np.asarray(p[name], dtype=np.int64) for p in parts]) if parts \
                    else np.zeros(0, np.int64)
                columns[name] = values[order]
            else:
                codes, categories = merge_coded([p[name] for p in parts])
                columns[name] = pd.Categorical.from_codes(codes[order], categories=pd.Index(categories, dtype="str"))
        return pd.DataFrame(columns)

    def _event_ids(self, hour_of_row: np.ndarray) -> np.ndarray:
        """`sim{seed}-{hour:06d}-{position in the hour:06d}` for rows sorted by hour."""
        hours, counts = np.unique(hour_of_row, return_counts=True)
        if not len(hours):
            return np.zeros(0, dtype=object)
        positions = numbered(int(counts.max()))
        return np.concatenate([f"sim{self.seed}-{h:06d}-" + positions[:count] for h, count in zip(hours, counts)])

    def _load(self, moment: datetime) -> float:
        """Diurnal and weekly activity factor in (0, 1]."""
        hour = moment.hour + 0.5
        day = 0.08 + 0.92 * np.exp(-(((hour - 13.5) / 3.8) ** 2))
        return float(day * (0.35 if moment.weekday() >= 5 else 1.0))

    @cached_property
    def _benign_vocab(self) -> dict[str, np.ndarray]:
        """The values benign traffic draws from, per column; `_benign` returns codes into these."""
        servers = [SERVERS[role][1] for role in BENIGN_SERVER_ORDER]
        return {
            "source.ip": self.ws_ips,
            "destination.ip": np.concatenate([self.externals, np.array(servers, dtype=object), self.ws_ips]),
            "user.name": self.users,
            "host.name": np.concatenate([self.ws_names, np.array(["fs01", "mail01"], dtype=object)]),
            "event.action": np.array(["connection", "logon"], dtype=object),
            "event.category": np.array(["network", "authentication"], dtype=object),
            "event.outcome": np.array(["success", "failure"], dtype=object),
            "network.transport": np.array(["tcp", "udp"], dtype=object), LABEL_FIELD: np.array([BENIGN], dtype=object),
        }

    def _benign(self, rng: np.random.Generator, moment: datetime) -> dict[str, object]:
        counts = rng.poisson(self.rate * self._load(moment) * self.activity)
        src = np.repeat(np.arange(self.hosts), counts)
        n = len(src)
        kind = rng.choice(5, size=n, p=[0.45, 0.22, 0.15, 0.12, 0.06])
        servers = len(self.externals)  # destination codes: externals, then BENIGN_SERVER_ORDER, then workstations
        server = {role: servers + i for i, role in enumerate(BENIGN_SERVER_ORDER)}
        dst = np.zeros(n, dtype=np.int64)
        port = np.zeros(n, dtype=np.int64)
        nbytes = np.zeros(n, dtype=np.int64)
        action = np.zeros(n, dtype=np.int64)  # connection
        category = np.zeros(n, dtype=np.int64)  # network
        outcome = np.zeros(n, dtype=np.int64)  # success
        transport = np.zeros(n, dtype=np.int64)  # tcp
        user = np.full(n, -1, dtype=np.int64)
        host = np.full(n, -1, dtype=np.int64)
        # 0: web browsing to external sites (Zipf-like popularity)
        web = kind == 0
        popularity = 1.0 / np.arange(1, len(self.externals) + 1) ** 1.1
        dst[web] = rng.choice(len(self.externals), size=web.sum(), p=popularity / popularity.sum())
        port[web] = np.where(rng.random(web.sum()) < 0.9, 443, 80)
        nbytes[web] = rng.lognormal(9.5, 1.3, web.sum())
        # 1: internal services (file server mostly, intranet web, database for a third of hosts)
        internal = kind == 1
        role = rng.choice(3, size=internal.sum(), p=[0.6, 0.3, 0.1])
        role = np.where((role == 2) & (src[internal] % 3 != 0), 0, role)
        dst[internal] = servers + role  # file, web, db
        port[internal] = np.select([role == 0, role == 1], [445, 443], 5432)
        nbytes[internal] = rng.lognormal(10.0, 1.5, internal.sum())
        # 2: DNS to the domain controller
        dns = kind == 2
        dst[dns], port[dns], transport[dns] = server["dc"], 53, 1
        nbytes[dns] = rng.integers(60, 300, dns.sum())
        # 3: logons of the workstation's user: own machine, file server, mail server
        auth = kind == 3
        target = rng.choice(3, size=auth.sum(), p=[0.6, 0.28, 0.12])
        own = src[auth]
        host[auth] = np.where(target == 0, own, self.hosts + target - 1)  # ws, then fs01, mail01
        dst[auth] = np.where(target == 0, servers + len(BENIGN_SERVER_ORDER) + own,
                             np.where(target == 1, server["file"], server["mail"]))
        port[auth] = 445
        user[auth] = own
        action[auth], category[auth] = 1, 1  # logon, authentication
        outcome[auth] = rng.random(auth.sum()) < 0.03  # failure
        nbytes[auth] = rng.integers(800, 4000, auth.sum())
        # 4: mail
        mail = kind == 4
        dst[mail], port[mail] = server["mail"], 993
        nbytes[mail] = rng.lognormal(9.0, 1.0, mail.sum())
        vocab = self._benign_vocab
        codes = {"source.ip": src, "destination.ip": dst, "event.action": action, "event.category": category,
                 "event.outcome": outcome, "network.transport": transport, "user.name": user, "host.name": host,
                 LABEL_FIELD: np.zeros(n, dtype=np.int64)}
        return {"offset": np.sort(rng.random(n)) * 3600, "destination.port": port, "network.bytes": nbytes,
                **{name: Coded(c, vocab[name]) for name, c in codes.items()}}

    @staticmethod
    def _records(offset, src, dst, port, nbytes, action, outcome, user, host, label,
                 category="network") -> dict[str, object]:
        n = len(offset)

        def number(value):
            return np.asarray(value, dtype=np.int64) if np.ndim(value) else np.full(n, value, dtype=np.int64)

        return {
            "offset": np.asarray(offset, dtype=float), "source.ip": coded(src, n), "destination.ip": coded(dst, n),
            "destination.port": number(port), "network.bytes": number(nbytes),
            "event.action": coded(action, n), "event.category": coded(category, n), "event.outcome": coded(outcome, n),
            "network.transport": coded("tcp", n), "user.name": coded(user, n), "host.name": coded(host, n),
            LABEL_FIELD: coded(label, n),
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


NUMBER_COLUMNS = ("destination.port", "network.bytes")
BENIGN_SERVER_ORDER = ("file", "web", "db", "dc", "mail")  # destination codes of benign traffic after the externals


@dataclass(frozen=True)
class Coded:
    """A string column as integer codes into a vocabulary (-1: missing)."""

    codes: np.ndarray
    vocab: np.ndarray


def coded(values: object, n: int) -> Coded:
    """`n` values (one value repeated, None for missing, or a sequence of strings) as codes."""
    if values is None:
        return Coded(np.full(n, -1, dtype=np.int64), np.zeros(0, dtype=object))
    if np.ndim(values) == 0:
        return Coded(np.zeros(n, dtype=np.int64), np.array([values], dtype=object))
    vocab, codes = np.unique(np.asarray(values, dtype=object), return_inverse=True)
    return Coded(codes.astype(np.int64), vocab)


def merge_coded(columns: list[Coded]) -> tuple[np.ndarray, np.ndarray]:
    """One column from many parts: its codes and its categories, sorted and only those used
    (what `astype("category")` would give for the strings)."""
    vocabs: dict[int, tuple[np.ndarray, int]] = {}  # parts share vocabularies: each is merged once
    size = 0
    for column in columns:
        if id(column.vocab) not in vocabs:
            vocabs[id(column.vocab)] = (column.vocab, size)
            size += len(column.vocab)
    if not size:
        return np.full(sum(len(c.codes) for c in columns), -1, dtype=np.int64), np.zeros(0, dtype=object)
    categories, merged = np.unique(np.concatenate([v for v, _ in vocabs.values()]), return_inverse=True)
    merged = np.append(merged, -1)  # code -1 (missing) maps to the last entry: -1
    codes = np.concatenate([merged[np.where(c.codes >= 0, c.codes + vocabs[id(c.vocab)][1], -1)] for c in columns])
    used = np.bincount(codes[codes >= 0], minlength=len(categories)) > 0
    renumber = np.append(np.cumsum(used) - 1, -1)
    return renumber[codes], categories[used]


_NUMBERED: list = []


def numbered(n: int) -> np.ndarray:
    """'000000', '000001', ... as an object array of at least `n` strings (grown on demand)."""
    if len(_NUMBERED) < n:
        _NUMBERED[:] = [f"{i:06d}" for i in range(max(n, 2 * len(_NUMBERED), 4096))]
    return np.array(_NUMBERED[:n], dtype=object)
