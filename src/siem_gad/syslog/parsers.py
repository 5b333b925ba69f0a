"""Message parsers: a syslog record's program and message -> ECS fields.

A parser is a class with `programs` (the program names it reads; empty for any program) and
`parse(record) -> dict | None`, returning ECS fields (`event.action`, `event.outcome`,
`user.name`, `source.ip` ...) or None when the message is not one it knows. Parsers register
through the `register_log_parsers` hook; for each record the parsers of its program are tried
in registration order, then the parsers for any program. Built-ins: sshd, sudo, su,
useradd/usermod/groupadd, passwd/chpasswd, CRON, systemd-logind, PAM lines of any program,
and kernel firewall lines (iptables/ufw `SRC= DST= PROTO= SPT= DPT=`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..builtins import BUILTIN_COMPONENTS
from .headers import SyslogRecord

Fields = dict[str, Any]
IP = r"(?P<ip>[0-9a-fA-F:.]+)"
PORT = r"(?: port (?P<port>\d+))?"


class LogParser(ABC):
    """Base class: set `programs`, implement `parse`."""

    programs: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def parse(self, record: SyslogRecord) -> Fields | None:
        """ECS fields of the record's message, or None when it is not one this parser knows."""


def _auth(action: str, outcome: str, **fields: Any) -> Fields:
    return {"event.category": "authentication", "event.action": action, "event.outcome": outcome,
            **{k: v for k, v in fields.items() if v not in (None, "")}}


def _from(match: re.Match) -> Fields:
    groups = match.groupdict()
    out: Fields = {}
    if groups.get("ip"):
        out["source.ip"] = groups["ip"]
    if groups.get("port"):
        out["source.port"] = int(groups["port"])
    if groups.get("user") is not None:
        out["user.name"] = groups["user"]
    return out


class SshdParser(LogParser):
    programs = ("sshd",)
    RULES: ClassVar[list[tuple[re.Pattern, str, str, str]]] = [
        (re.compile(rf"^Failed (?P<method>password|publickey|none|keyboard-interactive/pam) for (?:invalid user )?(?P<user>.*?) from {IP}{PORT}"),
         "authentication", "ssh_login", "failure"),
        (re.compile(rf"^Accepted (?P<method>password|publickey|keyboard-interactive/pam|gssapi-with-mic) for (?P<user>\S+) from {IP}{PORT}"),
         "authentication", "ssh_login", "success"),
        (re.compile(rf"^Invalid user (?P<user>.*?) from {IP}{PORT}"), "authentication", "invalid_user", "failure"),
        (re.compile(rf"^error: maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*?) from {IP}{PORT}"),
         "authentication", "max_auth_attempts_exceeded", "failure"),
        (re.compile(r"^reverse mapping checking getaddrinfo for (?P<domain>\S+) \[(?P<ip>[0-9a-fA-F:.]+)\] failed"),
         "network", "reverse_mapping_failed", "unknown"),
        (re.compile(rf"^(?:error: )?Received disconnect from {IP}{PORT}"), "network", "disconnect", "unknown"),
        (re.compile(rf"^Disconnected from (?:(?:invalid |authenticating )?user (?P<user>\S+) )?{IP}{PORT}"),
         "network", "disconnect", "unknown"),
        (re.compile(rf"^Connection closed by (?:(?:invalid |authenticating )?user (?P<user>\S+) )?{IP}{PORT}"),
         "network", "connection_closed", "unknown"),
        (re.compile(rf"^Connection from {IP}{PORT}"), "network", "connection_opened", "unknown"),
        (re.compile(r"^input_userauth_request: invalid user (?P<user>.*?) \[preauth\]"), "authentication",
         "invalid_user_request", "failure"),
        (re.compile(r"^Disconnecting: Too many authentication failures(?: for (?:invalid user )?(?P<user>\S+))?"),
         "authentication", "too_many_auth_failures", "failure"),
        (re.compile(r"^PAM \d+ more authentication failures?;.*?rhost=(?P<ip>[0-9a-fA-F:.]+)?\S*(?:\s+user=(?P<user>\S+))?"),
         "authentication", "pam_more_auth_failures", "failure"),
        (re.compile(r"^PAM service\(sshd\) ignoring max retries"), "authentication", "pam_max_retries", "failure"),
        (re.compile(rf"^Did not receive identification string from {IP}{PORT}"), "network", "no_identification", "failure"),
        (re.compile(rf"^Bad protocol version identification .* from {IP}{PORT}"), "network", "bad_protocol_version", "failure"),
    ]
    REPEATED = re.compile(r"^message repeated (\d+) times: \[ ?(.*?) ?\]$")

    def parse(self, record: SyslogRecord) -> Fields | None:
        message = record.message
        repeated = self.REPEATED.match(message)
        if repeated:
            message = repeated.group(2)
        for pattern, category, action, outcome in self.RULES:
            match = pattern.match(message)
            if match:
                fields = {"event.category": category, "event.action": action, "event.outcome": outcome, **_from(match)}
                if "domain" in match.groupdict():
                    fields["source.domain"] = match.group("domain")
                if "method" in match.groupdict():
                    fields["sshd.method"] = match.group("method")
                if repeated:
                    fields["event.repeat_count"] = int(repeated.group(1))
                return fields
        return None


