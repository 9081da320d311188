"""The crash test's settings: configs/crashtest.toml (typed, read once) and the task's flags."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from kbuild.core import config, sizes
from kbuild.core.settings import as_accel, as_seconds
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.paths import CONFIGS
from kbuild.package import bootcfg, kdumpcfg

POLICY_FILE = CONFIGS / "crashtest.toml"


@dataclass(frozen=True)
class Guest:
    memory: str
    cpus: int
    trigger: str
    timeout: float
    kexec: str
    accel: str
    kvm_probe_seconds: float
    fail_grace: float
    disk_headroom: str

    def __post_init__(self):
        for name in ("memory", "disk_headroom"):
            sizes.parse(getattr(self, name), f"guest.{name}")


@dataclass(frozen=True)
class TriggerDiff:
    """What one architecture's kernel prints or names differently for a trigger (unset: as the table says)."""

    signature: tuple[str, ...] | None = None
    stack: str | None = None
    crash_bt: str | None = None
    crash_panic: str | None = None


@dataclass(frozen=True)
class Trigger:
    """One crash path: how /init fires it and what the dump must show afterwards."""

    fire: str                 # sysrq | nmi | lkdtm:<TYPE>
    pinned: bool
    sysctls: tuple[str, ...]
    settle: float
    signature: tuple[str, ...]
    stack: str
    crash_bt: str
    crash_panic: str
    needs: dict[str, str] = field(default_factory=dict)
    in_all: bool = True
    arch: dict[str, TriggerDiff] = field(default_factory=dict)   # per Kbuild ARCH, where its kernel differs
    name: str = ""            # filled in from the table key

    def __post_init__(self):
        kind, _, arg = self.fire.partition(":")
        if kind not in ("sysrq", "nmi", "lkdtm") or (kind == "lkdtm") != bool(arg) \
                or not re.fullmatch(r"[A-Z0-9_]*", arg):
            raise ValueError(f"fire {self.fire!r}: expected sysrq, nmi or lkdtm:<TYPE>")
        for s in self.sysctls:
            if not re.fullmatch(r"[a-z0-9_.]+=[0-9]+", s):
                raise ValueError(f"sysctls: {s!r} is not name=number")
        if not self.signature:
            raise ValueError("signature: give at least one line")

    def for_arch(self, name: str) -> "Trigger":
        """This trigger as `name`'s kernel shows it."""
        diff = self.arch.get(name)
        if diff is None:
            return self
        changes = {k: v for k, v in dataclasses.asdict(diff).items() if v is not None}
        return dataclasses.replace(self, **changes)

    @property
    def kind(self) -> str:
        return self.fire.partition(":")[0]

    def lines(self, cpu: int | None) -> list[str]:
        """The signature lines, with {cpu} filled in where the trigger is pinned."""
        return [s.replace("{cpu}", str(cpu)) if cpu is not None else s.split("{cpu}")[0] for s in self.signature]


@dataclass(frozen=True)
class CrashTool:
    timeout: float
    newest_kernel: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Need:
    """A Kconfig symbol the test VM needs; `module` allows it as =m, carried in the initramfs."""

    reason: str
    module: str | None = None
    arches: tuple[str, ...] = ()   # Kbuild ARCHes it applies to; empty: every one


@dataclass(frozen=True)
class Loader:
    flag: str
    needs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Find:
    low: str
    step: str
    headroom_factor: float
    round_to: str

    def __post_init__(self):
        for name in ("low", "step", "round_to"):
            sizes.parse(getattr(self, name), f"find.{name}")


@dataclass(frozen=True)
class CrashTestPolicy:
    guest: Guest
    needs: dict[str, Need]
    loader: dict[str, Loader]
    trigger: dict[str, Trigger]
    crash_tool: CrashTool
    find: Find

    def __post_init__(self):
        if self.guest.trigger not in self.trigger:
            raise ValueError(f"guest.trigger {self.guest.trigger!r} is not a [trigger.*] table")


def policy() -> CrashTestPolicy:
    pol = config.cached(CrashTestPolicy, POLICY_FILE)
    for name, t in pol.trigger.items():
        if not t.name:
            object.__setattr__(t, "name", name)   # the table key is the trigger's name
    return pol


def parse_triggers(text: str | None) -> tuple[Trigger, ...]:
    """--trigger: one name, a comma-separated list, or `all` (every trigger with in_all)."""
    table = policy().trigger
    text = (text or policy().guest.trigger).strip()
    if text == "all":
        return tuple(t for t in table.values() if t.in_all)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in table]
    if unknown or not names:
        raise BadInput(f"--trigger {text!r}: choose {', '.join(table)} or all (a comma-separated list works too)")
    return tuple(table[n] for n in dict.fromkeys(names))


@dataclass(frozen=True)
class CrashTestSettings:
    """Validated flags plus the kdump settings model the guest follows. Sizes are bytes."""

    kdump: kdumpcfg.KdumpSettings
    memory: int = 1 << 30
    crashkernel: int = 256 << 20
    kexec: str = "file"
    timeout: float = 300.0
    accel: str = "auto"
    keep: bool = False
    cpus: int = 2
    triggers: tuple[Trigger, ...] = ()

    @classmethod
    def from_flags(cls, memory=None, crashkernel=None, kexec=None, timeout=None, accel=None, keep=False,
                   kdump_config=None, cpus=None, trigger=None) -> "CrashTestSettings":
        pol = policy()
        kdump = kdumpcfg.load(Path(kdump_config) if kdump_config else None)
        mem = sizes.parse(memory or pol.guest.memory, "--memory")
        if mem < 256 * sizes.MIB:
            raise BadInput(f"--memory {memory}: at least 256M (the guest holds a crashkernel reservation)")
        ck = str(crashkernel or kdump.crashkernel or kdumpcfg.DEFAULT_CRASHKERNEL).strip()
        try:
            parsed = bootcfg.parse_crashkernel(ck)  # the kernel's own grammar, shared with packaging
        except CheckFailed as e:
            raise BadInput(f"--crashkernel: {e}") from None
        if parsed.ranges:
            raise BadInput(f"--crashkernel {ck}: range syntax reserves nothing below its lower bound, "
                           "a trap in a small VM; give an explicit size such as 256M")
        if parsed.offset is not None or parsed.suffix:
            raise BadInput(f"--crashkernel {ck}: give a plain size such as 256M (the test picks no "
                           "offset and no high/low zone)")
        if not 0 < parsed.size < mem:
            raise BadInput(f"--crashkernel {ck}: must be above 0 and below the guest memory ({sizes.fmt(mem)})")
        kexec = kexec or pol.guest.kexec
        if kexec not in pol.loader:
            raise BadInput(f"--kexec {kexec!r}: choose {' or '.join(pol.loader)}")
        accel = as_accel(accel or pol.guest.accel)
        timeout = as_seconds(timeout if timeout is not None else pol.guest.timeout, "--timeout")
        try:
            n = int(cpus if cpus is not None else pol.guest.cpus)
        except ValueError:
            raise BadInput(f"--cpus {cpus!r}: expected a number of vCPUs such as 2") from None
        if not 2 <= n <= 64:
            raise BadInput(f"--cpus {n}: give 2 to 64 (one vCPU cannot show another CPU being stopped)")
        return cls(kdump, mem, parsed.size, kexec, timeout, accel, bool(keep), n, parse_triggers(trigger))
