"""The kdump requirements (configs/requirements.toml), resolved for one kernel version."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kbuild.core import config
from kbuild.core.errors import BadInput
from kbuild.core.source import KernelVersion

from kbuild.core.paths import CONFIGS


@dataclass(frozen=True)
class Capability:
    """One thing kdump needs, and the symbols that provide it on this version."""

    id: str
    reason: str
    source: str
    symbols: tuple[str, ...]
    any: bool  # True: one of `symbols` suffices; False: all are needed
    prefer: tuple[str, ...] = ()

    def held(self, values: dict[str, str]) -> bool:
        """Whether a config's values (symbol -> value) provide this capability."""
        on = [s for s in self.symbols if values.get(s) == "y"]
        return bool(on) if self.any else len(on) == len(self.symbols)


@dataclass(frozen=True)
class Forbidden:
    symbol: str
    reason: str
    source: str


@dataclass(frozen=True)
class Advice:
    """An option whose absence check-config warns about but does not fail (configure does not enforce it)."""

    symbol: str
    reason: str
    source: str


@dataclass(frozen=True)
class Requirements:
    version: KernelVersion
    capabilities: tuple[Capability, ...]
    forbidden: tuple[Forbidden, ...]
    advice: tuple[Advice, ...] = ()


@dataclass(frozen=True)
class When:
    """From kernel `min` on, these symbols provide the capability (all of them, or any one)."""

    min: str
    all_of: tuple[str, ...] = field(default=(), metadata={"key": "all"})
    any_of: tuple[str, ...] = field(default=(), metadata={"key": "any"})

    def __post_init__(self):
        if bool(self.all_of) == bool(self.any_of):
            raise ValueError(f"when min={self.min}: give exactly one of `all` or `any`")
        _vkey(self.min)


@dataclass(frozen=True)
class CapabilitySpec:
    id: str
    reason: str
    source: str
    when: tuple[When, ...]
    prefer: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequirementsFile:
    """configs/requirements.toml as written: capabilities per version range, forbidden options."""

    capability: tuple[CapabilitySpec, ...]
    forbid: tuple[Forbidden, ...] = ()
    advise: tuple[Advice, ...] = ()


def _vkey(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        raise ValueError(f"version {text!r} is not dotted numbers such as 6.1") from None


def load(version: KernelVersion, path: Path | None = None) -> Requirements:
    """The capabilities and forbidden options that apply to `version`."""
    path = path or CONFIGS / "requirements.toml"
    data = config.cached(RequirementsFile, path)
    caps = []
    for c in data.capability:
        usable = [w for w in c.when if _vkey(w.min) <= version.key]
        if not usable:
            oldest = min((w.min for w in c.when), key=_vkey)
            raise BadInput(f"kernel {version}: no kdump requirements are known before {oldest} "
                           f"(capability {c.id} in {path.name})")
        w = max(usable, key=lambda w: _vkey(w.min))
        caps.append(Capability(c.id, c.reason, c.source, w.all_of or w.any_of, bool(w.any_of), c.prefer))
    return Requirements(version, tuple(caps), data.forbid, data.advise)
