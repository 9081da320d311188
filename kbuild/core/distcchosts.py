"""distcc's host list (DISTCC_HOSTS syntax, distcc(1) HOST SPECIFICATIONS), read at the boundary:
a typo is exit 2 before anything is probed or built, not a host distcc quietly skips."""
from __future__ import annotations

import re
from dataclasses import dataclass

from kbuild.core.errors import BadInput

# distcc(1) HOST SPECIFICATIONS, the parts we accept: TCP and SSH hosts, localhost, global options.
_HOSTID = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
_OPTS = r"(?P<opts>(?:,(?:lzo|cpp|auth(?:=[^,\s]+)?))*)"
_TCP = re.compile(rf"(?P<host>{_HOSTID})(?::(?P<port>\d+))?(?:/(?P<limit>\d+))?(?::(?P<port2>\d+))?{_OPTS}")
_SSH = re.compile(rf"(?P<user>[A-Za-z0-9._-]*)@(?P<host>{_HOSTID})(?:/(?P<limit>\d+))?(?::(?P<cmd>[^,\s]+))?{_OPTS}")
_LOCAL = re.compile(r"localhost(?:/(?P<limit>\d+))?")
_GLOBAL = re.compile(r"--randomize|--localslots(?:_cpp)?=\d+")
DEFAULT_LIMIT = 4   # distcc's slots for a remote host without /LIMIT (2 for localhost)


@dataclass(frozen=True)
class Host:
    """One entry of DISTCC_HOSTS, as written, and what the probe and the counts need from it."""

    spec: str
    address: str            # host name or address, "localhost" for the local slots
    slots: int

    @property
    def remote(self) -> bool:
        return self.address != "localhost"


def parse_hosts(text: str, flag: str = "--distcc") -> tuple[tuple[Host, ...], tuple[str, ...]]:
    """(hosts, global options) from distcc's host syntax; BadInput naming the token otherwise."""
    hosts, options = [], []
    if not isinstance(text, str) or not text.split():
        raise BadInput(f"{flag} {text!r}: give at least one host, e.g. '10.0.0.2/8,lzo 10.0.0.3/8'")
    for token in text.split():
        if _GLOBAL.fullmatch(token):
            options.append(token)
            continue
        m = _LOCAL.fullmatch(token) or _TCP.fullmatch(token) or _SSH.fullmatch(token)
        if not m:
            raise BadInput(f"{flag} {text!r}: {token!r} is not a distcc host (HOST[:PORT][/LIMIT][,lzo], "
                           f"USER@HOST[/LIMIT], localhost[/LIMIT])")
        if ",cpp" in (m.groupdict().get("opts") or ""):
            raise BadInput(f"{flag} {text!r}: {token!r} asks for pump mode (,cpp); builds use plain mode "
                           f"(docs/scale.md says why)")
        limit = m.groupdict().get("limit")
        if limit is not None and int(limit) < 1:
            raise BadInput(f"{flag} {text!r}: {token!r} has no job slots")
        local = m.re is _LOCAL
        hosts.append(Host(token, "localhost" if local else m["host"],
                          int(limit) if limit else (2 if local else DEFAULT_LIMIT)))
    if not any(h.remote for h in hosts):
        raise BadInput(f"{flag} {text!r}: names no remote host")
    return tuple(hosts), tuple(options)
