"""The crash test's settings: configs/crashtest.toml (typed, read once) and the task's flags."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kbuild.core import config, sizes
from kbuild.core.errors import BadInput, CheckFailed
from kbuild.core.paths import CONFIGS
from kbuild.package import bootcfg, kdumpcfg

POLICY_FILE = CONFIGS / "crashtest.toml"


@dataclass(frozen=True)
class Guest:
    memory: str
    timeout: float
    kexec: str
    accel: str
    kvm_probe_seconds: float
    fail_grace: float
    disk_headroom: str
    console: str

    def __post_init__(self):
        for name in ("memory", "disk_headroom"):
            sizes.parse(getattr(self, name), f"guest.{name}")


@dataclass(frozen=True)
class Need:
    """A Kconfig symbol the test VM needs; `module` allows it as =m, carried in the initramfs."""

    reason: str
    module: str | None = None


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
    find: Find


def policy() -> CrashTestPolicy:
    return config.cached(CrashTestPolicy, POLICY_FILE)


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

    @classmethod
    def from_flags(cls, memory=None, crashkernel=None, kexec=None, timeout=None, accel=None, keep=False,
                   kdump_config=None) -> "CrashTestSettings":
        pol = policy()
        kdump = kdumpcfg.load(Path(kdump_config) if kdump_config else None)
        mem = sizes.parse(memory or pol.guest.memory, "--memory")
        if mem < 256 * sizes.MIB:
            raise BadInput(f"--memory {memory}: at least 256M (the guest holds a crashkernel reservation)")
        ck = str(crashkernel or kdump.crashkernel).strip()
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
        accel = accel or pol.guest.accel
        if accel not in ("auto", "kvm", "tcg"):
            raise BadInput(f"--accel {accel!r}: choose auto, kvm or tcg")
        try:
            timeout = float(timeout if timeout is not None else pol.guest.timeout)
        except ValueError:
            raise BadInput(f"--timeout {timeout!r}: expected seconds") from None
        if timeout <= 0:
            raise BadInput(f"--timeout {timeout:g}: must be positive")
        return cls(kdump, mem, parsed.size, kexec, timeout, accel, bool(keep))