class PamParser(LogParser):
    """pam_unix lines of any program: `pam_unix(sshd:auth): ...` and the older `sshd(pam_unix)[N]: ...`."""

    programs = ()
    PREFIX = re.compile(r"^pam_unix\((?P<service>[^:)]+):(?P<type>[^)]+)\): ")
    FAILURE = re.compile(r"authentication failure;.*?rhost=(?P<rhost>\S*)(?:\s+user=(?P<user>\S+))?")
    SESSION = re.compile(r"session (?P<what>opened|closed) for user (?P<user>\S+)(?: by (?P<by>\S*?)\(uid=\d+\))?")
    CHANGED = re.compile(r"password changed for (?P<user>\S+)")
    MISSING = re.compile(r"user \"?(?P<user>[^\"]+?)\"? does not exist")

    def parse(self, record: SyslogRecord) -> Fields | None:
        message = record.message
        match = self.PREFIX.match(message)
        if match:
            service = match.group("service")
            message = message[match.end():]
        elif record.program and record.program.endswith("(pam_unix)"):
            service = record.program[: -len("(pam_unix)")]
        else:
            return None
        fields: Fields = {"pam.service": service}
        failure = self.FAILURE.search(message)
        if failure:
            rhost = failure.group("rhost")
            if rhost and re.fullmatch(r"[0-9a-fA-F:.]+", rhost):
                fields["source.ip"] = rhost
            elif rhost:
                fields["source.domain"] = rhost
            return {**_auth("pam_authentication_failure", "failure", **{"user.name": failure.group("user")}), **fields}
        session = self.SESSION.search(message)
        if session:
            action = f"session_{session.group('what')}"
            return {**_auth(action, "success", **{"user.name": session.group("user"),
                                                  "user.effective.name": session.group("by")}), **fields,
                    "event.category": "session" if service not in ("sshd", "login") else "authentication"}
        changed = self.CHANGED.search(message)
        if changed:
            return {"event.category": "iam", "event.action": "password_changed", "event.outcome": "success",
                    "user.name": changed.group("user"), **fields}
        missing = self.MISSING.search(message)
        if missing:
            return {"event.category": "iam", "event.action": "user_unknown", "event.outcome": "failure",
                    "user.name": missing.group("user"), **fields}
        if "check pass; user unknown" in message:
            return {**_auth("pam_user_unknown", "failure"), **fields}
        return None


class SudoParser(LogParser):
    programs = ("sudo",)
    COMMAND = re.compile(r"^\s*(?P<user>\S+) : (?:(?P<failed>\d+) incorrect password attempts? ; )?(?:.*?; )?"
                         r"(?:TTY=(?P<tty>\S+) ; )?(?:PWD=(?P<pwd>.*?) ; )?USER=(?P<target>\S+) ; COMMAND=(?P<command>.*)$")
    NOT_ALLOWED = re.compile(r"^\s*(?P<user>\S+) : (?:user NOT in sudoers|command not allowed)")

    def parse(self, record: SyslogRecord) -> Fields | None:
        match = self.COMMAND.match(record.message)
        if match:
            failed = match.group("failed")
            return {"event.category": "process", "event.action": "sudo",
                    "event.outcome": "failure" if failed else "success", "user.name": match.group("user"),
                    "user.target.name": match.group("target"), "process.command_line": match.group("command")}
        match = self.NOT_ALLOWED.match(record.message)
        if match:
            return {"event.category": "process", "event.action": "sudo", "event.outcome": "failure",
                    "user.name": match.group("user")}
        return None


class SuParser(LogParser):
    programs = ("su",)
    RESULT = re.compile(r"^(?P<result>Successful|FAILED) su for (?P<target>\S+) by (?P<user>\S+)")

    def parse(self, record: SyslogRecord) -> Fields | None:
        match = self.RESULT.match(record.message)
        if not match:
            return None
        return _auth("su", "success" if match.group("result") == "Successful" else "failure",
                     **{"user.name": match.group("user"), "user.target.name": match.group("target")})


class AccountParser(LogParser):
    """useradd, usermod, groupadd, userdel: account changes (ECS category iam)."""

    programs = ("useradd", "usermod", "userdel", "groupadd", "groupdel", "gpasswd")
    RULES: ClassVar[list[tuple[re.Pattern, str]]] = [
        (re.compile(r"^new user: name=(?P<user>[^,]+)"), "user_created"),
        (re.compile(r"^new group: name=(?P<group>[^,]+)"), "group_created"),
        (re.compile(r"^group added to \S+: name=(?P<group>[^,]+)"), "group_created"),
        (re.compile(r"^add '(?P<user>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'"), "user_added_to_group"),
        (re.compile(r"^change user '(?P<user>[^']+)'"), "user_modified"),
        (re.compile(r"^delete user '(?P<user>[^']+)'"), "user_deleted"),
        (re.compile(r"^(?:failed adding user|useradd: user) '?(?P<user>[^' ,]+)'?.*(?:exists|failed)"), "user_create_failed"),
    ]

    def parse(self, record: SyslogRecord) -> Fields | None:
        for pattern, action in self.RULES:
            match = pattern.match(record.message)
            if match:
                fields: Fields = {"event.category": "iam", "event.action": action,
                                  "event.outcome": "failure" if action.endswith("failed") else "success"}
                groups = match.groupdict()
                if groups.get("user"):
                    fields["user.name"] = groups["user"]
                if groups.get("group"):
                    fields["group.name"] = groups["group"]
                return fields
        return None


