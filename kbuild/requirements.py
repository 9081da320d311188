"""The kdump requirements (configs/requirements.toml), resolved for one kernel version."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput
from .source import KernelVersion

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class Capability:
    """One thing kdump needs, and the symbols that provide it on this version."""

    id: str
    reason: str
    source: str
    symbols: tuple[str, ...]
    any: bool  # True: one of `symbols` suffices; False: all are needed
    prefer: tuple[str, ...] = ()


@dataclass(frozen=True)
class Forbidden:
    symbol: str
    reason: str
    source: str


@dataclass(frozen=True)
class Requirements:
    version: KernelVersion
    capabilities: tuple[Capability, ...]
    forbidden: tuple[Forbidden, ...]


def _vkey(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def load(version: KernelVersion, path: Path | None = None) -> Requirements:
    path = path or CONFIGS / "requirements.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"{path}: cannot read requirements ({e})") from None
    caps = []
    for c in data.get("capability", []):
        usable = [w for w in c["when"] if _vkey(w["min"]) <= version.key[:2] + (version.key[2],)]
        if not usable:
            oldest = min(w["min"] for w in c["when"])
            raise BadInput(f"kernel {version}: no kdump requirements are known before {oldest} "
                           f"(capability {c['id']} in {path.name})")
        w = max(usable, key=lambda w: _vkey(w["min"]))
        syms = w.get("all") or w.get("any")
        caps.append(Capability(c["id"], c["reason"], c["source"], tuple(syms), "any" in w,
                               tuple(c.get("prefer", ()))))
    forb = tuple(Forbidden(f["symbol"], f["reason"], f["source"]) for f in data.get("forbid", []))
    return Requirements(version, tuple(caps), forb)