class PasswordParser(LogParser):
    programs = ("passwd", "chpasswd", "chage")
    CHANGED = re.compile(r"password (?:for '?(?P<user>[^' ]+)'? )?changed(?: for (?P<user2>\S+))?")

    def parse(self, record: SyslogRecord) -> Fields | None:
        match = self.CHANGED.search(record.message)
        if match and not record.message.startswith("pam_unix("):
            return {"event.category": "iam", "event.action": "password_changed", "event.outcome": "success",
                    "user.name": match.group("user") or match.group("user2")}
        return None


class CronParser(LogParser):
    programs = ("CRON", "cron", "crond")
    COMMAND = re.compile(r"^\((?P<user>[^)]+)\) CMD \((?P<command>.*)\)\s*$")

    def parse(self, record: SyslogRecord) -> Fields | None:
        match = self.COMMAND.match(record.message)
        if match:
            return {"event.category": "process", "event.action": "cron_command", "event.outcome": "success",
                    "user.name": match.group("user"), "process.command_line": match.group("command")}
        return None


class LogindParser(LogParser):
    programs = ("systemd-logind",)
    NEW = re.compile(r"^New session (?P<session>\S+) of user (?P<user>[^.\s]+)\.?")
    REMOVED = re.compile(r"^(?:Removed session|Session (?P<session2>\S+) logged out)")

    def parse(self, record: SyslogRecord) -> Fields | None:
        match = self.NEW.match(record.message)
        if match:
            return {"event.category": "session", "event.action": "session_opened", "event.outcome": "success",
                    "user.name": match.group("user"), "session.id": match.group("session")}
        if self.REMOVED.match(record.message):
            return {"event.category": "session", "event.action": "session_closed", "event.outcome": "success"}
        return None


class FirewallParser(LogParser):
    """Netfilter log lines (iptables LOG target, ufw): `[UFW BLOCK] IN=eth0 ... SRC= DST= PROTO= SPT= DPT=`."""

    programs = ("kernel",)
    KEYS = re.compile(r"\b(IN|OUT|SRC|DST|PROTO|SPT|DPT|LEN)=(\S*)")
    PREFIX = re.compile(r"\[(?:UFW )?(?P<verdict>[A-Z ]+?)\]")

    def parse(self, record: SyslogRecord) -> Fields | None:
        values = dict(self.KEYS.findall(record.message))
        if "SRC" not in values or "DST" not in values:
            return None
        prefix = self.PREFIX.search(record.message.split("IN=", 1)[0])
        verdict = (prefix.group("verdict") if prefix else "LOG").strip().lower().replace(" ", "_")
        fields: Fields = {"event.category": "network", "event.action": f"firewall_{verdict}",
                          "event.outcome": "failure" if verdict in ("block", "drop", "reject", "deny", "audit_invalid") else "success",
                          "source.ip": values["SRC"], "destination.ip": values["DST"]}
        if values.get("PROTO"):
            fields["network.transport"] = values["PROTO"].lower()
        for key, name in (("SPT", "source.port"), ("DPT", "destination.port"), ("LEN", "network.bytes")):
            if values.get(key, "").isdigit():
                fields[name] = int(values[key])
        if values.get("IN"):
            fields["observer.ingress.interface.name"] = values["IN"]
        return fields


# The order of `siem_gad.builtins` (tried in that order), with the classes of this module.
BUILTIN_PARSERS = {name: globals()[attr] for name, attr in BUILTIN_COMPONENTS[__name__]["log_parsers"].items()}


class ParserSet:
    """The parsers of every plugin, indexed by program name."""

    def __init__(self, parsers: dict[str, type[LogParser]]):
        self.by_program: dict[str, list[LogParser]] = {}
        self.generic: list[LogParser] = []
        for cls in parsers.values():
            parser = cls()
            if cls.programs:
                for program in cls.programs:
                    self.by_program.setdefault(program, []).append(parser)
            else:
                self.generic.append(parser)

    def parse(self, record: SyslogRecord) -> Fields | None:
        program = record.program or ""
        base = program.split("(", 1)[0].split("/", 1)[-1]
        for parser in [*self.by_program.get(program, ()), *(self.by_program.get(base, ()) if base != program else ()),
                       *self.generic]:
            fields = parser.parse(record)
            if fields is not None:
                return fields
        return None
